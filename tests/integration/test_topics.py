"""Topic creation against the real broker: the state table's changelog is compacted and takes large
state values (a hot window's users), also when it existed before with Kafka's defaults."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from harness import isolated_env

from pipeline.events.deadletter import MAX_ENVELOPE_BYTES, MAX_KEY_BYTES
from pipeline.settings import Settings
from pipeline.topics import (
    DEADLETTER_MAX_MESSAGE_BYTES,
    MAX_STATE_VALUE_BYTES,
    changelog_topic,
    ensure_topics,
    pipeline_topics,
)

pytestmark = pytest.mark.kafka


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for _ in range(20):  # a topic created a moment ago may not be described yet
            [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
            [(error, _message, _type, _name, entries)] = response.resources
            if not error and entries:
                return {entry[0]: entry[1] for entry in entries}
            await asyncio.sleep(0.25)
        raise AssertionError(f"cannot describe {topic}: error {error}")
    finally:
        await admin.close()


async def create_plain(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce_large(bootstrap: str, topic: str, size: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=MAX_STATE_VALUE_BYTES)
    await producer.start()
    try:
        await producer.send_and_wait(topic, key=b"w|big", value=b"x" * size, partition=0)
    finally:
        await producer.stop()


def test_changelog_is_compacted_and_takes_values_over_a_megabyte(settings_env, tmp_path):
    settings = Settings.from_env(isolated_env(settings_env, tmp_path))
    created = asyncio.run(ensure_topics(settings))
    assert sorted(created) == sorted(pipeline_topics(settings))
    configs = asyncio.run(topic_configs(settings.kafka_bootstrap_servers, changelog_topic(settings)))
    assert configs["cleanup.policy"] == "compact"
    assert int(configs["max.message.bytes"]) == MAX_STATE_VALUE_BYTES
    asyncio.run(produce_large(settings.kafka_bootstrap_servers, changelog_topic(settings), 3 * 1024 * 1024))
    # The dead-letter topic's limit is set, not inherited from the broker, and fits the largest envelope.
    dead = asyncio.run(topic_configs(settings.kafka_bootstrap_servers, settings.topics.deadletter))
    assert int(dead["max.message.bytes"]) == DEADLETTER_MAX_MESSAGE_BYTES > MAX_ENVELOPE_BYTES + MAX_KEY_BYTES
    assert asyncio.run(ensure_topics(settings)) == []  # idempotent
    # Input topics are stamped by the broker: the append time is the pipeline's trusted clock.
    for topic in settings.topics.inputs:
        configs = asyncio.run(topic_configs(settings.kafka_bootstrap_servers, topic))
        assert configs["message.timestamp.type"] == "LogAppendTime"


def test_a_changelog_created_with_defaults_is_reconfigured(settings_env, tmp_path):
    settings = Settings.from_env(isolated_env(settings_env, tmp_path))
    bootstrap = settings.kafka_bootstrap_servers
    asyncio.run(create_plain(bootstrap, changelog_topic(settings), settings.topic_partitions))
    assert asyncio.run(topic_configs(bootstrap, changelog_topic(settings)))["cleanup.policy"] == "delete"
    asyncio.run(ensure_topics(settings))
    for _ in range(20):  # the broker applies a config change a moment after acknowledging it
        configs = asyncio.run(topic_configs(bootstrap, changelog_topic(settings)))
        if configs["cleanup.policy"] == "compact":
            break
        time.sleep(0.25)
    assert configs["cleanup.policy"] == "compact"
    assert int(configs["max.message.bytes"]) == MAX_STATE_VALUE_BYTES
