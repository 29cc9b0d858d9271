"""`livecommerce generate` against the session's real Kafka broker: what lands in the topics is exactly
what the pure generator produces for the same seed and options, and the command reports as it goes."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from contract_checks import check_message

from pipeline.local.process import find_free_port
from pipeline.settings import Topics
from pipeline.traffic.generator import TrafficConfig, TrafficModel

START_TS = 1_731_254_400_000  # 2024-11-11T00:00:00+08:00, 双11


def unique_topics() -> tuple[Topics, dict[str, str]]:
    run = uuid.uuid4().hex[:10]
    topics = Topics(views=f"gen-{run}.views", clicks=f"gen-{run}.clicks", orders=f"gen-{run}.orders")
    env = {"TOPIC_VIEWS": topics.views, "TOPIC_CLICKS": topics.clicks, "TOPIC_ORDERS": topics.orders}
    return topics, env


async def consume(
    bootstrap: str, topics: Topics, messages: int, timeout: float = 60
) -> list[tuple[Any, ...]]:
    """Read (topic, key, value) of all `messages` from the input topics, in partition order."""
    consumer = AIOKafkaConsumer(*topics.inputs, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    got: list[tuple[Any, ...]] = []
    try:
        deadline = time.monotonic() + timeout
        while len(got) < messages and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                got += [(r.topic, r.key, r.value) for r in records]
        await asyncio.sleep(0.5)  # anything beyond `messages` would be a bug: give it a chance to show
        for records in (await consumer.getmany(timeout_ms=500)).values():
            got += [(r.topic, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return got


def by_topic_and_key(triples: list[tuple[Any, ...]]) -> dict[tuple[str, bytes], list[bytes]]:
    """Values per (topic, key) in order: Kafka keeps the order of one key, not across keys."""
    grouped: dict[tuple[str, bytes], list[bytes]] = collections.defaultdict(list)
    for topic, key, value in triples:
        grouped[(topic, key)].append(value)
    return dict(grouped)


@pytest.mark.kafka
async def test_generate_sends_exactly_the_pure_generators_messages(kafka_broker: Any, run_cli: Any) -> None:
    topics, env = unique_topics()
    args = ["--events", "2000", "--seed", "11", "--start-ts", str(START_TS), "--rate", "4000"]
    proc = run_cli(
        "generate",
        *args,
        "--progress-interval",
        "0.1",
        env={"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, **env},
    )
    assert proc.returncode == 0, proc.stderr
    assert "generate summary: done" in proc.stdout and "records    2,000" in proc.stdout
    assert "progress: sent" in proc.stderr  # not a TTY: one line per report

    model = TrafficModel(TrafficConfig(seed=11, start_ts_ms=START_TS, rate=4000), topics=topics)
    expected = [(m.topic, m.key, m.value) for m in model.messages(2000)]
    assert f"in {len(expected):,} messages" in proc.stdout
    got = await consume(kafka_broker.bootstrap, topics, len(expected))
    assert len(got) == len(expected)
    assert by_topic_and_key(got) == by_topic_and_key(expected)


@pytest.mark.kafka
async def test_duration_bound_single_events_with_wall_clock(
    kafka_broker: Any, run_cli: Any, tmp_path: Any
) -> None:
    topics, env = unique_topics()
    summary_file = tmp_path / "summary.json"
    args = ["--duration", "1.5", "--rate", "1000", "--batch-size", "1", "--summary-json", str(summary_file)]
    started_ms = time.time_ns() // 1_000_000
    proc = run_cli("generate", *args, env={"KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, **env})
    assert proc.returncode == 0, proc.stderr
    summary = orjson.loads(summary_file.read_bytes())
    assert summary["status"] == "done" and 1000 <= summary["records"] <= 2000
    assert summary["messages"] == summary["records"]  # one event (or bad record) per message

    got = await consume(kafka_broker.bootstrap, topics, summary["messages"])
    assert len(got) == summary["messages"]
    invalid = 0
    for topic, key, value in got:
        problems = check_message(_Msg(topic, key, value), topics)
        invalid += bool(problems)
        if not problems:
            ev = orjson.loads(value)
            assert type(ev) is dict and started_ms - 3_500 <= ev["ts"] <= time.time_ns() // 1_000_000
    assert invalid == summary["invalid"]


@pytest.mark.kafka
def test_ctrl_c_stops_cleanly_with_a_summary(kafka_broker: Any, tmp_path: Any) -> None:
    _, env = unique_topics()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "generate", "--rate", "2000", "--progress-interval", "0.2"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the first progress line: it is running and sending
        assert line.startswith("progress: sent"), line  # nothing else before it: no noise on a new topic
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "generate summary: interrupted" in out


@pytest.mark.network
def test_unreachable_kafka_is_a_clear_error(run_cli: Any) -> None:
    port = find_free_port()
    proc = run_cli(
        "generate", "--events", "10", env={"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}, timeout=60
    )
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr and "Traceback" not in proc.stderr


class _Msg:
    """Just enough of a `Message` for `check_message`."""

    def __init__(self, topic: str, key: bytes, value: bytes):
        self.topic, self.key, self.value = topic, key, value
