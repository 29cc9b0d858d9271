"""The local Kafka broker is a real Kafka: clients produce, consume and use transactions through it,
and `livecommerce kafka start|status|stop` manage its lifecycle with clear errors."""

from __future__ import annotations

import socket
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from conftest import project_kafka_lib_dir

from pipeline.errors import UserFacingError
from pipeline.local import kafka_jars
from pipeline.local.kafka import LocalKafka, new_cluster_id
from pipeline.local.kafka_jars import ensure_kafka_jars
from pipeline.local.process import find_free_port, pid_alive, wait_until

pytestmark = pytest.mark.kafka


async def consume(bootstrap: str, topic: str, count: int, **options) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        **options,
    )
    await consumer.start()
    received: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(60):
            batches = await consumer.getmany(timeout_ms=500)
            received += [(m.key, m.value) for msgs in batches.values() for m in msgs]
            if len(received) >= count:
                break
    finally:
        await consumer.stop()
    return received


async def test_produce_and_consume(kafka_broker):
    topic = f"test.roundtrip.{uuid.uuid4().hex[:8]}"
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(50)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()

    received = await consume(kafka_broker.bootstrap, topic, len(sent))
    assert sorted(received) == sorted(sent)


async def test_transactions_work_on_one_broker(kafka_broker):
    # Faust's exactly_once needs the transaction log settings of the single-node config. One partition,
    # so the order is defined.
    topic = f"test.txn.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, transactional_id=topic)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed", partition=0)
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", partition=0)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2", partition=0)
    finally:
        await producer.stop()

    received = await consume(kafka_broker.bootstrap, topic, 2, isolation_level="read_committed")
    assert [value for _, value in received] == [b"committed", b"committed-2"]


def test_cli_lifecycle(run_cli, reap_pidfile, tmp_path):
    port, controller_port = find_free_port(), find_free_port()
    reap_pidfile(tmp_path / "kafka" / "kafka.pid")
    lib = str(project_kafka_lib_dir())
    start = (
        "kafka",
        "start",
        "--port",
        str(port),
        "--controller-port",
        str(controller_port),
        "--lib-dir",
        lib,
    )

    started = run_cli(*start)
    assert started.returncode == 0, started.stderr
    assert f"127.0.0.1:{port}" in started.stdout
    assert str(tmp_path / "kafka" / "logs" / "kafka.log") in started.stdout
    pid = int((tmp_path / "kafka" / "kafka.pid").read_text())
    assert pid_alive(pid)

    status = run_cli("kafka", "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {pid}" in status.stdout and f"127.0.0.1:{port}" in status.stdout

    again = run_cli(*start)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout

    stopped = run_cli("kafka", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not (tmp_path / "kafka" / "kafka.pid").exists()
    assert wait_until(lambda: not pid_alive(pid), timeout=5)

    down = run_cli("kafka", "status")
    assert down.returncode == 3
    assert "down" in down.stdout


def test_start_fails_clearly_when_port_taken(run_cli):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("kafka", "start", "--port", str(port), "--controller-port", str(find_free_port()))
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_fails_clearly_without_java(run_cli):
    port, controller_port = find_free_port(), find_free_port()
    result = run_cli(
        "kafka",
        "start",
        "--port",
        str(port),
        "--controller-port",
        str(controller_port),
        env={"PATH": "/nonexistent"},
    )
    assert result.returncode != 0
    assert "'java' is not on PATH" in result.stderr


def test_cached_jars_skip_maven(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")  # no mvn: only a cache hit can succeed
    lib = tmp_path / "lib"
    lib.mkdir()
    with pytest.raises(UserFacingError, match="mvn"):
        ensure_kafka_jars(lib)
    (lib / ".complete").write_text("3.9.1\n")
    assert ensure_kafka_jars(lib) == lib
    assert "fetching" not in capsys.readouterr().out


def test_maven_failure_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(kafka_jars, "POM", tmp_path / "missing-pom.xml")
    with pytest.raises(UserFacingError, match=r"fetching Kafka \S+ jars with Maven failed"):
        ensure_kafka_jars(tmp_path / "lib")
    assert not (tmp_path / "lib").exists()
    assert not list(tmp_path.glob("lib.partial-*"))


def test_broker_exiting_during_start_fails_fast_with_log_tail(tmp_path):
    # A lib dir marked complete but without jars: the JVM starts and exits at once.
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / ".complete").write_text("broken\n")
    broker = LocalKafka(tmp_path / "kafka", lib, port=find_free_port(), controller_port=find_free_port())
    broker.data_dir.mkdir(parents=True)
    (broker.data_dir / "meta.properties").write_text("")  # skip formatting, which would fail first
    with pytest.raises(UserFacingError, match="exited during start") as error:
        broker.start()
    assert "ClassNotFoundException: kafka.Kafka" in str(error.value)
    assert broker.running_pid() is None and not broker.pidfile.path.exists()


def test_storage_formats_with_a_cluster_id_beginning_with_a_dash(tmp_path):
    # About one random id in 64 begins with '-'; kafka-storage once read it as an option.
    dashed = "-" + new_cluster_id()[1:]
    broker = LocalKafka(
        tmp_path / "kafka",
        project_kafka_lib_dir(),
        port=find_free_port(),
        controller_port=find_free_port(),
        cluster_id=dashed,
    )
    broker.data_dir.mkdir(parents=True)
    broker.prepare()  # runs the real kafka.tools.StorageTool
    meta = (broker.data_dir / "meta.properties").read_text()
    assert f"cluster.id={dashed}\n" in meta


def test_new_cluster_ids_never_begin_with_a_dash():
    ids = [new_cluster_id() for _ in range(2_000)]
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
