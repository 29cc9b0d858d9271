"""ClickHouseWriter end to end on the real local engine, including an outage (marker `clickhouse`).

The outage is a TCP proxy in front of the server that the test stops and restarts: the writer sees
refused connections, retries with backoff, and every row lands exactly once when the proxy returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

import pytest

from pipeline.rows import RAW_EVENT_COLUMNS, raw_event_json, raw_event_row
from pipeline.settings import Settings
from pipeline.sink import JSON_EACH_ROW, NATIVE, FlushPolicy, RetryPolicy
from pipeline.sink.clickhouse_writer import ClickHouseWriter
from pipeline.sink.tables import make_sinks

pytestmark = pytest.mark.clickhouse
T0 = (int(time.time() * 1000) // 60_000 - 30) * 60_000


class Proxy:
    """Forwards 127.0.0.1:port to the server; `stop()` refuses and cuts connections, `start()` resumes."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.close()
        await self.server.wait_closed()

    async def _handle(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers.update((writer, up_writer))

        async def pipe(src, dst):
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.difference_update((writer, up_writer))


def room_row(minute: int, room: int, step: int) -> tuple:
    """A room window as the stream writes it: absolute values that grow with `step`."""
    return (T0 + minute * 60_000, room, 1, step, step, 0, 0, 0, 0, 100 * step, 0, 0)


def raw(i: int) -> bytes:
    ev = {"event_id": f"e{i}", "type": "view", "ts": T0 + i, "room_id": 1 + i % 4, "creator_id": 1,
          "user_id": 1000 + i % 50, "source": "live_feed"}  # fmt: skip
    return raw_event_json((ev, "live.views", i % 3, i))


async def test_writer_end_to_end(ch):
    settings, client = ch
    db = settings.clickhouse_database
    writer = ClickHouseWriter.from_settings(settings)
    sinks = make_sinks(settings, writer)
    await sinks.raw_events.put([raw(i) for i in range(500)], position={("live.views", 0): 499})
    for step in (1, 3, 2):  # the largest value wins whatever the order
        await sinks.room_windows.put([room_row(0, 7, step), room_row(1, 7, step)])
        await sinks.room_windows.flush()
    await sinks.creator_windows.put([(T0, 1, 1, 9, 9, 0, 0, 0, 0, 0, 0, 0)])
    await sinks.flush()
    assert client.command(f"SELECT count() FROM {db}.raw_events") == 500
    assert client.command(f"SELECT count(), sum(gmv_fen) FROM {db}.room_window_stats") == ["2", "600"]
    assert client.command(f"SELECT sum(views) FROM {db}.creator_window_stats") == 9
    assert writer.reachable is True and writer.last_insert_seconds is not None
    assert await sinks.close(timeout=5)
    await writer.close()


async def test_outage_retries_with_backoff_and_loses_or_doubles_nothing(ch, clickhouse_server):
    settings, client = ch
    db = settings.clickhouse_database
    proxy = Proxy(int(clickhouse_server.url.rsplit(":", 1)[1]))
    await proxy.start()
    proxied = Settings(clickhouse_url=f"http://127.0.0.1:{proxy.port}", clickhouse_database=db)
    writer = ClickHouseWriter.from_settings(proxied)
    sinks = make_sinks(
        proxied,
        writer,
        raw_policy=FlushPolicy(max_rows=100, max_seconds=0.05, max_buffered_rows=300),
        window_policy=FlushPolicy(max_rows=100, max_seconds=0.05, max_buffered_rows=300),
    )
    for sink in sinks.all():
        sink.retry = RetryPolicy(initial_seconds=0.02, multiplier=2.0, max_seconds=0.2)
    await sinks.raw_events.put([raw(i) for i in range(150)])
    await sinks.flush()

    await proxy.stop()  # ClickHouse "down"
    await sinks.raw_events.put([raw(i) for i in range(150, 400)])
    await sinks.room_windows.put([room_row(0, 9, v) for v in range(1, 6)])
    await sinks.raw_events.put([raw(i) for i in range(400, 450)])  # 300 buffered: the bound
    blocked = asyncio.create_task(sinks.raw_events.put([raw(i) for i in range(450, 500)]))
    await asyncio.sleep(0.8)
    stats = sinks.raw_events.stats
    assert stats.retries >= 3 and stats.reachable is False and writer.reachable is False
    assert not blocked.done() and stats.backpressure  # the consumer is paused, not buffering forever
    assert client.command(f"SELECT count() FROM {db}.raw_events") == 150

    await proxy.start()  # back
    await asyncio.wait_for(blocked, 10)
    await asyncio.wait_for(sinks.flush(), 10)
    assert stats.reachable is True and not stats.backpressure and stats.rows_written == 500
    assert client.command(f"SELECT count(), uniqExact(event_id) FROM {db}.raw_events") == ["500", "500"]
    assert client.command(f"SELECT count(), max(views) FROM {db}.room_window_stats") == ["1", "5"]
    assert await sinks.close(timeout=5)
    await writer.close()
    await proxy.stop()


def varied(i: int) -> tuple:
    """Events of every type with optional fields present, null or missing, unknown keys (some named like
    columns, some defined only by another type, with values the column refuses) and text that needs
    escaping; ts ending in .000, .005, .999, ..."""
    kind = ("view", "click", "order", "refund")[i % 4]
    ev = {"event_id": f"v{i:03d}", "type": kind, "ts": T0 + 1000 * i + (0, 5, 999, 10, 123)[i % 5],
          "room_id": 1 + i % 3, "creator_id": 2**63 - 1 - i, "user_id": 10 + i}  # fmt: skip
    if kind in ("click", "order"):
        ev["product_id"] = 500 + i
    if kind in ("order", "refund"):
        ev.update(order_id=f"o-{i}", amount_fen=100 * i + 1)
    if kind == "order":
        ev["quantity"] = 1 + i % 3
    if i % 2:
        ev.update(merchant_id=None, mcn_id=9 + i, category='女装 "A" \\ \n\t', source=None)
    else:
        ev.update(merchant_id=7, category="", source="live_feed", extra={"x": [1, None]}, inserted_at="x")
    if i % 5 == 0:
        ev["kafka_offset"] = "not ours"  # unknown to the contract: the stream's offset is stored
    if kind == "view" and i % 8 == 0:
        ev.update(product_id="x", amount_fen=-5)  # fields a view does not define: ignored, not stored
    return (ev, ("live.views", "live.clicks", "live.orders", "live.orders")[i % 4], i % 3, 1000 + i)


async def test_raw_events_stored_from_json_rows_equal_raw_event_row(ch):
    settings, client = ch
    db = settings.clickhouse_database
    writer = ClickHouseWriter.from_settings(settings)
    sinks = make_sinks(settings, writer)
    items = [varied(i) for i in range(40)]
    await sinks.raw_events.put([raw_event_json(item) for item in items])  # as the room stage puts them
    await sinks.flush()
    columns = ", ".join("toUnixTimestamp64Milli(ts)" if c == "ts" else c for c in RAW_EVENT_COLUMNS)
    stored = client.query(f"SELECT {columns} FROM {db}.raw_events ORDER BY event_id").result_rows
    assert stored == sorted(raw_event_row(item) for item in items)  # ts to the millisecond, defaults
    inserted = client.command(f"SELECT countIf(inserted_at > now64(3) - 300) FROM {db}.raw_events")
    assert inserted == 40  # the unknown 'inserted_at' key was ignored: the column DEFAULT filled it
    assert await sinks.close(timeout=5)
    await writer.close()


async def test_json_ts_round_trips_to_the_millisecond_over_the_whole_range(ch):
    """raw_events' TTL drops old rows at insert, so the range is checked on a table without one."""
    settings, client = ch
    table = f"{settings.clickhouse_database}.ts_check"
    client.command(f"CREATE TABLE {table} (event_id String, ts DateTime64(3, 'UTC')) ENGINE = Log")
    stamps = [0, 5, 999, 86_400_123, 99_999_999_999, 100_000_000_000, 1_700_000_000_005, 9_999_999_999_999]
    writer = ClickHouseWriter.from_settings(settings)
    view = {"type": "view", "room_id": 1}
    rows = [raw_event_json(({**view, "event_id": str(ts), "ts": ts}, "t", 0, 0)) for ts in stamps]
    await writer.write(table, ("event_id", "ts"), rows, "ts-range", fmt=JSON_EACH_ROW)
    stored = client.query(f"SELECT toInt64(event_id), toUnixTimestamp64Milli(ts) FROM {table}").result_rows
    assert sorted(stored) == [(ts, ts) for ts in stamps]
    await writer.close()


class LandsThenFails:
    """The outcome-unknown case on the real server: the first attempt of a batch is inserted, then the
    response is "lost" (an error is raised); the sink retries the same rows with the same token."""

    def __init__(self, writer: ClickHouseWriter):
        self.writer, self.attempts = writer, []

    async def write(self, table, columns, rows, dedup_token, fmt=NATIVE):
        self.attempts.append(dedup_token)
        await self.writer.write(table, columns, rows, dedup_token, fmt)
        if self.attempts.count(dedup_token) == 1:
            raise ConnectionError("response lost")


async def test_retried_json_batch_with_the_same_token_is_not_stored_twice(ch):
    settings, client = ch
    db = settings.clickhouse_database
    client.command(f"SYSTEM STOP MERGES {db}.raw_events")  # a merge would also collapse the duplicates
    writer = ClickHouseWriter.from_settings(settings)
    landing = LandsThenFails(writer)
    sinks = make_sinks(settings, landing, raw_policy=FlushPolicy(max_rows=100, max_seconds=0.05))
    sinks.raw_events.retry = RetryPolicy(initial_seconds=0.01, multiplier=2.0, max_seconds=0.05)
    await sinks.raw_events.put([raw(i) for i in range(250)])  # three batches, each sent twice
    await sinks.flush()
    assert len(landing.attempts) == 6 and len(set(landing.attempts)) == 3
    assert client.command(f"SELECT count(), uniqExact(event_id) FROM {db}.raw_events") == ["250", "250"]
    assert await sinks.close(timeout=5)
    await writer.close()


async def test_rows_clickhouse_refuses_for_good_are_handed_on_and_the_rest_is_written(ch):
    """The poison rows of issue 13 on the real engine: an overflowing Int64 sum and a window_start past
    DateTime's range (refused by the client, clickhouse-connect's DataError), and a raw event whose ts
    ClickHouse cannot parse (refused by the server). Each batch is written without them; nothing is
    retried forever. (A JSON quantity over UInt32 is NOT refused: ClickHouse stores it wrapped, which
    is why the event contract caps quantity below 2^32.)"""
    settings, client = ch
    db = settings.clickhouse_database
    writer = ClickHouseWriter.from_settings(settings)
    refused = []

    async def on_refused(r):
        refused.append(r)

    sinks = make_sinks(settings, writer, on_refused=on_refused)
    overflow = (T0, 8, 1, 0, 0, 0, 0, 2, 1, 2 * (2**63 - 1), 0, 0)
    far_future = (2**32 * 1000, 9, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)
    good = [room_row(0, room, 1) for room in range(10, 30)]
    await sinks.room_windows.put(
        [*good[:7], overflow, *good[7:15], far_future, *good[15:]], {("live.orders", 2): 5}
    )
    bad_ts = raw(99).replace(b'"ts":"', b'"ts":"x')
    await sinks.raw_events.put([raw(i) for i in range(30)] + [bad_ts])
    await sinks.flush()
    assert client.command(f"SELECT count() FROM {db}.room_windows") == 20
    assert client.command(f"SELECT count() FROM {db}.raw_events") == 30
    refused_events = [r for r in refused if r.table.endswith("raw_events")]
    assert [r.row for r in refused_events] == [bad_ts]
    assert refused_events[0].code is not None and f"Code: {refused_events[0].code}" in refused_events[0].error
    window_refusals = [r for r in refused if r.table.endswith("room_windows")]
    assert sorted(r.row[2] for r in window_refusals) == [8, 9]
    assert all(dict(r.position) == {("live.orders", 2): 5} for r in window_refusals)
    assert sinks.room_windows.stats.rows_refused == 2 and sinks.raw_events.stats.rows_refused == 1
    assert await sinks.close(timeout=5)
    await writer.close()


async def test_a_block_over_the_partition_limit_is_split_until_it_lands(ch):
    settings, client = ch
    db = settings.clickhouse_database
    writer = ClickHouseWriter.from_settings(settings)
    sinks = make_sinks(settings, writer, on_refused=None)  # no row may be refused: the sink would stop
    # The server's default max_partitions_per_insert_block is 100: 150 days is 150 partitions.
    days = [(T0 // 86_400_000 - d) * 86_400_000 for d in range(150)]
    await sinks.room_windows.put([(day, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0) for day in days])
    await sinks.flush()
    assert client.command(f"SELECT count() FROM {db}.room_windows") == 150
    assert sinks.room_windows.stats.errors >= 1  # the whole block was refused first
    assert await sinks.close(timeout=5)
    await writer.close()
