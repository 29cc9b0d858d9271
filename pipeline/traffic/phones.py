"""Simulated phones: the generator's traffic regrouped the way real clients upload it, through the
collector (`livecommerce phones`, and what `livecommerce demo` runs).

Each viewer's phone buffers its own events and uploads a few at a time (1..`max_events`, or when its
oldest event is `flush_after` records old); the generator's retries become re-uploads of the same
event (same event_id). `phone_uploads` is pure and deterministic for a model's seed; `send_uploads`
sends with many concurrent clients sharing one connection pool.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from pipeline.settings import Settings
from pipeline.traffic.generator import TrafficConfig, TrafficModel


def phone_uploads(
    model: TrafficModel, records: int | None, max_events: int = 5, flush_after: int = 2000, seed: int = 0
) -> Iterator[list[dict[str, Any]]]:
    """Uploads (lists of events) of the phones of `model`'s users; needs a model with batch_size 1."""
    if model.config.batch_size != 1:
        raise ValueError("phone_uploads needs a TrafficModel with batch_size=1 (phones batch themselves)")
    rng = random.Random(seed)
    buffers: dict[int, list[dict[str, Any]]] = {}
    targets: dict[int, int] = {}
    started: deque[tuple[int, int, list]] = deque()  # (record number, user, buffer)
    n = 0
    for msg in model.messages(records):
        n += 1
        if msg.invalid:  # bytes no phone SDK would send; the direct-to-Kafka generator covers them
            continue
        for ev in msg.events:
            user = ev["user_id"]
            buf = buffers.get(user)
            if buf is None:
                buf = buffers[user] = []
                targets[user] = rng.randint(1, max_events)
                started.append((n, user, buf))
            buf.append(ev)
            if len(buf) >= targets[user]:
                del buffers[user]
                yield buf
        while started and started[0][0] <= n - flush_after:
            _, user, buf = started.popleft()
            if buffers.get(user) is buf:
                del buffers[user]
                yield buf
    for _, user, buf in started:
        if buffers.get(user) is buf:
            yield buf


@dataclass
class PhoneStats:
    uploads: int = 0
    events: int = 0
    accepted: int = 0
    rejected: int = 0
    failed_uploads: int = 0
    retries: int = 0


async def send_uploads(
    url: str,
    uploads: Iterable[list[dict[str, Any]]],
    *,
    app_key: str | None = None,
    concurrency: int = 64,
    rate: float = 0,
    stop: asyncio.Event | None = None,
    stats: PhoneStats | None = None,
) -> PhoneStats:
    """Send every upload (at most `concurrency` at once; `rate` events/s when > 0) until `stop`."""
    import aiohttp

    from pipeline.collector.client import AsyncCollectorClient, UploadRefused

    stats = stats or PhoneStats()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = AsyncCollectorClient(url, app_key=app_key, session=session)
        slots = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task] = set()

        async def one(events: list[dict[str, Any]]) -> None:
            try:
                result = await client.send(events)
                stats.accepted += result.accepted
                stats.rejected += result.rejected
                stats.retries += result.attempts - 1
            except (UploadRefused, aiohttp.ClientError, TimeoutError):
                stats.failed_uploads += 1
            finally:
                slots.release()

        started = time.monotonic()
        for events in uploads:
            if stop is not None and stop.is_set():
                break
            await slots.acquire()
            stats.uploads += 1
            stats.events += len(events)
            if rate > 0:
                ahead = stats.events / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            task = asyncio.ensure_future(one(events))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
    return stats


def register(sub: Any) -> None:
    p = sub.add_parser(
        "phones",
        help="simulated phones uploading generated traffic through the collector (HTTP)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", help="collector base URL (default http://COLLECTOR_HOST:COLLECTOR_PORT)")
    p.add_argument("--app-key", help="X-App-Key to send (default: the first of COLLECTOR_APP_KEYS, if any)")
    p.add_argument("--rate", type=float, default=2000, help="events per second (default 2000)")
    p.add_argument("--events", type=int, default=None, help="stop after this many records (default: never)")
    p.add_argument("--rooms", type=int, default=500)
    p.add_argument("--creators", type=int, default=150)
    p.add_argument("--users", type=int, default=5_000, help="viewers, each with one phone (default 5000)")
    p.add_argument("--max-events", type=int, default=5, help="most events per upload (default 5)")
    p.add_argument("--flush-seconds", type=float, default=5.0, help="most a phone holds an event (default 5)")
    p.add_argument("--concurrency", type=int, default=64, help="uploads in flight (default 64)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--progress-interval", type=float, default=10.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or f"http://{settings.collector_host}:{settings.collector_port}"
    key = args.app_key or (settings.collector_app_keys[0][1] if settings.collector_app_keys else None)
    config = TrafficConfig(seed=args.seed, rooms=args.rooms, creators=args.creators, users=args.users,
                           batch_size=1, rate=args.rate, invalid_share=0.0)  # fmt: skip
    model = TrafficModel(config, topics=settings.topics, clock=lambda: time.time_ns() // 1_000_000)
    stats = asyncio.run(_run(args, url, key, model))
    print(
        f"phones summary: {stats.uploads:,} uploads, {stats.events:,} events: {stats.accepted:,} accepted, "
        f"{stats.rejected:,} rejected, {stats.failed_uploads:,} uploads failed, {stats.retries:,} retries"
    )
    return 0 if stats.failed_uploads == 0 else 1


async def _run(args: argparse.Namespace, url: str, key: str | None, model: TrafficModel) -> PhoneStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stats = PhoneStats()

    async def progress() -> None:
        while True:
            await asyncio.sleep(args.progress_interval)
            print(f"phones: {stats.events:,} events sent, {stats.accepted:,} accepted", file=sys.stderr,
                  flush=True)  # fmt: skip

    reporter = asyncio.ensure_future(progress())
    try:
        flush_after = max(1, int(args.flush_seconds * args.rate))  # in records: the model's clock
        uploads = phone_uploads(model, args.events, args.max_events, flush_after, seed=args.seed)
        return await send_uploads(url, uploads, app_key=key, concurrency=args.concurrency, rate=args.rate,
                                  stop=stop, stats=stats)  # fmt: skip
    finally:
        reporter.cancel()
