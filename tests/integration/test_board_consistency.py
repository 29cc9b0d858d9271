"""Consistent numbers while data arrives: a real worker consumes generated traffic from Kafka while the
test polls the boards; no row may show more buyers than orders or more clickers than viewers
(markers kafka, clickhouse).

The traffic (pipeline.traffic.generator: retries, disorder, clicks after views, orders after clicks) is sent
in chunks with pauses, so the room stage's raw events and the later window rows are caught in between.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import pytest
from harness import WorkerProcess, cli, isolated_env, produce

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.serving.registry import Campaign, sync_campaigns
from pipeline.settings import Settings
from pipeline.traffic.generator import TrafficConfig, TrafficModel

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
BOARDS = ("creator", "room", "mcn", "source", "merchant")


def check(body: dict, by: str) -> list[str]:
    broken = []
    for row in body["rows"]:
        if row["buyers"] > row["orders"]:
            broken.append(f"{by} {row['id']}: buyers {row['buyers']} > orders {row['orders']}")
        if "clickers" in row and by in ("mcn", "source") and row["clickers"] > row["viewers"]:
            broken.append(f"{by} {row['id']}: clickers {row['clickers']} > viewers {row['viewers']}")
    return broken


def test_no_row_shows_buyers_over_orders_while_data_arrives(settings_env, tmp_path):
    env = isolated_env(settings_env, tmp_path, ALLOWED_LATENESS_SECONDS="5")
    cli(env, "migrate")
    settings = Settings.from_env(env)
    now_s = int(time.time())
    client = make_client(settings, Profile.INSERT)
    try:  # a campaign around now, whole hours
        start = now_s - now_s % 3600 - 3600
        sync_campaigns(client, settings, [Campaign.from_epoch("tc", start, start + 3 * 3600, "测试")])
    finally:
        client.close()
    # ~7 minutes of event time ending now: 8,000 records at 20 a second, started 7 minutes ago
    model = TrafficModel(
        TrafficConfig(seed=5, rooms=60, creators=20, users=3_000, batch_size=10, linger_ms=500, rate=20,
                      start_ts_ms=(now_s - 420) * 1000, duplicate_share=0.02, ctr=0.3, order_rate=0.15),
        topics=settings.topics,
    )  # fmt: skip
    messages = [(m.topic, m.key, m.value) for m in model.messages(8_000)]
    chunks = [messages[i : i + 1000] for i in range(0, len(messages), 1000)]
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    polls, broken, seen_orders, as_of = 0, [], 0, {}
    try:
        for chunk in chunks:
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                for by in BOARDS:
                    body = json.loads(worker.get(f"/api/campaigns/tc/leaderboard?by={by}&limit=500"))
                    polls += 1
                    broken += check(body, by)
                    seen_orders = max(seen_orders, sum(r["orders"] for r in body["rows"]))
                    if body["as_of"] is not None:
                        assert body["as_of"] >= as_of.get(by, 0), f"{by}: as_of went back"
                        as_of[by] = body["as_of"]
        worker.wait_caught_up()
        for by in BOARDS:
            broken += check(json.loads(worker.get(f"/api/campaigns/tc/leaderboard?by={by}&limit=500")), by)
    finally:
        assert worker.stop() == 0
    assert not broken, broken[:10]
    # not vacuous: the boards had real orders and the cut-off moved while the data arrived
    assert polls > 50 and seen_orders > 100, (polls, seen_orders)
    assert as_of["creator"] > (now_s - 360) * 1000, datetime.fromtimestamp(as_of["creator"] / 1000, UTC)
