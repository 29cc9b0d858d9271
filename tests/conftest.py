"""Session-wide real services: one Kafka broker and one ClickHouse server for the whole test run.

Both start on free ports in a temporary directory and are stopped when the session ends, even if
tests fail; they are also tied to the pytest process, so a session killed hard does not leave them
running. The Kafka jars come from the project's cache (the one `livecommerce kafka start` uses), so
only the very first run on a machine downloads them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.local.clickhouse import LocalClickHouse
from pipeline.local.kafka import LocalKafka
from pipeline.local.kafka_jars import default_lib_dir
from pipeline.local.process import PidFile, find_free_port, pid_alive, terminate
from pipeline.settings import Settings

SERVICE_MARKERS = ("kafka", "clickhouse", "network")


class UnitTestOpenedASocket(AssertionError):
    pass


@pytest.fixture(autouse=True)
def _unit_tests_stay_off_the_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test without a service marker is a unit test: connecting or binding a socket fails it, so a
    unit test can never quietly depend on a broker, a server or the network. (Socket pairs, which the
    asyncio event loop uses internally, stay allowed.)"""
    if any(request.node.get_closest_marker(name) for name in SERVICE_MARKERS):
        return

    def refuse(sock, address, *args):
        raise UnitTestOpenedASocket(
            f"unit test {request.node.nodeid} opened a socket to {address!r}; mark it "
            "`kafka`, `clickhouse` or `network` if it needs one"
        )

    for method in ("connect", "connect_ex", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The layout and the markers agree: tests under tests/unit/ need no Kafka or ClickHouse (they
    are the quick suite, `-m "not kafka and not clickhouse"` in seconds); those live in
    tests/integration/. (`network` tests, loopback only, may sit in either.)"""
    unit = Path(__file__).resolve().parent / "unit"
    misplaced = [
        item.nodeid
        for item in items
        if unit in Path(str(item.path)).resolve().parents
        and any(item.get_closest_marker(name) for name in ("kafka", "clickhouse"))
    ]
    if misplaced:
        raise pytest.UsageError(
            "tests under tests/unit/ must not need Kafka or ClickHouse; move to tests/integration/: "
            + ", ".join(misplaced[:10])
        )


def project_kafka_lib_dir() -> Path:
    """The Kafka lib dir the CLI uses with the current environment (normally `.local/kafka-lib/<version>`)."""
    return default_lib_dir(Settings.from_env().local_dir)


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A running single-node Kafka broker; `.bootstrap` is '127.0.0.1:PORT'."""
    broker = LocalKafka(
        directory=tmp_path_factory.mktemp("kafka"),
        lib_dir=project_kafka_lib_dir(),
        port=find_free_port(),
        controller_port=find_free_port(),
        tied=True,
    )
    try:
        broker.start()
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalClickHouse]:
    """A running ClickHouse server; `.url` is 'http://127.0.0.1:PORT', with `.http_port` and `.tcp_port`."""
    server = LocalClickHouse(
        directory=tmp_path_factory.mktemp("clickhouse"),
        http_port=find_free_port(),
        tcp_port=find_free_port(),
        tied=True,
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def settings_env(
    kafka_broker: LocalKafka, clickhouse_server: LocalClickHouse, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Environment variables pointing the pipeline at the session's services (merge into os.environ
    for a subprocess, or pass to `Settings.from_env`). Treat as read-only: it is shared."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "CLICKHOUSE_URL": clickhouse_server.url,
        "LIVECOMMERCE_LOCAL_DIR": str(tmp_path_factory.mktemp("local")),
    }


CliRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture
def run_cli(tmp_path: Path) -> CliRunner:
    """`run_cli(*args, env=None, timeout=120)` runs `python -m pipeline.cli ARGS` in a subprocess with
    LIVECOMMERCE_LOCAL_DIR set to this test's tmp_path (plus `env` overrides); returns the completed
    process with text output."""
    base_env = {**os.environ, "LIVECOMMERCE_LOCAL_DIR": str(tmp_path)}

    def run(
        *args: str, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pipeline.cli", *args],
            env={**base_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


@pytest.fixture
def reap_pidfile() -> Iterator[Callable[[Path], None]]:
    """`reap_pidfile(path)` registers a pidfile whose process is terminated at teardown if still alive,
    so a CLI test that fails half-way leaves no service behind."""
    pidfiles: list[Path] = []
    yield pidfiles.append
    for path in pidfiles:
        pid = PidFile(path).read()
        if pid is not None and pid_alive(pid):
            terminate(pid, timeout=20)


@pytest.fixture
def ch(clickhouse_server: LocalClickHouse) -> Iterator[tuple[Settings, object]]:
    """(settings, migrate-profile client) on a fresh, migrated database of this test, dropped after."""
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(clickhouse_url=clickhouse_server.url, clickhouse_database=db)
    client = make_client(settings, Profile.MIGRATE)
    migrations.migrate(client, db, settings.raw_events_ttl_days)
    yield settings, client
    client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
    client.close()
