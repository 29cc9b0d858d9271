"""Phones -> collector process -> Kafka -> worker -> ClickHouse, exact per window; and a kill -9 of the
collector mid-stream loses no event a client had been told was accepted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from harness import WorkerProcess, cli, isolated_env, outcome_totals, window_stats

from pipeline.collector.client import AsyncCollectorClient, Backoff
from pipeline.local.process import find_free_port
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from pipeline.traffic.generator import TrafficConfig, TrafficModel
from pipeline.traffic.phones import phone_uploads, send_uploads

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


class CollectorProcess:
    """One `livecommerce collector` subprocess, its output in `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{env['COLLECTOR_PORT']}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> CollectorProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "collector"], env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if json.loads(r.read())["kafka_ready"]:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"collector not ready within {timeout}s:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("collector did not stop within 30 s of SIGTERM") from None


@pytest.fixture
def env(settings_env, tmp_path):
    # Phones hold events for up to a few seconds (plus the generator's 3 s jitter): a lateness well above
    # that, so every event must count and the expected windows are all the distinct events.
    env = isolated_env(
        settings_env,
        tmp_path,
        WINDOW_SECONDS="10",
        ALLOWED_LATENESS_SECONDS="30",
        COLLECTOR_PORT=str(find_free_port()),
        COLLECTOR_LINGER_MS="20",
        COLLECTOR_RATE_PER_ADDRESS="0",  # every phone here is 127.0.0.1
    )
    asyncio.run(ensure_topics(Settings.from_env(env)))
    return env


@pytest.fixture
def collector(env, tmp_path):
    c = CollectorProcess(env, tmp_path / "collector.log")
    yield c
    c.stop()


def uploads(settings: Settings, records: int) -> list[list[dict]]:
    model = TrafficModel(
        TrafficConfig(seed=5, rooms=30, creators=10, users=800, batch_size=1, rate=100, invalid_share=0.0,
                      duplicate_share=0.03, start_ts_ms=int(time.time() * 1000) - 20 * 60_000),
        topics=settings.topics,
    )  # fmt: skip
    return list(phone_uploads(model, records, max_events=5, flush_after=300))


def new_stats() -> dict:
    return {"views": 0, "viewers": set(), "clicks": 0, "clickers": set(), "orders": 0, "buyers": set(),
            "gmv": 0, "refunds": 0, "refund_fen": 0}  # fmt: skip


def expected_stats(events: list[dict], window_ms: int) -> dict[str, list[tuple]]:
    """The two window views computed from the distinct events by the metric definitions."""
    rooms: dict[tuple, dict] = {}
    creators: dict[tuple, dict] = {}
    for ev in {e["event_id"]: e for e in events}.values():
        ws = datetime.fromtimestamp((ev["ts"] - ev["ts"] % window_ms) // 1000, UTC).replace(tzinfo=None)
        for table, key in (
            (rooms, (ws, ev["room_id"], ev["creator_id"])),
            (creators, (ws, ev["creator_id"])),
        ):
            s = table.setdefault(key, new_stats())
            t = ev["type"]
            if t == "view":
                s["views"] += 1
                s["viewers"].add(ev["user_id"])
            elif t == "click":
                s["clicks"] += 1
                s["clickers"].add(ev["user_id"])
            elif t == "order":
                s["orders"] += 1
                s["buyers"].add(ev["user_id"])
                s["gmv"] += ev["amount_fen"]
            else:
                s["refunds"] += 1
                s["refund_fen"] += ev["amount_fen"]

    def rows(table):
        return sorted(
            (*k, s["views"], len(s["viewers"]), s["clicks"], len(s["clickers"]), s["orders"],
             len(s["buyers"]), s["gmv"], s["refunds"], s["refund_fen"])
            for k, s in table.items()
        )  # fmt: skip

    return {"rooms": rows(rooms), "creators": rows(creators)}


def naive_utc(stats: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    def fix(ws):
        return ws.astimezone(UTC).replace(tzinfo=None) if ws.tzinfo else ws

    return {name: sorted((fix(r[0]), *r[1:]) for r in rows) for name, rows in stats.items()}


def test_phones_through_the_collector_give_exact_windows(env, collector, tmp_path):
    settings = Settings.from_env(env)
    cli(env, "migrate")
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        collector.start()
        sent = uploads(settings, 6000)
        assert len(sent) > 1000 and max(len(u) for u in sent) <= 5
        stats = asyncio.run(send_uploads(collector.url, sent, concurrency=16))
        assert (stats.failed_uploads, stats.rejected) == (0, 0)
        assert stats.accepted == sum(len(u) for u in sent)
        worker.wait_caught_up()
        totals = outcome_totals(worker.metrics())
    finally:
        worker.stop()
    events = [e for u in sent for e in u]
    assert sum(v for (_t, o), v in totals.items() if o == "late") == 0
    assert sum(v for (_t, o), v in totals.items() if o == "duplicate") == len(events) - len(
        {e["event_id"] for e in events}
    )
    got, want = naive_utc(window_stats(env)), expected_stats(events, settings.window_ms)
    assert len(want["rooms"]) > 50
    assert got == want


async def kafka_event_ids(settings: Settings, quiet_s: float = 3.0) -> list[str]:
    consumer = AIOKafkaConsumer(*settings.topics.inputs, bootstrap_servers=settings.kafka_bootstrap_servers,
                                auto_offset_reset="earliest")  # fmt: skip
    await consumer.start()
    ids: list[str] = []
    try:
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                last = time.monotonic()
                for record in batch:
                    ids += [e["event_id"] for e in orjson.loads(record.value)]
    finally:
        await consumer.stop()
    return ids


def test_kill_9_of_the_collector_loses_no_acknowledged_event(env, collector):
    settings = Settings.from_env(env)
    sent = uploads(settings, 20_000)
    acknowledged: set[str] = set()
    failed: list[list[dict]] = []

    async def stream(url: str, batch: list[list[dict]], kill_after: float | None) -> None:
        attempts = 1 if kill_after is not None else 8
        client = AsyncCollectorClient(url, backoff=Backoff(base_s=0.2, attempts=attempts), timeout_s=10)

        async def one(events):
            try:
                result = await client.send(events)
            except (aiohttp.ClientError, TimeoutError):  # the connection died with the collector
                failed.append(events)
                return
            assert result.rejected == 0
            acknowledged.update(e["event_id"] for e in events)

        killer = None
        if kill_after is not None:
            killer = asyncio.get_running_loop().run_in_executor(None, _kill_later, kill_after)
        slots = asyncio.Semaphore(32)

        async def limited(events):
            async with slots:
                await one(events)

        await asyncio.gather(*(limited(u) for u in batch))
        if killer is not None:
            await killer
        await client.close()

    def _kill_later(delay: float) -> None:
        time.sleep(delay)
        collector.kill()

    collector.start()
    asyncio.run(stream(collector.url, sent, kill_after=1.5))
    assert acknowledged, "the kill came before any upload was answered"
    assert failed, "the kill came after every upload was answered: nothing was in flight"
    in_kafka = asyncio.run(kafka_event_ids(settings))
    assert acknowledged <= set(in_kafka), f"{len(acknowledged - set(in_kafka))} acknowledged events lost"

    # The phones retry what was not acknowledged (same ids) against a restarted collector: nothing lost.
    collector.start()
    retry, failed[:] = list(failed), []
    asyncio.run(stream(collector.url, retry, kill_after=None))
    assert not failed
    assert {e["event_id"] for u in sent for e in u} <= set(asyncio.run(kafka_event_ids(settings)))
