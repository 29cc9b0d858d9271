"""Confirmed Kafka writes before acknowledgement (pipeline.confirmed_sends): pure code, no broker.

The failing producer is injected: futures that fail the way Faust's `Topic._on_published` fails them
(with the broker's exception), and ones that never resolve (a record stuck in Faust's buffer). The
same on a real broker is in tests/integration/test_worker.py (a dead letter over the topic's
max.message.bytes).
"""

from __future__ import annotations

import asyncio
import weakref
from types import SimpleNamespace

import faust
import orjson
import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.streams import _current_event

from pipeline import checkpointing
from pipeline.checkpointing import CheckpointPipeline, Processed
from pipeline.confirmed_sends import SendConfirmations, SendNotConfirmed
from pipeline.faust.state_table import ConfirmingTable
from pipeline.metrics import Metrics
from pipeline.rows import ROOM_WINDOW_COLUMNS
from pipeline.runtime import StreamRuntime
from pipeline.settings import Settings
from pipeline.sink.batching import RefusedRow
from pipeline.sink.writer import JSON_EACH_ROW, NATIVE, ListWriter


class Died(Exception):
    pass


class FakeEvent:
    message = SimpleNamespace(topic="live.views", partition=1)


@pytest.fixture(autouse=True)
def no_real_exit(monkeypatch):
    def fake_exit(code):
        raise Died(code)

    monkeypatch.setattr(checkpointing.os, "_exit", fake_exit)


def resolved(loop, exc: BaseException | None = None) -> asyncio.Future:
    fut = loop.create_future()
    if exc is None:
        fut.set_result("metadata")
    else:
        fut.set_exception(exc)
    return fut


async def test_confirm_returns_once_every_send_is_confirmed_and_forgets_them():
    loop = asyncio.get_running_loop()
    sends = SendConfirmations()
    later = loop.create_future()
    sends.extend([resolved(loop), later])
    loop.call_later(0.02, later.set_result, "metadata")
    await sends.confirm(timeout=5)
    assert len(sends) == 0
    await sends.confirm(timeout=0.01)  # nothing pending: returns at once


async def test_a_failed_send_is_not_confirmed():
    loop = asyncio.get_running_loop()
    sends = SendConfirmations()
    sends.extend([resolved(loop), resolved(loop, MessageSizeTooLargeError()), resolved(loop)])
    with pytest.raises(SendNotConfirmed, match="1 of 3 Kafka sends failed"):
        await sends.confirm(timeout=5)


async def test_a_send_the_broker_never_answers_times_out():
    sends = SendConfirmations()
    sends.add(asyncio.get_running_loop().create_future())  # stuck in the producer buffer
    with pytest.raises(SendNotConfirmed, match="unconfirmed after"):
        await sends.confirm(timeout=0.05)


async def test_a_checkpoint_whose_send_failed_stops_the_worker_without_acknowledging():
    acked = []

    async def ack(event):
        acked.append(event)

    async def process(events):
        sends = SendConfirmations()
        # What runtime.process_room_batch does with a dead letter: the send's future is kept...
        sends.add(resolved(asyncio.get_running_loop(), MessageSizeTooLargeError()))

        async def write():
            await sends.confirm(timeout=5)  # ... and confirmed before the batch is acknowledged

        return Processed(write, events)

    pipeline = CheckpointPipeline("rooms", ack)
    await pipeline.submit(process, [1, 2, 3])
    with pytest.raises(Died) as died:
        await pipeline.wait_idle()
    assert died.value.args == (checkpointing.EXIT_CHECKPOINT_FAILED,)
    assert acked == []


async def test_confirming_table_collects_the_changelog_futures_of_table_writes():
    app = faust.App("t-confirm", broker="kafka://127.0.0.1:1", Table=ConfirmingTable, store="memory://")
    table = app.Table("state", partitions=2, key_type=bytes, value_type=bytes)
    assert isinstance(table, ConfirmingTable)
    table.send_changelog(0, b"outside", b"v")  # not collected: no block open
    event = FakeEvent()
    token = _current_event.set(weakref.ref(event))  # as TableStore.write does
    try:
        with table.collect_changelog() as futures:
            table.on_key_set(b"k1", b"v1")  # what table[k1] = v1 calls inside a stream
            table.on_key_del(b"k2")  # what table.pop(k2) calls
    finally:
        _current_event.reset(token)
    assert len(futures) == 2 and all(isinstance(f, faust.types.tuples.FutureMessage) for f in futures)
    assert app.producer.buffer.size == 3  # queued in Faust's buffer, not yet confirmed
    # Faust's Topic._on_published fails the FutureMessage with the broker's error:
    futures[0].set_exception(MessageSizeTooLargeError())
    futures[1].set_result("metadata")
    sends = SendConfirmations()
    sends.extend(futures)
    with pytest.raises(SendNotConfirmed):
        await sends.confirm(timeout=5)


class FakeTopic:
    """A Faust topic whose sends the broker answers with `error` (or confirms)."""

    def __init__(self, error: BaseException | None = None):
        self.sent, self.error = [], error

    async def send(self, key=None, value=None, partition=None):
        self.sent.append(value)
        return resolved(asyncio.get_running_loop(), self.error)


def runtime_with(settings, metrics, topics) -> StreamRuntime:
    return StreamRuntime(settings, metrics, state=None, topics=topics, partitions=None, writer=ListWriter())


def refused_window_row() -> RefusedRow:
    row = (1_700_000_000, 1_700_000_060, 8, 1, 0, 0, 0, 0, 2, 1, 2**64, 0, 0)
    return RefusedRow("db.room_windows", ROOM_WINDOW_COLUMNS, row, NATIVE, "DataError: gmv_fen", None,
                      {("live.orders", 2): 41})  # fmt: skip


async def test_a_refused_row_is_dead_lettered_and_confirmed_before_its_batch_counts_as_written():
    settings, metrics, topic = Settings(), Metrics(), FakeTopic()
    runtime = runtime_with(settings, metrics, SimpleNamespace(deadletter=topic))
    await runtime.refused_row(refused_window_row())
    doc = orjson.loads(topic.sent[0])
    assert (doc["reason"], doc["table"], doc["source_topic"], doc["offset"]) == (
        "refused_by_clickhouse", "db.room_windows", "live.orders", 41)  # fmt: skip
    assert doc["row"]["room_id"] == 8 and doc["row"]["gmv_fen"] == str(2**64)
    assert b'livecommerce_sink_rows_refused_total{table="room_windows"} 1.0' in metrics.exposition()
    raw = RefusedRow("db.raw_events", (), b'{"event_id":"e","kafka_topic":"live.views","kafka_partition":1,'
                     b'"kafka_offset":9}', JSON_EACH_ROW, "Code: 27.", 27, {})  # fmt: skip
    await runtime.refused_row(raw)
    doc = orjson.loads(topic.sent[1])
    assert (doc["source_topic"], doc["partition"], doc["offset"], doc["clickhouse_code"]) == (
        "live.views",
        1,
        9,
        27,
    )


async def test_a_refused_row_whose_dead_letter_fails_is_not_counted_as_handled():
    runtime = runtime_with(
        Settings(), Metrics(), SimpleNamespace(deadletter=FakeTopic(MessageSizeTooLargeError()))
    )
    with pytest.raises(SendNotConfirmed):
        await runtime.refused_row(refused_window_row())
