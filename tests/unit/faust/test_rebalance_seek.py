"""pipeline.faust.rebalance_seek: the seek that ends a rebalance also rewinds partitions without a commit, the
end of recovery keeps the messages already queued for the agents, and commits do not crawl when gaps
overlap acknowledged offsets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from faust.transport.consumer import Consumer
from faust.types import TP
from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.faust.application import PipelineApp
from pipeline.faust.rebalance_seek import (
    QueueKeepingFlowControl,
    _seek_to_committed_or_start,
    install,
    new_offset,
)

STREAM, CHANGELOG = "t.views", "t-window-state-changelog"


class FakeConsumer:
    """Like aiokafka's: seek_to_committed() moves only partitions committed at an offset > 0."""

    def __init__(self, committed: dict, positions: dict):
        self.committed, self.positions = committed, positions

    async def seek_to_committed(self):
        for tp, offset in self.committed.items():
            if offset and offset > 0:
                self.positions[tp] = offset
        return dict(self.committed)

    def seek(self, tp, offset):
        self.positions[tp] = offset


def thread_for(consumer):
    app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={CHANGELOG}))
    return SimpleNamespace(app=app, _ensure_consumer=lambda: consumer)


async def test_partitions_without_a_commit_go_back_to_the_start_and_others_to_their_commit():
    committed_tp, uncommitted_tp, zero_tp = (TopicPartition(STREAM, p) for p in (0, 1, 2))
    changelog_tp = TopicPartition(CHANGELOG, 1)
    consumer = FakeConsumer(
        committed={committed_tp: 40, uncommitted_tp: None, zero_tp: 0, changelog_tp: None},
        # A discarded prefetch left every position at the end of its partition.
        positions={committed_tp: 90, uncommitted_tp: 522, zero_tp: 7, changelog_tp: 30},
    )
    result = await _seek_to_committed_or_start(thread_for(consumer))
    assert consumer.positions == {committed_tp: 40, uncommitted_tp: 0, zero_tp: 0, changelog_tp: 30}
    # Faust's perform_seek sets its committed and read offsets from this: the rewound ones read 0, so a
    # local committed offset left by a commit that failed during the rebalance is reset too.
    assert result == {committed_tp: 40, uncommitted_tp: 0, zero_tp: 0, changelog_tp: None}


# --- the end of recovery must not clear messages already delivered to the agents ---------------------


def channel_queue(flow_control):
    # How Faust creates an agent's channel queue (faust/channels.py): managed by the app's flow control.
    return FlowControlQueue(maxsize=100, flow_control=flow_control, clear_on_resume=True)


def test_resuming_a_running_flow_keeps_what_is_queued():
    flow = QueueKeepingFlowControl()
    queue = channel_queue(flow)
    flow.resume()  # recovery starts reading changelogs: the flow runs from here on
    for offset in range(3):  # the partitions were resumed; the fetcher delivers before the seek returns
        queue.put_nowait(offset)
    flow.resume()  # what Faust calls after "Seek stream partitions to committed offsets"
    assert flow.is_active()
    assert [queue.get_nowait() for _ in range(queue.qsize())] == [0, 1, 2]


def test_resuming_a_suspended_flow_still_clears_the_queues():
    flow = QueueKeepingFlowControl()
    queue = channel_queue(flow)
    flow.resume()
    queue.put_nowait("from the previous assignment")
    flow.suspend()  # a rebalance starts
    assert not flow.is_active()
    flow.resume()
    assert flow.is_active() and queue.empty()


def test_modes_flow_control_clears_even_a_running_flow():
    # The behaviour QueueKeepingFlowControl corrects. If a mode release stops doing this, the override
    # in pipeline.faust.application.PipelineApp is no longer needed.
    flow = FlowControlEvent()
    queue = channel_queue(flow)
    flow.resume()
    queue.put_nowait("delivered")
    flow.resume()
    assert queue.empty()


def test_the_app_uses_the_queue_keeping_flow_control(tmp_path):
    app = PipelineApp("test-flow-control", datadir=str(tmp_path))
    assert isinstance(app.flow_control, QueueKeepingFlowControl)
    queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # as Faust's channels do
    app.flow_control.resume()
    queue.put_nowait("delivered")
    app.flow_control.resume()
    assert queue.qsize() == 1


# --- the offset to commit: each offset counts once, gaps are filled only up to what was acknowledged --


def bookkeeping(acked, gaps=(), committed=None):
    """The part of a Faust consumer that `_new_offset` reads and updates, for partition "tp"."""
    gap = IntervalTree()
    for first, last in gaps:
        gap.addi(first, last + 1)  # as Faust's _add_gap stores them: the end is exclusive
    return SimpleNamespace(
        _acked={"tp": list(acked)},
        _acked_index={"tp": set(acked)},
        _gap={"tp": gap},
        _committed_offset={"tp": committed},
    )


def commits(new_offset_function, consumer, rounds=4):
    """The offsets committed in successive commit rounds, as Faust's commit loop would."""
    done = []
    for _ in range(rounds):
        offset = new_offset_function(consumer, "tp")
        if offset is not None:
            consumer._committed_offset["tp"] = offset
            done.append(offset)
    return done


# After a seek, messages fetched before it are delivered past the new read offset: Faust records a
# gap over offsets that were acknowledged as well (the failed scale-out run: views/3 acknowledged
# 22..70, gap 23..71, offset 71 not acknowledged yet).
REBALANCE = dict(acked=range(22, 71), gaps=[(23, 71)], committed=22)


def test_offsets_both_acknowledged_and_in_a_gap_are_committed_in_one_round():
    assert commits(new_offset, bookkeeping(**REBALANCE)) == [71]


def test_fausts_own_new_offset_crawls_one_offset_per_commit_there():
    # The behaviour pipeline.faust.rebalance_seek.new_offset replaces. If a Faust release stops crawling,
    # the replacement can go.
    assert commits(Consumer._new_offset, bookkeeping(**REBALANCE)) == [24, 25, 26, 27]


def test_a_gap_is_not_filled_past_the_highest_acknowledged_offset():
    # 71 is still being processed: committing 72 would lose it on a crash.
    consumer = bookkeeping(**REBALANCE)
    commits(new_offset, consumer)
    assert consumer._committed_offset["tp"] == 71
    consumer._acked["tp"].append(71)
    consumer._acked_index["tp"].add(71)
    assert new_offset(consumer, "tp") == 72


def test_a_real_gap_is_committed_over_once_the_message_after_it_is_acknowledged():
    # Offsets 13..15 are transaction markers or were compacted away: the fetcher jumped from 12 to 16.
    consumer = bookkeeping(acked=range(10, 13), gaps=[(13, 16)], committed=10)
    assert commits(new_offset, consumer) == [13]
    consumer._acked["tp"] += [16, 17]
    assert commits(new_offset, consumer) == [18]
    assert not consumer._gap["tp"] and consumer._acked["tp"] == []


@pytest.mark.parametrize(
    ("acked", "committed", "expected", "left"),
    [
        ([5, 6, 7, 9, 10], 5, 8, [9, 10]),  # a hole at 8: commit up to it, keep the rest
        ([9, 10], 6, None, [9, 10]),  # 7 and 8 not acknowledged yet: nothing to commit
        ([7, 8], 6, 9, []),  # Faust's rule kept: a one-offset hole at the committed offset is passed
        ([], 6, None, []),
    ],
)
def test_without_gaps_it_commits_what_faust_commits(acked, committed, expected, left):
    ours, fausts = bookkeeping(acked, committed=committed), bookkeeping(acked, committed=committed)
    assert new_offset(ours, "tp") == Consumer._new_offset(fausts, "tp") == expected
    assert ours._acked["tp"] == fausts._acked["tp"] == left
    assert ours._acked_index["tp"] == fausts._acked_index["tp"]


class FaustConsumerState(SimpleNamespace):
    """The part of a Faust consumer that resume_partitions and perform_seek read and update."""

    def _get_active_partitions(self):
        return self._active_partitions

    def _is_changelog_tp(self, tp):
        return tp.topic == CHANGELOG

    def assignment(self):
        return self.assigned


V3, V4, C1 = TP(STREAM, 3), TP(STREAM, 4), TP(CHANGELOG, 1)


def seeking_consumer(**state):
    app = PipelineApp("test-seek", consumer_auto_offset_reset="earliest")
    install(app)
    seen_active = []

    async def seek_to_committed():
        seen_active.append(set(consumer._active_partitions))
        return {V3: 22, V4: 0}  # 0: rewound to the start by _seek_to_committed_or_start

    consumer = FaustConsumerState(
        _active_partitions=set(),
        _paused_partitions={V3, V4, C1},  # a rebalance pauses every assigned partition
        assigned={V3, V4, C1},
        _read_offset={},
        _committed_offset={},
        _gap={},
        seek_to_committed=seek_to_committed,
        seen_active=seen_active,
    )
    for name, value in state.items():
        setattr(consumer, name, value)
    return consumer


async def test_the_seek_resets_what_faust_tracks_for_the_partitions_it_moves():
    gap = IntervalTree()
    gap.addi(23, 72)  # recorded before the seek, over offsets about to be read again
    consumer = seeking_consumer(
        _read_offset={V3: 71, V4: 90},
        _committed_offset={V3: 70, V4: 90},  # 90: set by a commit that failed
        _gap={V3: gap},
    )
    assert Consumer._new_offset is new_offset
    await Consumer.perform_seek(consumer)
    assert consumer._read_offset == {V3: 22, V4: 0}
    assert consumer._committed_offset == {V3: 22, V4: None}
    assert consumer._gap == {}


async def test_stream_partitions_resumed_before_the_seek_start_fetching_after_it():
    consumer = seeking_consumer()
    Consumer.resume_partitions(consumer, {C1})  # recovery reads the changelog: not held
    assert consumer._active_partitions == {C1}
    # What Faust's Recovery.on_recovery_completed does: resume the stream partitions, then seek.
    Consumer.resume_partitions(consumer, {V3, V4})
    assert consumer._active_partitions == {C1}  # nothing fetched from the positions before the seek
    await Consumer.perform_seek(consumer)
    assert consumer.seen_active == [{C1}]
    assert consumer._active_partitions == {C1, V3, V4}
    assert not consumer._paused_partitions & {V3, V4}


async def test_partitions_revoked_while_held_are_not_resumed():
    consumer = seeking_consumer()
    Consumer.resume_partitions(consumer, {V3, V4})
    consumer.assigned = {V3}  # V4 went to another worker before the seek completed
    await Consumer.perform_seek(consumer)
    assert consumer._active_partitions == {V3}
