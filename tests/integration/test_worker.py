"""The real worker process against the real Kafka broker and ClickHouse server."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import WorkerProcess, cli, group_lag, isolated_env, outcome_totals, produce

from pipeline.checkpointing import EXIT_CHECKPOINT_FAILED
from pipeline.events.contract import MAX_BATCH_EVENTS
from pipeline.settings import Settings
from pipeline.traffic.generator import TrafficConfig, TrafficModel

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


@pytest.fixture
def env(settings_env, tmp_path):
    env = isolated_env(settings_env, tmp_path, WINDOW_SECONDS="10", ALLOWED_LATENESS_SECONDS="5")
    cli(env, "migrate")
    return env


@pytest.fixture
def worker(env, tmp_path):
    w = WorkerProcess(env, tmp_path / "worker.log")
    yield w
    w.stop()


def test_worker_serves_health_and_metrics_then_stops_on_sigterm(worker):
    worker.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        health = worker.health()
        if health["kafka"]["checked_at_ms"] and health["clickhouse"]["checked_at_ms"]:
            break
        time.sleep(0.5)
    assert health["status"] == "ok", health
    assert health["kafka"]["reachable"] and health["clickhouse"]["reachable"]
    assert health["consumer"]["assigned_partitions"] == 9  # 3 input topics x 3 partitions
    assert {p["topic"] for p in health["consumer"]["partitions"]} == set(
        Settings.from_env(worker.env).topics.inputs
    )
    metrics = worker.metrics()
    assert 'livecommerce_dependency_up{dependency="kafka"} 1.0' in metrics
    assert "# TYPE livecommerce_events_total counter" in metrics
    assert worker.stop() == 0


def mixed_stream(settings: Settings) -> tuple[list[tuple[str, bytes | None, bytes | None]], dict[str, int]]:
    """Batches and single events from the generator, plus hand-made edge cases; and per topic the number
    of events a consumer of these messages must account for."""
    t = settings.topics
    now = int(time.time() * 1000)
    messages = []
    for i, batch_size in enumerate((25, 1)):  # the second model starts where the first one ends
        model = TrafficModel(
            TrafficConfig(seed=batch_size, rooms=30, creators=10, users=500, batch_size=batch_size, rate=40,
                          start_ts_ms=now - (15 - i) * 60_000, invalid_share=0.02, duplicate_share=0.03),
            topics=t,
        )  # fmt: skip
        messages += [(m.topic, m.key, m.value) for m in model.messages(1500)]
    view = {"event_id": "edge-1", "type": "view", "ts": now, "room_id": 5, "creator_id": 9, "user_id": 1}
    messages += [
        (t.views, b"5", None),  # a null value (tombstone)
        (t.views, b"5", b"\xff\xfe not utf-8"),
        (t.views, b"5", orjson.dumps({**view, "event_id": "edge-2", "pad": "x" * 70_000})),  # over 64 KiB
        (t.views, b"5", orjson.dumps({**view, "event_id": "edge-3", "ts": now + 3_600_000})),  # far future
        (
            t.views,
            b"5",
            orjson.dumps([view, {**view, "event_id": "edge-4", "room_id": 6}, view]),
        ),  # 1 bad, 1 dup
        # Far behind the watermark the traffic above set: late, for a room not otherwise in the stream.
        (
            t.views,
            b"5",
            orjson.dumps([{**view, "event_id": f"late-{i}", "ts": now - 60 * 60_000} for i in range(3)]),
        ),
        # Junk: 300 rejected elements and one valid event (one envelope); an array over the element cap;
        # an ~800 KB rejected message, whose plain base64 would pass the dead-letter topic's 1 MB.
        (t.views, b"5", orjson.dumps([*range(300), {**view, "event_id": "edge-5"}])),
        (t.views, b"5", orjson.dumps([0] * 300_000)),
        (t.views, b"5", b"\xff" * 800_000),
    ]
    expected: dict[str, int] = {}
    for topic, _key, value in messages:
        try:
            doc = orjson.loads(value) if value else None
        except orjson.JSONDecodeError:
            doc = None
        batch = isinstance(doc, list) and doc and _key_ok(_key) and len(doc) <= MAX_BATCH_EVENTS
        events = len(doc) if batch else 1
        expected[topic] = expected.get(topic, 0) + events
    return messages, expected


def _key_ok(key: bytes | None) -> bool:
    return bool(key) and key.isdigit() and not key.startswith(b"0")


async def read_all(
    bootstrap: str, topic: str, count: int, timeout: float = 30, weight=lambda record: 1
) -> list:
    """Records of `topic` until their weights add up to `count` (or the timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records = []
    try:
        deadline = time.monotonic() + timeout
        while sum(map(weight, records)) < count and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records += batch
    finally:
        await consumer.stop()
    return records


def test_every_consumed_event_has_exactly_one_outcome(worker, env):
    settings = Settings.from_env(env)
    messages, expected = mixed_stream(settings)
    worker.start()
    asyncio.run(produce(settings.kafka_bootstrap_servers, messages))
    worker.wait_caught_up()
    totals = outcome_totals(worker.metrics())
    for topic, events in expected.items():
        by_outcome = {o: totals.get((topic, o), 0) for o in ("accepted", "duplicate", "invalid", "late")}
        assert sum(by_outcome.values()) == events, (topic, by_outcome)
    assert all(totals.get((t, "accepted"), 0) > 0 for t in settings.topics.inputs)
    assert all(totals.get((t, "duplicate"), 0) > 0 for t in settings.topics.inputs)
    assert totals[(settings.topics.views, "late")] == 3

    invalid = int(sum(v for (_t, outcome), v in totals.items() if outcome == "invalid"))
    dead = asyncio.run(
        read_all(
            settings.kafka_bootstrap_servers,
            settings.topics.deadletter,
            invalid,
            weight=lambda record: orjson.loads(record.value)["rejected_events"],
        )
    )
    envelopes = [orjson.loads(r.value) for r in dead]
    # One envelope per message with rejections, and together they count every invalid outcome.
    assert sum(e["rejected_events"] for e in envelopes) == invalid
    assert len({(e["source_topic"], e["partition"], e["offset"]) for e in envelopes}) == len(envelopes)
    (junk,) = [e for e in envelopes if e["reasons"].get("not_object") == 300]
    assert junk["rejected_events"] == 300 and len(junk["other_rejections"]) == 99
    (capped,) = [e for e in envelopes if e["reason"] == "too_many_events"]
    assert capped["rejected_events"] == 1 and capped["value_truncated"]
    (big,) = [e for e in envelopes if e["value_length"] == 800_000]
    assert big["reason"] == "not_utf8" and len(base64.b64decode(big["value_b64"])) == 256 * 1024
    reasons = {e["reason"] for e in envelopes}
    assert {"empty_value", "not_utf8", "event_too_large", "ts_in_future", "key_mismatch"} <= reasons
    for envelope in envelopes:
        assert envelope["source_topic"] in settings.topics.inputs and envelope["message"]
        assert envelope["offset"] >= 0 and envelope["partition"] >= 0
    originals = {base64.b64decode(e["value_b64"]) for e in envelopes if e["reason"] == "not_utf8"}
    assert b"\xff\xfe not utf-8" in originals  # the original bytes, nothing lost

    late = asyncio.run(read_all(settings.kafka_bootstrap_servers, settings.topics.late, 1))
    assert [ev["event_id"] for ev in orjson.loads(late[0].value)] == ["late-0", "late-1", "late-2"]


async def _create_topic(settings: Settings, name: str, config: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, settings.topic_partitions, 1, topic_configs=config)])
    finally:
        await admin.close()


def test_a_dead_letter_the_broker_refuses_stops_the_worker_without_acknowledging(worker, env):
    """A send that fails on the broker (here a dead letter over the topic's max.message.bytes) must not
    be logged and forgotten: the worker exits (status 70) and the message stays unacknowledged."""
    settings = Settings.from_env(env)
    asyncio.run(_create_topic(settings, settings.topics.deadletter, {"max.message.bytes": "2048"}))
    worker.start()
    views = settings.topics.views
    asyncio.run(produce(settings.kafka_bootstrap_servers, [(views, b"7", b"not json " * 1000)]))
    try:
        code = worker.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the worker kept running:\n{worker.log_tail()}") from None
    assert code == EXIT_CHECKPOINT_FAILED, worker.log_tail()
    assert "exiting without acknowledging" in worker.log_tail(200)
    lag = asyncio.run(group_lag(settings))
    assert sum(n for tp, n in lag.items() if tp.startswith(f"{views}/")) == 1  # replayed on restart
