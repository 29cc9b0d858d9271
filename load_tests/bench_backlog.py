"""Backlogs for the stream benchmark, and the ceiling: a bare aiokafka consumer that only decodes them.

A backlog is a set of isolated input topics filled once, before anything is timed, with generator
traffic (fixed seed, event times starting 30 minutes ago so they fall in the current raw_events TTL and
are never "from the future"). Every consumer measured afterwards (ceiling, real worker, naive Faust)
reads the same messages with its own consumer group, so their rates compare like for like.

The ceiling (`ceiling_rate`) is what Kafka plus orjson allow in one Python process: `getmany
(max_records=500)` and `orjson.loads` of every value, nothing else. Its rate is records / seconds from
the consumer's start to its last message, over three passes (one pass of a backlog is under a second).
"""

from __future__ import annotations

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from pipeline.local.process import find_free_port
from pipeline.settings import Settings, Topics
from pipeline.topics import ensure_topics
from pipeline.traffic.generator import Counts, TrafficConfig, TrafficModel
from pipeline.traffic.producer import produce


@dataclass(frozen=True)
class Scenario:
    name: str
    config: TrafficConfig
    records: int  # records to generate (events + duplicate re-sends + invalid messages)


@dataclass
class Backlog:
    scenario: Scenario
    topics: Topics
    counts: Counts  # exact counts of what was produced

    @property
    def inputs(self) -> tuple[str, str, str]:
        return self.topics.inputs


def base_config(batch_size: int, **overrides) -> TrafficConfig:
    """Few rooms and a long (simulated) linger, so that batched messages really carry ~60-100 events."""
    start = int(time.time() * 1000) - 30 * 60 * 1000
    cfg = TrafficConfig(seed=7, rooms=200, creators=100, batch_size=batch_size, linger_ms=60_000)
    return replace(cfg, start_ts_ms=start, **overrides)


def isolated_env(services: dict[str, str], workdir: Path, topics: Topics | None, partitions: int) -> dict:
    """Environment for one worker: its own consumer group, output topics, database and state dir;
    input topics are `topics` (a backlog's) or new ones."""
    tag = f"b{uuid.uuid4().hex[:8]}"
    inputs = topics or Topics(views=f"{tag}.views", clicks=f"{tag}.clicks", orders=f"{tag}.orders")
    return {
        **services,
        "APP_ID": tag,
        "TOPIC_VIEWS": inputs.views,
        "TOPIC_CLICKS": inputs.clicks,
        "TOPIC_ORDERS": inputs.orders,
        "TOPIC_DEADLETTER": f"{tag}.deadletter",
        "TOPIC_LATE": f"{tag}.late",
        "TOPIC_MILESTONES": f"{tag}.milestones",
        "CLICKHOUSE_DATABASE": tag,
        "WEB_PORT": str(find_free_port()),
        "TOPIC_PARTITIONS": str(partitions),
        "LIVECOMMERCE_LOCAL_DIR": str(workdir / tag),
        "LOG_LEVEL": "warning",
    }


async def create_topics(env: dict[str, str]) -> Settings:
    settings = Settings.from_env(env)
    await ensure_topics(settings)
    return settings


async def produce_backlog(services: dict[str, str], workdir: Path, scenario: Scenario, partitions: int):
    """Create a scenario's input topics and fill them as fast as the producer goes."""
    env = isolated_env(services, workdir, None, partitions)
    settings = await create_topics(env)
    model = TrafficModel(scenario.config, topics=settings.topics)
    await produce(
        model.messages(scenario.records),
        settings.kafka_bootstrap_servers,
        rate=None,
        linger_ms=20,
        topics=settings.topics.inputs,
    )
    return Backlog(scenario, settings.topics, model.counts)


async def ceiling_rate(bootstrap: str, backlog: Backlog, passes: int = 3) -> float:
    """Records per second of a bare aiokafka consumer + orjson, reading the whole backlog `passes` times."""
    elapsed = 0.0
    for _ in range(passes):
        elapsed += await _decode_all(bootstrap, backlog)
    return backlog.counts.records * passes / elapsed


async def _decode_all(bootstrap: str, backlog: Backlog) -> float:
    """Seconds from the consumer's start to its last message."""
    consumer = AIOKafkaConsumer(
        *backlog.inputs,
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    started = time.perf_counter()
    messages, expected, idle = 0, backlog.counts.messages, 0
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    try:
        while messages < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            idle = 0 if batches else idle + 1
            if idle > 10:
                raise RuntimeError(f"ceiling consumer stalled at {messages} of {expected} messages")
            for records in batches.values():
                for record in records:
                    with suppress(decode_error):
                        loads(record.value)
                messages += len(records)
        return time.perf_counter() - started
    finally:
        await consumer.stop()
