"""Exact aggregates under failure: kill -9 of the worker, SIGTERM mid-stream, and ClickHouse going away
for 30 s.

Each run feeds the same generated traffic (batches, retries, disorder, invalid messages) to a fresh
pipeline (own topics, consumer group and database) and the window views must come out identical to
an uninterrupted run's.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import WorkerProcess, cli, generated_traffic, isolated_env, produce, window_stats

from pipeline.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
CHUNKS = 4
START_TS = int(time.time() * 1000) - 20 * 60_000  # shared by every run of this module


def traffic(settings: Settings) -> list[list[tuple[str, bytes, bytes]]]:
    return generated_traffic(settings, START_TS, CHUNKS)


def new_pipeline(settings_env, tmp_path, name):
    # Small windows so that several windows open, close and are dropped during the run.
    env = isolated_env(settings_env, tmp_path, WINDOW_SECONDS="10", ALLOWED_LATENESS_SECONDS="5")
    cli(env, "migrate")
    return env, WorkerProcess(env, tmp_path / f"{name}.log")


@pytest.fixture(scope="module")
def baseline(settings_env, tmp_path_factory):
    env, worker = new_pipeline(settings_env, tmp_path_factory.mktemp("baseline"), "baseline")
    settings = Settings.from_env(env)
    worker.start()
    try:
        for chunk in traffic(settings):
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
        worker.wait_caught_up()
    finally:
        assert worker.stop() == 0
    stats = window_stats(env)
    # Enough windows, rooms and creators that a lost or doubled message could not hide.
    assert len({row[0] for row in stats["rooms"]}) >= 6
    assert len(stats["rooms"]) > 100 and len(stats["creators"]) > 40
    assert sum(row[3] for row in stats["rooms"]) > 5_000
    return stats


def test_kill_9_at_random_points_gives_the_same_aggregates(baseline, settings_env, tmp_path):
    env, worker = new_pipeline(settings_env, tmp_path, "killed")
    settings = Settings.from_env(env)
    rng = random.Random()
    kills = 0
    worker.start()
    try:
        for chunk in traffic(settings):
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
            # Somewhere while the chunk is being processed, checkpointed or committed.
            time.sleep(rng.uniform(0.2, 2.5))
            worker.kill()
            kills += 1
            worker.start()
        worker.wait_caught_up()
    finally:
        worker.stop()
    assert kills == CHUNKS
    assert window_stats(env) == baseline


async def committed_and_end_offsets(settings: Settings) -> tuple[dict, dict]:
    """The consumer group's committed offsets and the end offsets of every input partition."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=settings.app_id)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in settings.topics.inputs for p in range(settings.topic_partitions)]
        committed = {tp: await consumer.committed(tp) for tp in tps}
        return committed, await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


def test_sigterm_mid_stream_stops_within_30s_commits_and_gives_the_same_aggregates(
    baseline, settings_env, tmp_path
):
    env, worker = new_pipeline(settings_env, tmp_path, "sigterm")
    settings = Settings.from_env(env)
    rng = random.Random()
    worker.start()
    try:
        for chunk in traffic(settings):
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
            time.sleep(rng.uniform(0.2, 2.5))  # somewhere while the chunk is being processed
            started = time.monotonic()
            assert worker.stop(timeout=30) == 0  # flushed, committed, exited cleanly
            assert time.monotonic() - started < 30
            worker.start()
        worker.wait_caught_up()
    finally:
        assert worker.stop(timeout=30) == 0
    assert window_stats(env) == baseline
    # The last stop committed everything it processed: a restart would replay nothing.
    committed, end = asyncio.run(committed_and_end_offsets(settings))
    assert committed == end


def test_clickhouse_down_for_30s_gives_the_same_aggregates(
    baseline, settings_env, tmp_path, clickhouse_server
):
    env, worker = new_pipeline(settings_env, tmp_path, "outage")
    settings = Settings.from_env(env)
    chunks = traffic(settings)
    worker.start()
    try:
        asyncio.run(produce(settings.kafka_bootstrap_servers, chunks[0]))
        clickhouse_server.stop()
        try:
            for chunk in chunks[1:]:
                asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
            time.sleep(10)
            health = worker.health()
            assert health["status"] == "degraded"
            assert any(s["retries"] > 0 for s in health["sink"].values())
            assert "livecommerce_sink_backpressure" in worker.metrics()
            time.sleep(20)
        finally:
            clickhouse_server.start()
        worker.wait_caught_up(timeout=180)
    finally:
        assert worker.stop() == 0
    assert window_stats(env) == baseline
