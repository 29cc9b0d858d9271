"""The real worker with quiet input partitions: they advance by the clock, so windows become final and
state empties once traffic stops; and a key-less event is a dead letter, not a second writer of a row."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from harness import WorkerProcess, cli, isolated_env, outcome_totals, produce, window_stats

from pipeline.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]


@pytest.fixture
def worker(settings_env, tmp_path):
    env = isolated_env(
        settings_env, tmp_path, WINDOW_SECONDS="10", ALLOWED_LATENESS_SECONDS="5", IDLE_PARTITION_SECONDS="2"
    )
    cli(env, "migrate")
    w = WorkerProcess(env, tmp_path / "worker.log")
    yield w
    w.stop()


def test_quiet_partitions_advance_so_every_window_becomes_final(worker):
    settings = Settings.from_env(worker.env)
    worker.start()
    now = int(time.time() * 1000)
    views = [
        {"event_id": f"v{i}", "type": "view", "ts": now, "room_id": 5, "creator_id": 9, "user_id": i + 1}
        for i in range(20)
    ]
    messages = [(settings.topics.views, b"5", orjson.dumps(views))]  # one room: one partition of nine
    messages.append((settings.topics.views, None, orjson.dumps({**views[0], "event_id": "no-key"})))
    asyncio.run(produce(settings.kafka_bootstrap_servers, messages))
    worker.wait_caught_up()
    totals = outcome_totals(worker.metrics())
    assert totals[(settings.topics.views, "accepted")] == 20
    assert totals[(settings.topics.views, "invalid")] == 1  # the key-less event: bad_key

    # No more traffic. Without idle partitions the creator window would never be final (eight input
    # partitions never had an event) and the room window would wait for a later event on its partition.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        health = worker.health()
        marks = [p["watermark_ms"] for p in health["consumer"]["partitions"]]
        if health["state"]["open_windows"] == 0 and all(m is not None and m > now for m in marks):
            break
        time.sleep(1)
    assert health["state"]["open_windows"] == 0, health["state"]
    assert all(m is not None and m > now for m in marks), marks  # every partition passed the window
    stats = window_stats(worker.env)
    # views of creator 9 and of room 5, counted once
    assert [row[1:3] for row in stats["creators"]] == [(9, 20)], stats
    assert [(row[1], row[3]) for row in stats["rooms"]] == [(5, 20)], stats
