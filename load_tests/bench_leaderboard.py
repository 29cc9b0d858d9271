"""Leaderboard latency benchmark: top-50 creators over a campaign of 100,000 creators and 10M window rows.

Run: `.venv/bin/python -m load_tests.bench_leaderboard [--requests 200] [--rows 10000000]`.
Starts its own ClickHouse (chdb-core, free ports, temp dir), loads the rows with INSERT ... SELECT from
numbers() (10 parts, a day of 1,440 minute windows, skewed GMV), hourly uniques for the same keys, rolls
the leaderboard snapshot as the worker's timer would, then times `ServingApi.leaderboard` end to end
(4 queries, including viewers/buyers from uniqExact states) and prints p50 / p99 / max in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.local.clickhouse import LocalClickHouse
from pipeline.local.process import find_free_port
from pipeline.serving import jobs
from pipeline.serving.api import ServingApi
from pipeline.serving.registry import Campaign, sync_campaigns
from pipeline.settings import Settings

CREATORS = 100_000
WINDOWS = 1_440
# Window n % 1440 of creator ((n // 1440) + 69 * window) % CREATORS + 1: every (window, creator) once.
_ROWS = """
SELECT start + (n % 1440) * 60 AS ws, ws + 60 AS we,
  (intDiv(n, 1440) + 69 * (n % 1440)) % {creators} + 1 AS cid,
  cityHash64(n, 1) % 2000 + 10 AS v, intDiv(v, 2) AS vu, cityHash64(n, 2) % 40 AS o, intDiv(o * 9, 10) AS b,
  toInt64(o * (cityHash64(n, 3) % 20000 + 100) * intDiv(100000, cid + 50)) AS g
FROM (SELECT number + {lo} AS n, toDateTime({start}, 'UTC') AS start FROM numbers({count}))"""


def load(client, db: str, start_s: int, rows: int) -> None:
    chunk = rows // 10
    for lo in range(0, rows, chunk):
        select = _ROWS.format(creators=CREATORS, lo=lo, start=start_s, count=min(chunk, rows - lo))
        client.command(
            f"INSERT INTO {db}.creator_windows (window_start, window_end, creator_id, views, viewers, orders,"
            f" buyers, gmv_fen) SELECT ws, we, cid, v, vu, o, b, g FROM ({select})"
        )
        client.command(
            f"INSERT INTO {db}.room_windows (window_start, window_end, room_id, creator_id, views, viewers,"
            f" orders, buyers, gmv_fen) SELECT ws, we, cid * 10, cid, v, vu, o, b, g FROM ({select})"
        )
    every_row = _ROWS.format(creators=CREATORS, lo=0, start=start_s, count=rows)
    client.command(
        f"INSERT INTO {db}.room_hourly_uniques SELECT toStartOfHour(ws) AS hour, cid * 10, cid,"
        " uniqExactState(toUInt64(cityHash64(n2, 5) % 50000000)), uniqExactState(toUInt64(0)),"
        " uniqExactState(toUInt64(cityHash64(n2, 6) % 50000000))"
        f" FROM (SELECT *, cityHash64(ws, cid) AS n2 FROM ({every_row}))"
        " GROUP BY hour, cid"
    )


async def measure(settings: Settings, requests: int) -> list[float]:
    api = ServingApi(settings)
    await api.handle(api.leaderboard("bench", {"by": "creator", "limit": "50"}))  # warm-up: connect, cache
    timings = []
    for _ in range(requests):
        t = time.perf_counter()
        status, body = await api.handle(api.leaderboard("bench", {"by": "creator", "limit": "50"}))
        timings.append((time.perf_counter() - t) * 1000)
        assert status == 200 and len(body["rows"]) == 50, body
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-leaderboard-") as tmp:
        server = LocalClickHouse(Path(tmp), http_port=find_free_port(), tcp_port=find_free_port())
        server.start()
        try:
            settings = Settings(clickhouse_url=server.url, clickhouse_database="bench")
            client = make_client(settings, Profile.MIGRATE)
            migrations.migrate(client, "bench", 30)
            now_s = int(time.time())
            start_s = (now_s + 8 * 3600) // 86_400 * 86_400 - 8 * 3600 - 86_400  # yesterday, Shanghai
            sync_campaigns(client, settings, [Campaign.from_epoch("bench", start_s, start_s + 2 * 86_400)])
            t = time.perf_counter()
            load(client, "bench", start_s, args.rows)
            print(f"loaded {args.rows:,} creator and room window rows in {time.perf_counter() - t:.1f} s")
            t = time.perf_counter()
            jobs.roll_all(settings)
            print(f"rolled the snapshots in {time.perf_counter() - t:.1f} s")
            timings = asyncio.run(measure(settings, args.requests))
        finally:
            server.stop()
    timings.sort()
    p99 = timings[max(0, int(len(timings) * 0.99) - 1)]
    print(f"leaderboard top-50 creators, {len(timings)} requests: p50 {statistics.median(timings):.1f} ms, "
          f"p99 {p99:.1f} ms, max {timings[-1]:.1f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
