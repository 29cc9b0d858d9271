"""Three fixes to how Faust ends a rebalance: rewind stream partitions that have no committed offset,
as Faust does for the others; keep the messages already queued for the agents; deliver nothing from
before the seek and commit what was acknowledged without crawling.

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
forced-timing run of tests/integration/test_scale_out.py (seek delayed while the agents are held) lost
93 events with every lag at 0; with the fix the same run passes.

The fix (`QueueKeepingFlowControl`, which `pipeline.faust.application.PipelineApp` uses as its
`flow_control`): `resume()` resumes (and so clears the queues) only a suspended flow. Every place
Faust suspends the flow also clears the queues itself (a rebalance revoking partitions), and an
event of an earlier generation that still reaches a queue is skipped by the stream's generation
check, so the clear on a running flow only ever discarded current messages. With nothing delivered
discarded, the read offset check drops only copies of messages already queued or processed, and the
seek at most replays a prefix in order, which the windows skip. (The same flow control manages
Faust's changelog queue, which recovery reads; these redundant resumes no longer clear it either.)

3. Commits that crawl one offset at a time after a rebalance. Faust commits, per partition, the
longest run of consecutive offsets that were acknowledged (`Consumer._acked`) or skipped
(`Consumer._gap`: offsets the fetcher jumped over, for compacted topics and transaction markers).
It records a gap whenever a delivered message is more than one offset past the read offset. Around
the seek above, messages fetched before it are still delivered afterwards, past the read offset the
seek just set, so gaps get recorded over offsets that are also acknowledged. Faust's
`_new_offset` then merges the gap into the acknowledged list without removing duplicates, and its
run of consecutive offsets stops at the first duplicate: the committed offset moves one offset per
commit interval (2.8 s here). That is the stall of a failed run of tests/integration/test_scale_out.py: the
group's commit log in Kafka (`kafka.tools.DumpLogSegments --offsets-decoder` on __consumer_offsets)
shows views/3 committed at 24, 25, 26, ... 89, one step every 2.8 s, until the test gave up with
the data complete. Faust's `_new_offset` also marks a whole gap
interval as done once any acknowledged offset lies past its start, including offsets above the
highest one acknowledged (messages still being processed).

The same delivery of messages fetched from the old positions is worse for a partition taken over
from another worker: its position can be ahead of the committed offset (the discarded fetch of
fix 1), and once a message from there reaches the room stage, the offsets before it are skipped as
replays when the seek brings them back (a window keeps the last offset applied per source).

The fix (`install`):
- stream partitions that Faust resumes (it does so only right before the seek) stay out of its set
  of active partitions until the seek has completed, so nothing is fetched or delivered from the
  old positions (aiokafka drops what it buffered for a partition when it is sought);
- the seek clears the gaps recorded before it (every partition is read again from its committed
  offset, so real gaps are found again) and reports offset 0 for the partitions it rewinds, so
  Faust's committed and read offsets are reset for them too (a commit that fails during the
  rebalance still sets Faust's local committed offset);
- `_new_offset` counts each offset once and fills gaps only up to the highest acknowledged offset.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from faust.transport.consumer import Consumer, ensure_TPset
from mode.utils.queues import FlowControlEvent

log = logging.getLogger(__name__)
_MARK = "_livecommerce_patched"


def install(app) -> None:
    """Install the first and third fixes of the module (they patch Faust's consumer classes).

    Call once, right after creating the Faust app. The rewind of partitions without a commit needs
    `consumer_auto_offset_reset="earliest"` (with "latest" the skipped messages are what the policy
    asks for). The second fix is not installed here: the app must use `QueueKeepingFlowControl` as
    its `flow_control` from the start (its queues register with it when created), as `PipelineApp`
    does."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if not getattr(Consumer, _MARK, False):
        faust_perform_seek, faust_resume_partitions = Consumer.perform_seek, Consumer.resume_partitions

        def resume_partitions(self, tps) -> None:
            # Faust resumes stream partitions only right before its seek to committed offsets: hold
            # them until that seek is done, so nothing fetched from the old positions is delivered.
            tps = ensure_TPset(tps)
            streams = {tp for tp in tps if not self._is_changelog_tp(tp)}
            _held(self).update(streams)
            faust_resume_partitions(self, tps - streams)

        async def perform_seek(self) -> None:
            try:
                await faust_perform_seek(self)
                # Every assigned partition is read again from its committed offset: gaps seen before
                # would mark re-read offsets as done twice.
                self._gap.clear()
            finally:  # also after a failed seek: Faust's own behaviour (resumed partitions) is kept
                held, assigned = _held(self), self.assignment()
                release = {tp for tp in held if tp in assigned}
                held.clear()
                faust_resume_partitions(self, release)

        Consumer.resume_partitions = resume_partitions
        Consumer.perform_seek = perform_seek
        Consumer._new_offset = new_offset
        setattr(Consumer, _MARK, True)

    if app.conf.consumer_auto_offset_reset != "earliest":
        log.warning(
            "rewind of uncommitted partitions not installed: consumer_auto_offset_reset is not 'earliest'"
        )
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


def _held(consumer: Consumer) -> set:
    """The stream partitions Faust resumed that wait for the seek (see `install`)."""
    held = consumer.__dict__.get("_livecommerce_held")
    if held is None:
        held = consumer.__dict__["_livecommerce_held"] = set()
    return held


def new_offset(self: Consumer, tp) -> int | None:
    """Faust's `Consumer._new_offset` (the offset to commit for `tp`, or None) with two changes: an
    offset acknowledged and also inside a gap counts once, and a gap is filled only up to the highest
    acknowledged offset. Faust's own condition for a hole at the committed offset is kept."""
    acked = self._acked[tp]
    if not acked:
        return None
    top = max(acked)
    gap = self._gap[tp]
    if gap:
        skipped = [
            offset
            for interval in gap.overlap(0, top + 1)
            for offset in range(interval.begin, min(interval.end, top + 1))
        ]
        if skipped:
            acked.extend(skipped)
            gap.chop(0, top + 1)
    offsets = sorted(set(acked))
    committed = self._committed_offset[tp]
    if committed and offsets[0] - committed > 1:
        acked[:] = offsets
        return None
    run = 1
    while run < len(offsets) and offsets[run] == offsets[0] + run:
        run += 1
    self._acked_index[tp].difference_update(offsets[:run])
    acked[:] = offsets[run:]
    return offsets[run - 1] + 1


async def _seek_to_committed_or_start(thread) -> Mapping:
    consumer = thread._ensure_consumer()
    committed = await consumer.seek_to_committed()  # what Faust does: moves partitions with offset > 0
    changelogs = thread.app.tables.changelog_topics
    rewound = []
    for tp, offset in list(committed.items()):
        if (offset is not None and offset > 0) or tp.topic in changelogs:
            continue
        before = _position(consumer, tp)
        consumer.seek(tp, 0)
        committed[tp] = 0  # Faust's perform_seek then resets its committed and read offsets for tp
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
