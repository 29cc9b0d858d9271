"""The worker's idle-partition path (`StreamRuntime.advance_idle_partitions`) with Faust's consumer, state
table and producer replaced by recording fakes behind the `pipeline.faust` adapters: which partitions
count as idle, and that their checkpoint goes through the room stage's checkpoint pipeline to the
state table and the repartition topic."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

import orjson
import pytest
from faust.streams import current_event
from faust.types import TP

from pipeline import checkpointing
from pipeline.checkpointing import CheckpointPipeline
from pipeline.faust.consumer import AppPartitions
from pipeline.faust.state_table import TableStore
from pipeline.metrics import Metrics
from pipeline.runtime import StreamRuntime
from pipeline.settings import Settings
from pipeline.sink.writer import ListWriter

SETTINGS = Settings.from_env({"TOPIC_PARTITIONS": "2", "IDLE_PARTITION_SECONDS": "60"})
CHANGELOG = "app-window-state-changelog"


class Consumer:
    def __init__(self, assigned: set[TP], ends: dict[TP, int], committed: dict[TP, int]):
        self.assigned, self.ends, self._committed_offset = assigned, ends, committed
        self.asked: list[tuple[TP, ...]] = []

    def assignment(self) -> set[TP]:
        return self.assigned

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.asked.append(tps)
        return {tp: self.ends[tp] for tp in tps}


class Table(dict):
    """Records the changelog partition Faust would pick for each write (from the current event)."""

    def __init__(self, consumer: Consumer):
        super().__init__()
        self.app = SimpleNamespace(
            consumer=consumer,
            in_recovery=False,
            assignor=SimpleNamespace(assigned_actives=lambda: {TP(CHANGELOG, 0), TP(CHANGELOG, 1)}),
        )
        self.changelog_topic_name = CHANGELOG
        self.data = SimpleNamespace(_dbs={0: [], 1: []}, _visible_items=lambda db: iter(db))
        self.partitions: dict[bytes, int] = {}

    def __setitem__(self, key, value):
        self.partitions[key] = current_event().message.partition
        super().__setitem__(key, value)

    @contextlib.contextmanager
    def collect_changelog(self):
        yield []  # changelog writes of this fake need no confirmation


class Topic:
    def __init__(self):
        self.sent: list[tuple[int, bytes]] = []

    async def send(self, value, partition=None, key=None):
        self.sent.append((partition, value))
        confirmed = asyncio.get_running_loop().create_future()
        confirmed.set_result(None)  # the broker's confirmation, at once
        return confirmed


def make_runtime(assigned, ends, committed, clock):
    consumer = Consumer(assigned, ends, committed)
    table = Table(consumer)
    topics = SimpleNamespace(deadletter=Topic(), late=Topic(), contributions=Topic())

    async def flush():
        pass

    topics.flush = flush
    runtime = StreamRuntime(
        SETTINGS,
        Metrics(),
        state=TableStore(table),
        topics=topics,
        partitions=AppPartitions(table.app),
        writer=ListWriter(),
    )
    acked = []

    async def ack(event):
        acked.append(event)

    runtime.use_room_pipeline(CheckpointPipeline("rooms", ack))
    return runtime, consumer, table, topics, acked


@pytest.fixture
def clock(monkeypatch):
    now = SimpleNamespace(wall=1_750_000_000.0, mono=1_000.0)
    monkeypatch.setattr("pipeline.runtime.time.time", lambda: now.wall)
    monkeypatch.setattr("pipeline.runtime.time.monotonic", lambda: now.mono)
    monkeypatch.setattr(checkpointing.os, "_exit", lambda code: (_ for _ in ()).throw(SystemExit(code)))
    return now


async def test_only_partitions_quiet_for_the_idle_time_with_nothing_pending_advance(clock):
    quiet, pending, other = TP("live.clicks", 1), TP("live.views", 0), TP("app-creator-contributions", 1)
    runtime, consumer, table, topics, acked = make_runtime(
        {quiet, pending, other}, ends={quiet: 0, pending: 5}, committed={pending: 3}, clock=clock
    )
    await runtime.advance_idle_partitions()
    assert consumer.asked == []  # a worker that just took the partitions first lets them be idle a while
    clock.mono += 59
    await runtime.advance_idle_partitions()
    assert consumer.asked == []
    clock.mono += 1
    clock.wall += 60
    await runtime.advance_idle_partitions()
    await runtime.room_pipeline.wait_idle()
    assert consumer.asked == [(quiet, pending)]  # input partitions only
    parts = runtime.rooms.partitions()
    assert (
        parts[("live.clicks", 1)].watermark.max_event_ms
        == int(clock.wall * 1000) - SETTINGS.idle_partition_ms
    )
    # views/0 has messages waiting (committed 3, end 5): its own events will move its event time.
    assert parts[("live.views", 0)].watermark.max_event_ms < 0
    # The advance is durable: its meta was written in changelog partition 1, heartbeats went out to
    # every creator partition, and nothing was acknowledged (there was no message).
    meta = table[b"m|live.clicks/1"]
    assert orjson.loads(meta)[0] == parts[("live.clicks", 1)].watermark.max_event_ms
    assert table.partitions[b"m|live.clicks/1"] == 1
    assert sorted(p for p, _ in topics.contributions.sent) == [0, 1]
    assert acked == []


async def test_a_partition_that_received_a_message_is_not_advanced_until_idle_again(clock):
    tp = TP("live.views", 1)
    runtime, consumer, *_ = make_runtime({tp}, ends={tp: 1}, committed={}, clock=clock)
    message = SimpleNamespace(
        topic=tp.topic,
        partition=1,
        offset=0,
        tp=tp,
        key=b"3",
        value=orjson.dumps(
            {
                "event_id": "e",
                "type": "view",
                "ts": int(clock.wall * 1000),
                "room_id": 3,
                "creator_id": 4,
                "user_id": 5,
            }
        ),
        timestamp=clock.wall,
        timestamp_type=1,
    )
    event = Event(message)
    runtime._owned = _owned
    await runtime.room_pipeline.submit(runtime.process_room_batch, [event])
    await runtime.room_pipeline.wait_idle()
    clock.mono += 30
    await runtime.advance_idle_partitions()
    assert consumer.asked == []
    clock.mono += 30
    clock.wall += 60
    await runtime.advance_idle_partitions()
    await runtime.room_pipeline.wait_idle()
    assert consumer.asked == [(tp,)]
    part = runtime.rooms.partitions()[("live.views", 1)]
    assert part.next_offset == 1
    # The event's own time (60 s ago) is the idle floor exactly: nothing to move.
    assert part.watermark.max_event_ms == int(clock.wall * 1000) - SETTINGS.idle_partition_ms


class Event:  # Faust keeps a weak reference to the current event
    def __init__(self, message):
        self.message = message


async def _owned(events, known):
    return list(events)
