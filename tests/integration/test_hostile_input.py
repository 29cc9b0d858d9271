"""Hostile input against the real worker, Kafka and ClickHouse: nothing a client sends stalls the
pipeline or changes anyone else's numbers.

One clean run of generated traffic is the truth. A second pipeline gets the same traffic with what real
clients and producers send mixed in: phones whose clocks are minutes fast, a producer a year ahead
(record timestamp and `ts`), key-less events, orders at the amount ceiling and over it, a 1 MiB junk
array and an ~800 KB rejected message. The hostile events all belong to rooms of one creator nobody
else uses, so every other window must equal the clean run; the pipeline must catch up (commit every
partition to its end), every consumed event must have exactly one outcome, each input message must
yield a bounded number of dead letters, and the room and creator views must agree.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from harness import (
    WorkerProcess,
    cli,
    generated_traffic,
    isolated_env,
    outcome_totals,
    produce,
    window_stats,
)

from pipeline.events import contract
from pipeline.settings import Settings
from pipeline.topics import DEADLETTER_MAX_MESSAGE_BYTES

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
START_TS = int(time.time() * 1000) - 20 * 60_000
HOSTILE_CREATOR = 9_000_000_000
HOSTILE_ROOMS = [HOSTILE_CREATOR + i for i in range(1, 9)]
YEAR_MS = 365 * 24 * 3600 * 1000
JUNK_BYTES = 1_000_000  # under the message limit (and the broker's), so it is decoded, not refused unread
OVERSIZED_BYTES = 800 * 1024

Produced = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, record timestamp (None: now)


def new_pipeline(settings_env, tmp_path, name):
    env = isolated_env(settings_env, tmp_path)
    cli(env, "migrate")
    return env, WorkerProcess(env, tmp_path / f"{name}.log")


def _event(type_: str, room: int, n: int, ts: int, **fields) -> dict:
    return {
        "type": type_,
        "event_id": f"hostile-{type_}-{room}-{n}",
        "ts": ts,
        "room_id": room,
        "creator_id": HOSTILE_CREATOR,
        "user_id": 7_000 + n,
        **fields,
    }


def hostile_messages(settings: Settings, now_ms: int) -> list[Produced]:
    views, orders = settings.topics.views, settings.topics.orders
    messages: list[Produced] = []
    # Phones 240 s fast: one event per room of the hostile creator, as the issue observed.
    for i, room in enumerate(HOSTILE_ROOMS):
        ev = _event("view", room, i, now_ms + 240_000)
        messages.append((views, str(room).encode(), orjson.dumps([ev]), None))
    # A producer a year ahead: record timestamp and ts.
    room = HOSTILE_ROOMS[0]
    ev = _event("view", room, 100, now_ms + YEAR_MS)
    messages.append((views, str(room).encode(), orjson.dumps([ev]), now_ms + YEAR_MS))
    # Key-less single events (valid otherwise).
    for i in range(5):
        ev = _event("view", HOSTILE_ROOMS[1], 200 + i, START_TS + 30_000)
        messages.append((views, None, orjson.dumps(ev), None))
    # Two orders at the ceiling in one window of one room, and one just over it.
    room = HOSTILE_ROOMS[2]
    ceiling = contract.AMOUNT_FEN_MAX
    at_ceiling = [
        _event("order", room, 300 + i, START_TS + 10_000, order_id=f"o{i}", product_id=1, amount_fen=ceiling)
        for i in range(2)
    ]
    messages.append((orders, str(room).encode(), orjson.dumps(at_ceiling), None))
    over = _event(
        "order", room, 310, START_TS + 10_000, order_id="o-over", product_id=1, amount_fen=ceiling + 1
    )
    messages.append((orders, str(room).encode(), orjson.dumps([over]), None))
    # A 1 MiB array of zeros, one just under the element cap, and an ~800 KB message that is not JSON.
    junk = b"[" + b",".join([b"0"] * ((JUNK_BYTES - 2) // 2)) + b"]"
    messages.append((views, str(HOSTILE_ROOMS[3]).encode(), junk, None))
    capped = b"[" + b",".join([b"0"] * contract.MAX_BATCH_EVENTS) + b"]"
    messages.append((views, str(HOSTILE_ROOMS[3]).encode(), capped, None))
    messages.append((views, str(HOSTILE_ROOMS[4]).encode(), b"{" * OVERSIZED_BYTES, None))
    return messages


def events_in(value: bytes | None) -> int:
    """How many outcomes a message must yield: one per element of a non-empty array within the
    element cap, else one (a whole-message rejection)."""
    try:
        obj = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return 1
    return len(obj) if type(obj) is list and 0 < len(obj) <= contract.MAX_BATCH_EVENTS else 1


async def produce_timed(bootstrap: str, messages: list[Produced]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2 * 1024 * 1024)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=key, value=value, timestamp_ms=ts)
            for topic, key, value, ts in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(settings: Settings, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=8 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=3000)
            if not batch:
                return values
            values.extend(record.value for records in batch.values() for record in records)
    finally:
        await consumer.stop()


def legit(stats: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    return {
        "rooms": [r for r in stats["rooms"] if r[2] != HOSTILE_CREATOR],
        "creators": [r for r in stats["creators"] if r[1] != HOSTILE_CREATOR],
    }


def test_hostile_input_changes_no_one_elses_numbers_and_never_stalls(settings_env, tmp_path):
    # The truth: the same traffic, clean.
    env, worker = new_pipeline(settings_env, tmp_path, "clean")
    settings = Settings.from_env(env)
    traffic = generated_traffic(settings, START_TS, 2)
    worker.start()
    try:
        for chunk in traffic:
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
        worker.wait_caught_up()
    finally:
        assert worker.stop() == 0
    clean = window_stats(env)
    assert len(clean["rooms"]) > 50

    env, worker = new_pipeline(settings_env, tmp_path, "hostile")
    settings = Settings.from_env(env)
    traffic = generated_traffic(settings, START_TS, 2)  # the same traffic, to this pipeline's topics
    hostile = hostile_messages(settings, int(time.time() * 1000))
    worker.start()
    try:
        asyncio.run(produce(settings.kafka_bootstrap_servers, traffic[0]))
        asyncio.run(produce_timed(settings.kafka_bootstrap_servers, hostile))
        asyncio.run(produce(settings.kafka_bootstrap_servers, traffic[1]))
        worker.wait_caught_up(timeout=180)  # never stalls: every partition committed to its end
        outcomes = outcome_totals(worker.metrics())
    finally:
        assert worker.stop() == 0
    stats = window_stats(env)

    # Nobody else's numbers changed.
    assert legit(stats) == legit(clean)

    # Every consumed event has exactly one outcome.
    produced = [(t, k, v) for chunk in traffic for t, k, v in chunk] + [(t, k, v) for t, k, v, _ in hostile]
    assert sum(outcomes.values()) == sum(events_in(v) for _, _, v in produced)

    # The ceiling orders are counted exactly; the one over it is not.
    ceiling_rows = [r for r in stats["rooms"] if r[1] == HOSTILE_ROOMS[2]]
    assert sum(r[9] for r in ceiling_rows) == 2 * contract.AMOUNT_FEN_MAX
    assert sum(r[7] for r in ceiling_rows) == 2 and sum(r[8] for r in ceiling_rows) == 2

    # Room and creator views agree, for the hostile creator too (sums; distinct counts are per level).
    for window, creator, views, _, clicks, _, orders, _, gmv, refunds, refund_fen in stats["creators"]:
        rooms = [r for r in stats["rooms"] if r[0] == window and r[2] == creator]
        assert (views, clicks, orders, gmv, refunds, refund_fen) == tuple(
            sum(r[i] for r in rooms) for i in (3, 5, 7, 9, 10, 11)
        ), (window, creator)

    # Dead letters: bounded per input message, each under the topic's limit, the oversized one kept
    # in part with its length and digest; the clocks' events are refused as ts_in_future.
    raw_letters = asyncio.run(read_topic(settings, settings.topics.deadletter))
    letters = [orjson.loads(v) for v in raw_letters]
    assert all(len(v) <= DEADLETTER_MAX_MESSAGE_BYTES for v in raw_letters)
    per_message: dict[tuple, int] = {}
    for letter in letters:
        where = (letter["source_topic"], letter["partition"], letter["offset"])
        per_message[where] = per_message.get(where, 0) + 1
    assert max(per_message.values()) <= 1
    reasons = [letter["reason"] for letter in letters]
    assert reasons.count("ts_in_future") == len(HOSTILE_ROOMS) + 1
    oversized = [letter for letter in letters if letter.get("value_length") == OVERSIZED_BYTES]
    assert len(oversized) == 1
    assert oversized[0]["value_sha256"] == hashlib.sha256(b"{" * OVERSIZED_BYTES).hexdigest()
