"""Running the real pipeline from tests: worker processes, isolated names, produce, wait, read back.

Every pipeline a test builds gets its own consumer group, topics and ClickHouse database, so tests
sharing the session's Kafka and ClickHouse never see each other's data.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

import clickhouse_connect
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.kafka_options import client_options
from pipeline.local.process import find_free_port
from pipeline.settings import Settings
from pipeline.topics import contributions_topic
from pipeline.traffic.generator import TrafficConfig, TrafficModel

STATS_COLUMNS = "views, viewers, clicks, clickers, orders, buyers, gmv_fen, refunds, refund_fen"


def isolated_env(base: dict[str, str], tmp_path: Path, **overrides: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    env = {
        **base,
        "APP_ID": f"t{tag}",
        "TOPIC_VIEWS": f"t{tag}.views",
        "TOPIC_CLICKS": f"t{tag}.clicks",
        "TOPIC_ORDERS": f"t{tag}.orders",
        "TOPIC_DEADLETTER": f"t{tag}.deadletter",
        "TOPIC_LATE": f"t{tag}.late",
        "TOPIC_MILESTONES": f"t{tag}.milestones",
        "CLICKHOUSE_DATABASE": f"t{tag}",
        "WEB_PORT": str(find_free_port()),
        "TOPIC_PARTITIONS": "3",
        "CONSUMER_SESSION_TIMEOUT_SECONDS": "6",
        "LIVECOMMERCE_LOCAL_DIR": str(tmp_path / f"local-{tag}"),
    }
    env.update(overrides)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"livecommerce {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


class WorkerProcess:
    """One `livecommerce worker` subprocess; its output goes to `log_path`."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.port = int(env["WEB_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", "worker"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}:\n{self.log_tail()}"
            try:
                if self.health()["consumer"]["assigned_partitions"] > 0:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker did not get partitions within {timeout}s:\n{self.log_tail()}")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
            return response.read()

    def health(self) -> dict:
        return json.loads(self.get("/health"))

    def metrics(self) -> str:
        return self.get("/metrics").decode()

    def kill(self) -> None:
        """kill -9: no flush, no commit, no goodbye to the consumer group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not stop within {timeout}s on SIGTERM") from None

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_caught_up(self, timeout: float = 120, settle: float = 2.5) -> None:
        """Until the consumer group has committed every input and repartition partition up to its end,
        in two readings `settle` s apart. Read from Kafka itself: a worker commits only after its
        ClickHouse writes, and its own lag gauge can be unknown or stale around a rebalance."""
        settings = Settings.from_env(self.env)
        try:
            asyncio.run(asyncio.wait_for(_wait_group_committed(settings, settle), timeout))
        except TimeoutError:
            lagging = asyncio.run(group_lag(settings))
            behind = {tp: lag for tp, lag in lagging.items() if lag}
            raise AssertionError(
                f"worker did not catch up within {timeout}s; behind: {behind}\n{self.log_tail()}"
            ) from None


async def group_lag(settings: Settings) -> dict[str, int]:
    """Per partition of the input and repartition topics: end offset minus the offset the consumer
    group committed (0 when it committed none), as the brokers see it."""
    async with _GroupOffsets(settings) as offsets:
        return await offsets.lag()


async def _wait_group_committed(settings: Settings, settle: float) -> None:
    async with _GroupOffsets(settings) as offsets:
        quiet_since = None
        while True:
            lag = await offsets.lag()
            if any(lag.values()):
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return
            await asyncio.sleep(0.5)


class _GroupOffsets:
    """One admin client (the group's committed offsets) and one consumer (end offsets), kept open
    while polling."""

    def __init__(self, settings: Settings):
        self.settings = settings
        topics = [*settings.topics.inputs, contributions_topic(settings)]
        self.partitions = [TopicPartition(t, p) for t in topics for p in range(settings.topic_partitions)]
        options = {"bootstrap_servers": settings.kafka_bootstrap_servers, **client_options(settings)}
        self.admin = AIOKafkaAdminClient(**options)
        self.consumer = AIOKafkaConsumer(enable_auto_commit=False, **options)

    async def __aenter__(self) -> _GroupOffsets:
        await self.admin.start()
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()
        await self.admin.close()

    async def lag(self) -> dict[str, int]:
        committed = await self.admin.list_consumer_group_offsets(self.settings.app_id)
        ends = await self.consumer.end_offsets(self.partitions)
        return {
            f"{tp.topic}/{tp.partition}": ends[tp] - (max(0, committed[tp].offset) if tp in committed else 0)
            for tp in self.partitions
        }


def outcome_totals(metrics_text: str) -> dict[tuple[str, str], float]:
    rows = re.findall(
        r'^livecommerce_events_total\{outcome="(\w+)",topic="([^"]+)"\} (\S+)$', metrics_text, re.M
    )
    return {(topic, outcome): float(value) for outcome, topic, value in rows}


async def produce(bootstrap: str, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, key=key, value=value) for topic, key, value in messages]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def generated_traffic(settings: Settings, start_ts: int, chunks: int) -> list[list[tuple[str, bytes, bytes]]]:
    """The same generated traffic (batches, retries, disorder, invalid messages) for every run that passes
    the same `start_ts`, cut into `chunks` sent one after the other."""
    model = TrafficModel(
        TrafficConfig(seed=11, rooms=40, creators=12, users=2_000, batch_size=20, linger_ms=500, rate=100,
                      start_ts_ms=start_ts, duplicate_share=0.02, invalid_share=0.01),
        topics=settings.topics,
    )  # fmt: skip
    messages = [(m.topic, m.key, m.value) for m in model.messages(8_000)]
    size = len(messages) // chunks + 1
    return [messages[i : i + size] for i in range(0, len(messages), size)]


def window_stats(env: dict[str, str]) -> dict[str, list[tuple]]:
    """Every row of the two public window views (without updated_at), sorted."""
    settings = Settings.from_env(env)
    client = clickhouse_connect.get_client(
        host="127.0.0.1", port=int(settings.clickhouse_url.rsplit(":", 1)[1])
    )
    db = settings.clickhouse_database
    try:
        rooms = client.query(
            f"SELECT window_start, room_id, creator_id, {STATS_COLUMNS} "
            f"FROM {db}.room_window_stats ORDER BY 1, 2"
        ).result_rows
        creators = client.query(
            f"SELECT window_start, creator_id, {STATS_COLUMNS} FROM {db}.creator_window_stats ORDER BY 1, 2"
        ).result_rows
        return {"rooms": [tuple(r) for r in rooms], "creators": [tuple(r) for r in creators]}
    finally:
        client.close()
