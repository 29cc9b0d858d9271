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

from pipeline.settings import Settings
from pipeline.sink import FlushPolicy, RetryPolicy
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


def raw(i: int) -> tuple:
    ev = {"event_id": f"e{i}", "type": "view", "ts": T0 + i, "room_id": 1 + i % 4, "creator_id": 1,
          "user_id": 1000 + i % 50, "source": "live_feed"}  # fmt: skip
    return (ev, "live.views", i % 3, i)


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
    assert sinks.raw_events.written_position == {("live.views", 0): 499}
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
