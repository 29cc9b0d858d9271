"""Two fixes to how Faust ends a rebalance: rewind stream partitions that have no committed offset,
as Faust does for the others, and keep the messages already queued for the agents.

1. Partitions without a commit. During a rebalance Faust's fetcher can take messages out of aiokafka
and then throw them away (the flow is stopped, the partition is paused, the generation changed).
Faust relies on the seek it does when recovery finishes ("Seek stream partitions to committed
offsets") to read them again. That seek is aiokafka's `seek_to_committed()`, which moves only
partitions that have a committed offset greater than 0 (`if offset and offset > 0`). A partition this
consumer group never committed (for example one a worker was killed on before its first commit) keeps
the position the discarded fetch left it at, usually the end of the log: its earlier messages are
never delivered, nothing is ever acknowledged or committed there, and its lag stays above 0 for good,
without any error.

The race that discards them: Faust passes its live set of active partitions to aiokafka's
`Fetcher.fetched_records(partitions)` in the consumer thread; the rebalance pauses every partition,
which empties that set while the call is still waiting, and aiokafka reads an empty set as "all
partitions" (`if partitions and tp not in partitions`). So the first fetch of newly assigned
partitions is consumed from aiokafka and dropped by `Consumer.getmany()`.

The fix (`install`) keeps Faust's own recovery logic and only completes its seek: partitions of stream
topics with no committed offset are moved to where the group's consumption starts, offset 0 for
`consumer_auto_offset_reset="earliest"` (aiokafka resets to the log start if 0 was deleted). Replays
are harmless here: every window remembers the input offsets it applied. Changelog partitions are
left alone (Faust never commits them; recovery positions them itself).

2. Messages cleared from the agents' queues. When recovery completes (`Recovery.on_recovery_completed`,
or `Recovery._resume_streams` for an app without tables) Faust resumes the stream partitions, awaits
that seek (a round trip to Kafka: 0.05-0.4 s here), and only then calls `app.flow_control.resume()`.
The flow is running already (recovery resumed it to read the changelogs), so meanwhile the fetcher
hands the resumed partitions' messages to the agents' channel queues; and mode's
`FlowControlEvent.resume()` clears every queue it manages (Faust creates channel queues
`clear_on_resume`) even when nothing was suspended. The messages still queued (not yet taken by an
agent) are gone, while the consumer's read offset (`Consumer._read_offset`) already counts them as
read, so their copies fetched again after the seek are dropped as already seen (Faust's dev log says
"DROPPED MESSAGE ROFF"). That leaves a hole of never-processed offsets in a partition: Faust never
commits past a hole of two or more offsets (the lag stays above 0 for good: the stall seen on the
repartition topic after a takeover), and commits straight over a one-offset hole or over a hole
before the partition's first commit (silent loss). A hole in the room stage of a worker that is then
killed is lost even though the survivor replays the partition: the contributions that worker sent
lack those offsets, and the creator windows skip them in the survivor's replay, having already
applied later offsets of that source (a window keeps only the last offset applied per source). A
forced-timing run of tests/test_scale_out.py (seek delayed while the agents are held) lost 93 events
with every lag at 0; with the fix the same run passes.

The fix (`QueueKeepingFlowControl`, which `pipeline.app.PipelineApp` uses as its `flow_control`):
`resume()` resumes (and so clears the queues) only a suspended flow. Every place Faust suspends the
flow also clears the queues itself (a rebalance revoking partitions), and an event of an earlier
generation that still reaches a queue is skipped by the stream's generation check, so the clear on
a running flow only ever discarded current messages. With nothing delivered discarded, the read
offset check drops only copies of messages already queued or processed, and the seek at most
replays a prefix in order, which the windows skip. (The same flow control manages Faust's changelog
queue, which recovery reads; these redundant resumes no longer clear it either.)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)
_MARK = "_livecommerce_rewinds_uncommitted"


def install(app) -> None:
    """Make `app`'s "seek to committed offsets" also rewind stream partitions without a commit.

    Call once, right after creating the Faust app. Only `consumer_auto_offset_reset="earliest"` is
    supported (with "latest" the skipped messages are what the policy asks for). The second fix of
    the module is not installed here: the app must use `QueueKeepingFlowControl` as its
    `flow_control` from the start (its queues register with it when created), as `PipelineApp` does."""
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


class QueueKeepingFlowControl(FlowControlEvent):
    """The flow control of Faust's streams (`app.flow_control`), except that `resume()` does nothing
    while the flow is not suspended. mode's `FlowControlEvent.resume()` clears every queue it
    manages (Faust's channel queues are created `clear_on_resume`) even when the flow is running,
    which at the end of recovery throws away messages already delivered (see the module)."""

    def resume(self) -> None:
        if not self.is_active():
            super().resume()


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
