"""pipeline.rebalance_seek: the seek that ends a rebalance also rewinds partitions without a commit, and
the end of recovery keeps the messages already queued for the agents."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from pipeline.app import PipelineApp
from pipeline.rebalance_seek import QueueKeepingFlowControl, _seek_to_committed_or_start

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
    assert result == consumer.committed  # Faust's perform_seek reads committed offsets from this


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
    # in pipeline.app.PipelineApp is no longer needed.
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
