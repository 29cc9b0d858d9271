"""Create the pipeline's topics before anything subscribes to them.

Faust subscribes when the worker starts; a topic created a moment later is only noticed at the next
metadata refresh (minutes), and real clusters usually disable auto-creation. So the worker (and the
demo) create every topic up front, idempotently, with the configured partition count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from pipeline.errors import UserFacingError
from pipeline.kafka_options import client_options
from pipeline.settings import Settings

log = logging.getLogger(__name__)


STATE_TABLE = "window-state"
# The state table's values can be large: a hot room's window holds its distinct users (a minute of a
# top room at a campaign peak: 100,000+ ids, ~2 MB as JSON). Kafka's default limit is 1 MB per message.
MAX_STATE_VALUE_BYTES = 16 * 1024 * 1024
# The changelog keeps the latest value per key (compaction): the state table is rebuilt from it, and
# a key written long ago (the watermark of a quiet partition) must not expire.
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(MAX_STATE_VALUE_BYTES)}
# Input topics are stamped by the broker: the append time is the trusted clock that bounds event time
# (see pipeline.runtime.trusted_time_ms), which no producer or client can set. Only topics created
# here get it; an existing CreateTime topic is bounded by the worker's clock instead.
INPUT_CONFIG = {"message.timestamp.type": "LogAppendTime"}
# Kafka's default, set explicitly so that a broker configured lower does not drop dead letters: an
# envelope is at most pipeline.events.deadletter.MAX_ENVELOPE_BYTES (800 KiB) plus a key of 1 KiB.
DEADLETTER_MAX_MESSAGE_BYTES = 1_048_588
DEADLETTER_CONFIG = {"max.message.bytes": str(DEADLETTER_MAX_MESSAGE_BYTES)}


def changelog_topic(settings: Settings) -> str:
    """Faust's name for the state table's changelog; created here so that its partition count is known
    before the first checkpoint (Faust refuses table writes while its metadata shows 0 partitions)."""
    return f"{settings.app_id}-{STATE_TABLE}-changelog"


def contributions_topic(settings: Settings) -> str:
    """The internal repartition topic from the room stage to the creator stage."""
    return f"{settings.app_id}-creator-contributions"


def pipeline_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [
        *t.inputs,
        t.deadletter,
        t.late,
        t.milestones,
        contributions_topic(settings),
        changelog_topic(settings),
    ]


async def ensure_topics(
    settings: Settings, replication_factor: int = 1, timeout_s: float = 30.0
) -> list[str]:
    """Create missing topics; return the names created. Raises UserFacingError if Kafka is unreachable."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        request_timeout_ms=10_000,
        **client_options(settings),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
    except (KafkaConnectionError, TimeoutError, OSError) as exc:
        raise UserFacingError(
            f"cannot reach Kafka at {settings.kafka_bootstrap_servers} ({exc}); is it running? "
            "(`livecommerce kafka status`)"
        ) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in pipeline_topics(settings) if name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):  # another worker won the race
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            settings.topic_partitions,
                            settings.kafka_replication_factor,
                            topic_configs=_topic_config(name, settings),
                        )
                        for name in missing
                    ]
                )
            log.info("created topics %s with %d partitions", ", ".join(missing), settings.topic_partitions)
        # Also when it already existed (an earlier version, by hand, or a racing worker created it): it
        # must have this configuration. Idempotent.
        resource = ConfigResource(ConfigResourceType.TOPIC, changelog_topic(settings), CHANGELOG_CONFIG)
        for response in await admin.alter_configs([resource]):
            for error_code, message, *_ in response.resources:
                if error_code:
                    raise UserFacingError(
                        f"cannot configure {changelog_topic(settings)} ({CHANGELOG_CONFIG}): Kafka "
                        f"error {error_code} {message}; the worker needs permission to alter its "
                        "topics' configs"
                    )
        copartitioned = [*settings.topics.inputs, contributions_topic(settings), changelog_topic(settings)]
        _check_partition_counts(await admin.describe_topics(copartitioned), settings)
        return missing
    finally:
        await admin.close()


def _topic_config(name: str, settings: Settings) -> dict[str, str] | None:
    if name == changelog_topic(settings):
        return CHANGELOG_CONFIG
    if name in settings.topics.inputs:
        return INPUT_CONFIG
    if name == settings.topics.deadletter:
        return DEADLETTER_CONFIG
    return None


def _check_partition_counts(descriptions: list[dict], settings: Settings) -> None:
    # The stages are co-partitioned: partition p of every input topic, of the repartition topic and of
    # the state table's changelog hold the same rooms, and the creator stage waits for every input
    # partition. Mismatched counts would silently break both, so refuse to start instead.
    wrong = {
        d["topic"]: len(d["partitions"])
        for d in descriptions
        if d.get("partitions") and len(d["partitions"]) != settings.topic_partitions
    }
    if wrong:
        found = ", ".join(f"{topic} has {n}" for topic, n in sorted(wrong.items()))
        raise UserFacingError(
            f"TOPIC_PARTITIONS is {settings.topic_partitions} but {found} partitions; set TOPIC_PARTITIONS "
            "to the topics' partition count (the input topics and the repartition topic must all have it)"
        )
