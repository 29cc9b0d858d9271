"""pipeline.rebalance_seek: the seek that ends a rebalance also rewinds partitions without a commit."""

from __future__ import annotations

from types import SimpleNamespace

from aiokafka import TopicPartition

from pipeline.rebalance_seek import _seek_to_committed_or_start

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
