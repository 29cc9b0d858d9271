"""Scale-out on this machine: a 3-broker Kafka cluster, two workers in one consumer group on
12-partition topics; one worker and one broker are killed during the run, and the aggregates must
equal a single uninterrupted worker's."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from conftest import project_kafka_lib_dir
from harness import WorkerProcess, cli, generated_traffic, isolated_env, produce, window_stats

from pipeline.local.kafka_cluster import LocalKafkaCluster
from pipeline.local.process import find_free_port
from pipeline.settings import Settings

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse]
START_TS = int(time.time() * 1000) - 20 * 60_000
CHUNKS = 4
PARTITIONS = "12"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    ports = [find_free_port() for _ in range(3)]
    controllers = [find_free_port() for _ in range(3)]
    cluster = LocalKafkaCluster(
        tmp_path_factory.mktemp("cluster"), project_kafka_lib_dir(), ports, controllers, tied=True
    )
    cluster.start()
    yield cluster
    cluster.stop()


def pipeline_env(settings_env, tmp_path, **overrides):
    env = isolated_env(settings_env, tmp_path, WINDOW_SECONDS="10", ALLOWED_LATENESS_SECONDS="5",
                       TOPIC_PARTITIONS=PARTITIONS, **overrides)  # fmt: skip
    cli(env, "migrate")
    return env


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_workers_survive_losing_a_worker_and_a_broker(settings_env, tmp_path, cluster):
    # The reference: one worker, one broker, nothing goes wrong.
    env = pipeline_env(settings_env, tmp_path)
    settings = Settings.from_env(env)
    single = WorkerProcess(env, tmp_path / "single.log").start()
    try:
        for chunk in generated_traffic(settings, START_TS, CHUNKS):
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
        single.wait_caught_up()
    finally:
        assert single.stop() == 0
    expected = window_stats(env)
    assert len(expected["rooms"]) > 100

    env = pipeline_env(
        settings_env, tmp_path, KAFKA_BOOTSTRAP_SERVERS=cluster.bootstrap, KAFKA_REPLICATION_FACTOR="3"
    )
    settings = Settings.from_env(env)
    # One consumer group (same APP_ID); each worker has its own web port and RocksDB directory.
    workers = [
        WorkerProcess(
            {**env, "WEB_PORT": str(find_free_port()), "LIVECOMMERCE_LOCAL_DIR": str(tmp_path / f"w{i}")},
            tmp_path / f"worker{i}.log",
        )
        for i in (1, 2)
    ]
    chunks = generated_traffic(settings, START_TS, CHUNKS)
    survivor, victim = workers[1], workers[0]
    try:
        for worker in workers:
            worker.start()
        inputs = 3 * int(PARTITIONS)
        # Both workers share the partitions before anything is sent.
        wait_for(lambda: survivor.health()["consumer"]["assigned_partitions"] < inputs, 60, "a shared group")
        for chunk in chunks[:2]:
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
        victim.kill()
        broker_pid = cluster.nodes[1].running_pid()
        os.kill(broker_pid, signal.SIGKILL)
        for chunk in chunks[2:]:
            asyncio.run(produce(settings.kafka_bootstrap_servers, chunk))
        # The survivor takes over every partition once the dead worker's session expires.
        wait_for(lambda: survivor.health()["consumer"]["assigned_partitions"] == inputs, 90, "the takeover")
        survivor.wait_caught_up(timeout=180)
    finally:
        for worker in workers:
            worker.stop()
    assert len(cluster.running()) == 2
    assert window_stats(env) == expected
