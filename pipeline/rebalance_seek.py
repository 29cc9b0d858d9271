"""After a rebalance, rewind partitions that have no committed offset, as Faust does for the others.

Why: during a rebalance Faust's fetcher can take messages out of aiokafka and then throw them away
(the flow is stopped, the partition is paused, the generation changed). Faust relies on the seek it
does when recovery finishes ("Seek stream partitions to committed offsets") to read them again. That
seek is aiokafka's `seek_to_committed()`, which moves only partitions that have a committed offset
greater than 0 (`if offset and offset > 0`). A partition this consumer group never committed (for
example one a worker was killed on before its first commit) keeps the position the discarded fetch
left it at, usually the end of the log: its earlier messages are never delivered, nothing is ever
acknowledged or committed there, and its lag stays above 0 for good, without any error.

The race that discards them: Faust passes its live set of active partitions to aiokafka's
`Fetcher.fetched_records(partitions)` in the consumer thread; the rebalance pauses every partition,
which empties that set while the call is still waiting, and aiokafka reads an empty set as "all
partitions" (`if partitions and tp not in partitions`). So the first fetch of newly assigned
partitions is consumed from aiokafka and dropped by `Consumer.getmany()`.

The fix keeps Faust's own recovery logic and only completes its seek: partitions of stream topics
with no committed offset are moved to where the group's consumption starts, offset 0 for
`consumer_auto_offset_reset="earliest"` (aiokafka resets to the log start if 0 was deleted). Replays
are harmless here: every window remembers the input offsets it applied. Changelog partitions are
left alone (Faust never commits them; recovery positions them itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

log = logging.getLogger(__name__)
_MARK = "_livecommerce_rewinds_uncommitted"


def install(app) -> None:
    """Make `app`'s "seek to committed offsets" also rewind stream partitions without a commit.

    Call once, right after creating the Faust app. Only `consumer_auto_offset_reset="earliest"` is
    supported (with "latest" the skipped messages are what the policy asks for)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if app.conf.consumer_auto_offset_reset != "earliest":
        log.warning("rebalance seek fix not installed: consumer_auto_offset_reset is not 'earliest'")
        return
    if getattr(AIOKafkaConsumerThread, _MARK, False):
        return

    async def seek_to_committed(self) -> Mapping:
        # Runs in the consumer thread, like Faust's own implementation.
        return await self.call_thread(_seek_to_committed_or_start, self)

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed
    setattr(AIOKafkaConsumerThread, _MARK, True)


async def _seek_to_committed_or_start(thread) -> Mapping:
    consumer = thread._ensure_consumer()
    committed = await consumer.seek_to_committed()  # what Faust does: moves partitions with offset > 0
    changelogs = thread.app.tables.changelog_topics
    rewound = []
    for tp, offset in committed.items():
        if (offset is not None and offset > 0) or tp.topic in changelogs:
            continue
        before = _position(consumer, tp)
        consumer.seek(tp, 0)
        if before:  # had moved past the start without a commit: messages were taken and dropped
            rewound.append(f"{tp.topic}/{tp.partition}@{before}")
    if rewound:
        log.warning(
            "rewound %d partitions without a committed offset to their start: %s",
            len(rewound),
            ", ".join(sorted(rewound)),
        )
    return committed


def _position(consumer, tp) -> int | None:
    """The fetch position, for the log line only (aiokafka's public `position()` would block)."""
    try:
        return consumer._subscription.subscription.assignment.state_value(tp)._position
    except Exception:  # diagnostics only
        return None
