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
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError

from pipeline.errors import UserFacingError
from pipeline.kafka_options import client_options
from pipeline.settings import Settings

log = logging.getLogger(__name__)


STATE_TABLE = "window-state"


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
                        NewTopic(name, settings.topic_partitions, settings.kafka_replication_factor)
                        for name in missing
                    ]
                )
            log.info("created topics %s with %d partitions", ", ".join(missing), settings.topic_partitions)
        copartitioned = [*settings.topics.inputs, contributions_topic(settings), changelog_topic(settings)]
        _check_partition_counts(await admin.describe_topics(copartitioned), settings)
        return missing
    finally:
        await admin.close()


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
