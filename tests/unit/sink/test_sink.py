"""Unit tests of the BatchingSink and the sink row contracts: no Kafka, no ClickHouse."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError

from pipeline.metrics import Metrics
from pipeline.rows import (
    CREATOR_WINDOW_COLUMNS,
    RAW_EVENT_COLUMNS,
    ROOM_WINDOW_COLUMNS,
    creator_window_row,
    raw_event_json,
    raw_event_row,
    room_window_row,
)
from pipeline.settings import Settings
from pipeline.sink import (
    JSON_EACH_ROW,
    NATIVE,
    BatchingSink,
    FlushPolicy,
    ListWriter,
    RetryPolicy,
    RowsRefused,
    SinkFailed,
)
from pipeline.sink.policy import REFUSED, TRANSIENT, classify_failure
from pipeline.sink.tables import make_sinks
from pipeline.sink.writer import InstrumentedWriter

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

    async def write(self, table, columns, rows, dedup_token, fmt=NATIVE):
        self.attempts += 1
        fail = self.failures > 0 or self.random.random() < self.fail_rate
        if fail:
            self.failures -= 1
            if self.land_first:
                await super().write(table, columns, rows, dedup_token, fmt)
            self.reachable = False
            raise ConnectionError("ClickHouse is down")
        self.reachable = True
        await super().write(table, columns, rows, dedup_token, fmt)


class GatedWriter(ListWriter):
    def __init__(self):
        super().__init__()
        self.gate = asyncio.Event()

    async def write(self, table, columns, rows, dedup_token, fmt=NATIVE):
        await self.gate.wait()
        await super().write(table, columns, rows, dedup_token, fmt)


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


async def test_flush_waits_for_the_write():
    writer = GatedWriter()
    sink = BatchingSink(writer, T, ("n", "s"))
    await sink.put(rows(2), position={("live.views", 0): 41})
    await sink.put(rows(1, 2), position={("live.views", 0): 42, ("live.orders", 3): 7})
    flushing = asyncio.create_task(sink.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done()  # nothing may be committed yet
    writer.gate.set()
    await asyncio.wait_for(flushing, 1)
    assert writer.rows(T) == rows(3)
    assert not sink._marks  # a put's position is kept only until its rows are written
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


EVENT = {"event_id": "e1", "type": "order", "ts": 1_700_000_000_123, "room_id": 1, "creator_id": 2,
         "user_id": 3, "product_id": 4, "order_id": "o-1", "amount_fen": 990, "quantity": 2,
         "merchant_id": None, "category": '女装 "A" \\ \n', "source": "live_feed"}  # fmt: skip


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (1_700_000_000_000, "1700000000.000"),
        (1_700_000_000_005, "1700000000.005"),
        (1_700_000_000_999, "1700000000.999"),
        (1_700_000_000_010, "1700000000.010"),
        (9_999_999_999_999, "9999999999.999"),
        # fewer than 10 digits before the point would be parsed as a date: zero-padded
        (0, "0000000000.000"),
        (5, "0000000000.005"),
        (86_400_123, "0000086400.123"),
    ],
)
def test_raw_event_json_writes_ts_as_exact_seconds_dot_millis(ts, text):
    obj = orjson.loads(raw_event_json(({**EVENT, "ts": ts}, "live.orders", 0, 0)))
    assert obj["ts"] == text


@pytest.mark.parametrize("spoofed", [{}, {"kafka_offset": "x"}, {"kafka_topic": 1, "kafka_partition": None}])
def test_raw_event_json_holds_the_events_fields_and_its_kafka_position(spoofed):
    event = {**EVENT, "extra": {"nested": [1, None]}, **spoofed}
    before = dict(event)
    line = raw_event_json((event, "live.orders", 7, 123_456))
    assert b"\n" not in line  # one JSONEachRow line
    for key in (b'"ts"', b'"kafka_topic"', b'"kafka_partition"', b'"kafka_offset"'):
        assert line.count(key) == 1  # an event key named like a Kafka column is never copied
    obj = orjson.loads(line)
    assert (obj["kafka_topic"], obj["kafka_partition"], obj["kafka_offset"]) == ("live.orders", 7, 123_456)
    assert obj["merchant_id"] is None and "mcn_id" not in obj  # null or missing: ClickHouse's DEFAULT
    assert obj["category"] == EVENT["category"] and "extra" not in obj
    kafka = ("ts", "kafka_topic", "kafka_partition", "kafka_offset")
    assert {k: v for k, v in obj.items() if k not in kafka} == {k: v for k, v in EVENT.items() if k != "ts"}
    assert event == before  # the stream's dict is not modified


def test_fields_another_event_type_defines_are_not_stored():
    """Validation ignores a field the event's type does not define, whatever its value; storing it would
    make ClickHouse refuse the whole batch (a view's product_id "x" into a UInt64 column), forever."""
    view = {"event_id": "v", "type": "view", "ts": 1_700_000_000_001, "room_id": 9, "creator_id": 8,
            "user_id": 7, "product_id": "x", "order_id": 5, "amount_fen": -1, "quantity": "2"}  # fmt: skip
    obj = orjson.loads(raw_event_json((view, "live.views", 0, 1)))
    assert not {"product_id", "order_id", "amount_fen", "quantity"} & set(obj)
    row = dict(zip(RAW_EVENT_COLUMNS, raw_event_row((view, "live.views", 0, 1)), strict=True))
    assert (row["product_id"], row["order_id"], row["amount_fen"], row["quantity"]) == (0, "", 0, 0)


def test_raw_event_json_and_raw_event_row_agree_once_defaults_apply():
    """What ClickHouse stores from the JSON (null/missing -> column DEFAULT) is raw_event_row's tuple; the
    real server is checked in test_sink_clickhouse."""
    defaults = {"product_id": 0, "order_id": "", "amount_fen": 0, "quantity": 0, "merchant_id": 0,
                "mcn_id": 0, "category": "", "source": ""}  # fmt: skip
    view = {"event_id": "v", "type": "view", "ts": 1_700_000_000_001, "room_id": 9, "creator_id": 8,
            "user_id": 7, "product_id": "x", "source": None, "unknown": 1}  # fmt: skip
    for event in (EVENT, view):
        item = (event, "live.views", 1, 2)
        obj = orjson.loads(raw_event_json(item))
        seconds, millis = obj["ts"].split(".")
        stored = {c: defaults[c] if obj.get(c) is None else obj[c] for c in RAW_EVENT_COLUMNS}
        stored["ts"] = int(seconds) * 1000 + int(millis)
        assert tuple(stored.values()) == raw_event_row(item)


async def test_raw_events_sink_writes_json_rows_the_list_writer_decodes():
    writer = ListWriter()
    sinks = make_sinks(Settings(clickhouse_database="lc_test"), writer)
    items = [(EVENT, "live.orders", 2, 40), ({**EVENT, "event_id": "e2"}, "live.orders", 2, 41)]
    await sinks.raw_events.put([raw_event_json(item) for item in items])  # as the room stage puts them
    await sinks.flush()
    stored = writer.rows("lc_test.raw_events")
    assert [r["event_id"] for r in stored] == ["e1", "e2"]
    assert stored[0]["ts"] == "1700000000.123" and stored[1]["kafka_offset"] == 41
    assert set(stored[0]) <= set(RAW_EVENT_COLUMNS)  # keys that are not columns ignored, like ClickHouse
    assert writer.columns["lc_test.raw_events"] == RAW_EVENT_COLUMNS
    assert await sinks.close()


async def test_json_rows_keep_the_format_through_retries_and_the_instrumented_writer():
    flaky, metrics = FlakyWriter(failures=2, land_first=True), Metrics()
    sink = BatchingSink(
        InstrumentedWriter(flaky, metrics),
        T,
        ("n",),
        retry=FAST_RETRY,
        convert=orjson.dumps,
        fmt=JSON_EACH_ROW,
    )
    await sink.put([{"n": 1}, {"n": 2, "other": "x"}])
    await sink.flush()
    assert flaky.rows(T) == [{"n": 1}, {"n": 2}]  # landed once, then two retries with the same token dropped
    sample = metrics.registry.get_sample_value
    assert sample("livecommerce_sink_errors_total", {"table": "t"}) == 2
    assert sample("livecommerce_sink_rows_written_total", {"table": "t"}) == 2
    await sink.close()


async def test_list_writer_refuses_a_json_row_that_is_not_one_object_line():
    for bad in (b"[1]", b'{"n": 1}\n{"n": 2}', b"{"):
        with pytest.raises(ValueError):
            await ListWriter().write(T, ("n",), [bad], "t", fmt=JSON_EACH_ROW)


async def test_a_json_sink_without_convert_refuses_rows_that_are_not_bytes():
    """Such a row would fail in the writer and be retried forever: refused at `put` instead."""
    writer = ListWriter()
    sink = BatchingSink(writer, T, ("n",), fmt=JSON_EACH_ROW)
    with pytest.raises(TypeError, match="must be bytes"):
        await sink.put([b'{"n": 1}', {"n": 2}])
    await sink.put([b'{"n": 3}'])
    await sink.flush()
    assert writer.rows(T) == [{"n": 3}]  # nothing of the refused put was buffered
    await sink.close()


# -- rows the store refuses for good ------------------------------------------------------------------
class PoisonWriter(ListWriter):
    """Refuses, for good, any batch holding a row whose second field is "poison" (like ClickHouse
    refusing a block for one value); fails transiently the first `transient` attempts."""

    def __init__(self, transient: int = 0, error: Exception | None = None):
        super().__init__()
        self.transient = transient
        self.error = error or RowsRefused("Code: 321. VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE")
        self.attempts: list[tuple[str, int]] = []  # (token, rows)

    async def write(self, table, columns, rows, dedup_token, fmt=NATIVE):
        self.attempts.append((dedup_token, len(rows)))
        if self.transient > 0:
            self.transient -= 1
            raise ConnectionError("ClickHouse is down")
        if any(row[1] == "poison" for row in rows):
            raise self.error
        await super().write(table, columns, rows, dedup_token, fmt)


def poisoned(n: int, bad: set[int]) -> list[tuple]:
    return [(i, "poison" if i in bad else f"r{i}") for i in range(n)]


async def test_a_refused_row_is_handed_on_and_the_rest_of_its_batch_is_written():
    writer, refused = PoisonWriter(transient=2), []

    async def on_refused(r):
        refused.append(r)

    sink = BatchingSink(
        writer, T, ("a", "b"), policy=FlushPolicy(max_rows=64), retry=FAST_RETRY, on_refused=on_refused
    )
    batch = poisoned(50, bad={7, 31})
    await sink.put(batch[:20], {("live.orders", 3): 120})
    await sink.put(batch[20:], {("live.orders", 3): 121})
    await sink.flush()
    assert sorted(writer.rows(T)) == [r for r in batch if r[1] != "poison"]
    assert [r.row for r in refused] == [(7, "poison"), (31, "poison")]
    assert [dict(r.position) for r in refused] == [{("live.orders", 3): 120}, {("live.orders", 3): 121}]
    assert refused[0].code == 321 and "VALUE_IS_OUT_OF_RANGE" in refused[0].error
    assert (sink.stats.rows_written, sink.stats.rows_refused) == (48, 2)
    # Two transient failures retried as a whole first; a refusal is never retried as is.
    tokens = [token for token, _ in writer.attempts]
    assert tokens[0] == tokens[1] == tokens[2] and len(set(tokens[2:])) == len(tokens) - 2


async def test_split_tokens_are_derived_from_the_batch_token_so_a_replayed_half_is_not_stored_twice():
    writer = PoisonWriter()
    sink = BatchingSink(writer, T, ("a", "b"), policy=FlushPolicy(max_rows=8), on_refused=_ignore)
    await sink.put(poisoned(8, bad={0}))
    await sink.flush()
    first, *rest = [token for token, _ in writer.attempts]
    assert all(token.startswith(first + "/") for token in rest)
    assert {token for _, token, _ in writer.batches} <= {t for t, _ in writer.attempts}
    # A second write of a half that landed (same token) is dropped, as ClickHouse does.
    table, token, count = writer.batches[-1]
    await writer.write(table, ("a", "b"), [(99, "x")] * count, token)
    assert len(writer.rows(T)) == 7


async def test_without_on_refused_a_refused_row_stops_the_sink_instead_of_being_dropped():
    sink = BatchingSink(PoisonWriter(), T, ("a", "b"), policy=FlushPolicy(max_rows=4))
    await sink.put(poisoned(4, bad={2}))
    with pytest.raises(SinkFailed):
        await sink.flush()


async def test_a_failing_on_refused_stops_the_sink():
    async def failing(r):
        raise RuntimeError("dead-letter topic unreachable")

    sink = BatchingSink(PoisonWriter(), T, ("a", "b"), policy=FlushPolicy(max_rows=4), on_refused=failing)
    await sink.put(poisoned(4, bad={2}))
    with pytest.raises(SinkFailed):
        await sink.flush()


async def _ignore(r):
    return None


def _ch_error(cls, code, text):
    return cls(
        f"Received ClickHouse exception, code: {code}, server response: Code: {code}. {text}", code=code
    )


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (RowsRefused("x"), REFUSED),
        (DataError("Failed to write column 'gmv_fen': int too big to convert"), REFUSED),
        (_ch_error(DatabaseError, 6, "DB::Exception: Cannot parse input (CANNOT_PARSE_TEXT)"), REFUSED),
        (_ch_error(DatabaseError, 321, "Value out of range (VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE)"), REFUSED),
        (
            _ch_error(DatabaseError, 252, "Too many partitions for single INSERT block (more than 100)"),
            REFUSED,
        ),
        (_ch_error(DatabaseError, 252, "Too many parts (3001). Merges are processing slower"), TRANSIENT),
        (_ch_error(DatabaseError, 241, "Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)"), TRANSIENT),
        (_ch_error(DatabaseError, 242, "Table is in readonly mode (TABLE_IS_READ_ONLY)"), TRANSIENT),
        (_ch_error(OperationalError, 159, "Timeout exceeded"), TRANSIENT),
        (_ch_error(DatabaseError, 60, "Unknown table"), TRANSIENT),  # every row alike: wait for a fix
        (DatabaseError("HTTP 500, server response: Code: 202. Too many simultaneous queries"), TRANSIENT),
        (DatabaseError("HTTP 500, server response: Code: 27. Cannot parse input"), REFUSED),
        (OperationalError("Error HTTPConnectionPool: connection refused"), TRANSIENT),
        (ConnectionError("down"), TRANSIENT),
        (TimeoutError(), TRANSIENT),
        (ValueError("a bug"), TRANSIENT),
    ],
)
def test_failures_are_classified_by_clickhouse_error_code(exc, expected):
    assert classify_failure(exc) == expected


def test_refused_rows_are_a_metric():
    metrics = Metrics()
    metrics.sink_refused.labels(table="room_windows").inc()
    assert b'livecommerce_sink_rows_refused_total{table="room_windows"} 1.0' in metrics.exposition()
