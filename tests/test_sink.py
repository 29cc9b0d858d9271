"""Unit tests of the BatchingSink and the sink row contracts: no Kafka, no ClickHouse."""

from __future__ import annotations

import asyncio
import random

import pytest

from pipeline.settings import Settings
from pipeline.sink import BatchingSink, FlushPolicy, ListWriter, RetryPolicy, SinkFailed
from pipeline.sink.tables import (
    CREATOR_WINDOW_COLUMNS,
    RAW_EVENT_COLUMNS,
    ROOM_WINDOW_COLUMNS,
    creator_window_row,
    make_sinks,
    raw_event_row,
    room_window_row,
)

FAST_RETRY = RetryPolicy(initial_seconds=0.001, multiplier=2.0, max_seconds=0.01)
T = "db.t"


class FlakyWriter(ListWriter):
    """Fails the first `failures` attempts; with `land_first`, the failed attempts DID store the rows
    (the outcome-unknown case: the server committed, the response was lost)."""

    def __init__(self, failures: int = 0, land_first: bool = False, fail_rate: float = 0.0, seed: int = 1):
        super().__init__()
        self.failures, self.land_first, self.fail_rate = failures, land_first, fail_rate
        self.attempts = 0
        self.random = random.Random(seed)
        self.reachable: bool | None = None

    async def write(self, table, columns, rows, dedup_token):
        self.attempts += 1
        fail = self.failures > 0 or self.random.random() < self.fail_rate
        if fail:
            self.failures -= 1
            if self.land_first:
                await super().write(table, columns, rows, dedup_token)
            self.reachable = False
            raise ConnectionError("ClickHouse is down")
        self.reachable = True
        await super().write(table, columns, rows, dedup_token)


class GatedWriter(ListWriter):
    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, table, columns, rows, dedup_token):
        await self.gate.wait()
        await super().write(table, columns, rows, dedup_token)


def rows(n: int, start: int = 0) -> list[tuple]:
    return [(i, f"r{i}") for i in range(start, start + n)]


async def test_flushes_full_batches_by_size_and_rest_on_flush():
    writer = ListWriter()
    sink = BatchingSink(
        writer, T, ("n", "s"), policy=FlushPolicy(max_rows=3, max_seconds=60, max_buffered_rows=100)
    )
    await sink.put(rows(7))
    for _ in range(20):
        await asyncio.sleep(0)
    assert [b[2] for b in writer.batches] == [3, 3]  # two full batches without waiting for time
    assert sink.stats.buffered_rows == 1
    await sink.flush()
    assert writer.rows(T) == rows(7)
    assert (sink.stats.rows_written, sink.stats.batches_written) == (7, 3)
    assert await sink.close()


async def test_flushes_by_time_without_an_explicit_flush():
    writer = ListWriter()
    sink = BatchingSink(writer, T, ("n", "s"), policy=FlushPolicy(max_rows=1000, max_seconds=0.05))
    await sink.put(rows(2))
    assert writer.rows(T) == []
    await asyncio.sleep(0.3)
    assert writer.rows(T) == rows(2)
    await sink.close()


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(initial_seconds=0.1, multiplier=2.0, max_seconds=1.0)
    assert [policy.delay(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


async def test_failed_writes_are_retried_until_they_succeed():
    writer = FlakyWriter(failures=4)
    sink = BatchingSink(writer, T, ("n", "s"), retry=FAST_RETRY)
    await sink.put(rows(5))
    await sink.flush()
    assert writer.rows(T) == rows(5)
    assert (sink.stats.retries, sink.stats.errors, writer.attempts) == (4, 4, 5)
    assert sink.stats.reachable is True and "ClickHouse is down" in sink.stats.last_error
    await sink.close()


async def test_retry_of_a_write_that_landed_is_not_stored_twice():
    writer = FlakyWriter(failures=2, land_first=True)
    sink = BatchingSink(writer, T, ("n", "s"), retry=FAST_RETRY)
    await sink.put(rows(4))
    await sink.flush()
    assert writer.rows(T) == rows(4)  # same token on every retry: the landed copy is the only one
    assert len({token for _, token, _ in writer.batches}) == 1
    await sink.close()


async def test_no_loss_no_double_under_random_failures():
    writer = FlakyWriter(fail_rate=0.4, seed=7)
    policy = FlushPolicy(max_rows=50, max_seconds=0.01, max_buffered_rows=200)
    sink = BatchingSink(writer, T, ("n", "s"), policy=policy, retry=FAST_RETRY)
    for start in range(0, 2000, 37):
        await sink.put(rows(min(37, 2000 - start), start))
    await sink.flush()
    assert writer.rows(T) == rows(2000)
    assert sink.stats.errors > 0 and sink.stats.rows_written == 2000
    await sink.close()


async def test_backpressure_blocks_put_until_rows_are_written():
    writer = GatedWriter()
    sink = BatchingSink(
        writer, T, ("n", "s"), policy=FlushPolicy(max_rows=5, max_seconds=60, max_buffered_rows=10)
    )
    await sink.put(rows(10))
    blocked = asyncio.create_task(sink.put(rows(1, 10)))
    await asyncio.sleep(0.05)
    assert not blocked.done() and sink.stats.backpressure
    writer.gate.set()
    await asyncio.wait_for(blocked, 1)
    assert not sink.stats.backpressure
    await sink.flush()
    assert writer.rows(T) == rows(11)
    await sink.close()


async def test_flush_waits_for_the_write_and_reports_offsets_covered():
    writer = GatedWriter()
    seen = []
    sink = BatchingSink(writer, T, ("n", "s"), on_written=seen.append)
    await sink.put(rows(2), position={("live.views", 0): 41})
    await sink.put(rows(1, 2), position={("live.views", 0): 42, ("live.orders", 3): 7})
    flushing = asyncio.create_task(sink.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done() and sink.written_position == {}  # nothing may be committed yet
    writer.gate.set()
    await asyncio.wait_for(flushing, 1)
    assert sink.written_position == {("live.views", 0): 42, ("live.orders", 3): 7}
    assert seen[-1] == sink.written_position
    await sink.close()


async def test_giving_up_surfaces_as_sink_failed():
    sink = BatchingSink(
        FlakyWriter(failures=100), T, ("n", "s"), retry=RetryPolicy(0.001, 2, 0.001, max_attempts=3)
    )
    await sink.put(rows(1))
    with pytest.raises(SinkFailed):
        await asyncio.wait_for(sink.flush(), 1)


async def test_close_with_timeout_while_down_reports_unwritten_rows():
    sink = BatchingSink(FlakyWriter(failures=10**9), T, ("n", "s"), retry=FAST_RETRY)
    await sink.put(rows(3))
    assert await sink.close(timeout=0.05) is False


def test_window_rows_get_seconds_and_window_end():
    stream = (1_700_000_040_000, 11, 22, 5, 3, 2, 1, 1, 1, 9900, 1, 500)  # no version: absolute values
    row = room_window_row(stream, 60_000)
    assert len(row) == len(ROOM_WINDOW_COLUMNS) and "version" not in ROOM_WINDOW_COLUMNS
    assert row == (1_700_000_040, 1_700_000_100, 11, 22, 5, 3, 2, 1, 1, 1, 9900, 1, 500)
    creator = creator_window_row((1_700_000_040_000, 22, 22, *range(1, 10)), 60_000)  # same 12-field shape
    assert len(creator) == len(CREATOR_WINDOW_COLUMNS) and "version" not in CREATOR_WINDOW_COLUMNS
    assert creator == (1_700_000_040, 1_700_000_100, 22, *range(1, 10))


def test_raw_event_row_fills_optional_fields_with_defaults():
    event = {"event_id": "e1", "type": "view", "ts": 1_700_000_000_123, "room_id": 1, "creator_id": 2,
             "user_id": 3, "source": "live_feed", "product_id": None}  # fmt: skip
    row = dict(zip(RAW_EVENT_COLUMNS, raw_event_row((event, "live.views", 3, 99)), strict=True))
    assert row["ts"] == 1_700_000_000_123 and row["amount_fen"] == 0 and row["order_id"] == ""
    assert (row["room_id"], row["creator_id"], row["user_id"]) == (1, 2, 3)
    assert (row["product_id"], row["merchant_id"], row["mcn_id"]) == (0, 0, 0)  # missing ids are 0
    assert (row["kafka_topic"], row["kafka_partition"], row["kafka_offset"]) == ("live.views", 3, 99)


async def test_make_sinks_targets_the_configured_database():
    writer = ListWriter()
    sinks = make_sinks(Settings(clickhouse_database="lc_test", window_ms=10_000), writer)
    await sinks.room_windows.put([(20_000, 5, 6, 1, 1, 0, 0, 0, 0, 0, 0, 0)])
    await sinks.creator_windows.put([(20_000, 6, 6, 1, 1, 0, 0, 0, 0, 0, 0, 0)])
    await sinks.flush()
    assert writer.rows("lc_test.room_windows") == [(20, 30, 5, 6, 1, 1, 0, 0, 0, 0, 0, 0, 0)]
    assert writer.rows("lc_test.creator_windows") == [(20, 30, 6, 1, 1, 0, 0, 0, 0, 0, 0, 0)]
    assert await sinks.close()
