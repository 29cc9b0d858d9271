"""The local ClickHouse server is real ClickHouse over the network: clickhouse-connect and other
processes share its data, the native protocol answers, and `livecommerce clickhouse start|status|stop`
manage its lifecycle with the data surviving a restart."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid

import clickhouse_connect
import pytest

from pipeline.local.process import find_free_port, pid_alive, wait_until

pytestmark = pytest.mark.clickhouse


def client_for(http_port: int):
    return clickhouse_connect.get_client(host="127.0.0.1", port=http_port)


def varuint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def native_hello(port: int) -> bytes:
    """Send a native-protocol ClientHello and return the start of the server's reply."""

    def string(value: bytes) -> bytes:
        return varuint(len(value)) + value

    hello = varuint(0) + string(b"probe") + varuint(1) + varuint(0) + varuint(54060)
    hello += string(b"") + string(b"default") + string(b"")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(hello)
        return conn.recv(64)


def cpu_seconds(pid: int, over: float) -> float:
    """CPU time (user + system, all threads) process `pid` spends during the next `over` seconds."""

    def ticks() -> int:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
        return int(fields[11]) + int(fields[12])  # utime, stime

    before = ticks()
    time.sleep(over)
    return (ticks() - before) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def table(clickhouse_server):
    name = f"default.t_{uuid.uuid4().hex[:8]}"
    client = client_for(clickhouse_server.http_port)
    client.command(
        f"CREATE TABLE {name} (id UInt32, room String, gmv Decimal(18, 2)) ENGINE = MergeTree ORDER BY id"
    )
    yield name
    client.command(f"DROP TABLE IF EXISTS {name}")
    client.close()


def test_create_insert_select(clickhouse_server, table):
    client = client_for(clickhouse_server.http_port)
    rows = [(i, f"room-{i % 3}", i * 1.5) for i in range(1000)]
    client.insert(table, rows, column_names=["id", "room", "gmv"])
    result = client.query(f"SELECT room, count(), sum(id) FROM {table} GROUP BY room ORDER BY room")
    assert result.result_rows == [
        ("room-0", 334, sum(range(0, 1000, 3))),
        ("room-1", 333, sum(range(1, 1000, 3))),
        ("room-2", 333, sum(range(2, 1000, 3))),
    ]
    assert client.command("SELECT version()").startswith("26.")


def test_second_process_reads_the_same_data(clickhouse_server, table):
    client_for(clickhouse_server.http_port).insert(
        table, [(7, "r", 70.25), (8, "s", 1)], ["id", "room", "gmv"]
    )
    script = textwrap.dedent(
        f"""
        import clickhouse_connect
        client = clickhouse_connect.get_client(host="127.0.0.1", port={clickhouse_server.http_port})
        print(client.query("SELECT id, room, toString(gmv) FROM {table} ORDER BY id").result_rows)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[(7, 'r', '70.25'), (8, 's', '1')]"


def test_native_tcp_protocol_answers(clickhouse_server):
    reply = native_hello(clickhouse_server.tcp_port)
    assert reply[0] == 0, reply  # packet 0 is ServerHello (2 would be an exception)
    assert b"ClickHouse" in reply


def test_cli_lifecycle_keeps_data(run_cli, reap_pidfile, tmp_path):
    http_port, tcp_port = find_free_port(), find_free_port()
    pidfile = tmp_path / "clickhouse" / "clickhouse.pid"
    reap_pidfile(pidfile)
    start = ("clickhouse", "start", "--http-port", str(http_port), "--tcp-port", str(tcp_port))

    started = run_cli(*start)
    assert started.returncode == 0, started.stderr
    assert f"http://127.0.0.1:{http_port}" in started.stdout
    assert str(tmp_path / "clickhouse" / "logs" / "clickhouse.log") in started.stdout
    pid = int(pidfile.read_text())
    client = client_for(http_port)
    client.command("CREATE TABLE default.kept (id UInt32) ENGINE = MergeTree ORDER BY id")
    client.insert("default.kept", [(1,), (2,), (3,)], ["id"])
    client.close()

    # An idle server must not burn a core: on a small machine that is CPU the pipeline needs. (The
    # engine's pulling executor spins while a SELECT sleeps; the listener query is an INSERT for that.)
    idle = cpu_seconds(pid, over=3.0)
    assert idle < 0.9, f"the idle server used {idle:.2f} CPU seconds in 3 s"

    status = run_cli("clickhouse", "status")
    assert status.returncode == 0, status.stderr
    assert f"pid {pid}" in status.stdout and str(tcp_port) in status.stdout
    again = run_cli(*start)
    assert again.returncode == 0 and "already running" in again.stdout

    stopped = run_cli("clickhouse", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert not pidfile.exists()
    assert wait_until(lambda: not pid_alive(pid), timeout=5)
    assert "clickhouse: stopped" in (tmp_path / "clickhouse" / "logs" / "clickhouse.log").read_text()
    down = run_cli("clickhouse", "status")
    assert down.returncode == 3 and "down" in down.stdout

    restarted = run_cli(*start)
    assert restarted.returncode == 0, restarted.stderr
    client = client_for(http_port)
    assert client.query("SELECT sum(id) FROM default.kept").result_rows == [(6,)]
    client.close()
    assert run_cli("clickhouse", "stop").returncode == 0


def test_start_fails_clearly_when_port_taken(run_cli):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("clickhouse", "start", "--http-port", str(find_free_port()), "--tcp-port", str(port))
    assert result.returncode != 0
    assert f"port {port}" in result.stderr and "--tcp-port" in result.stderr
    assert "Traceback" not in result.stderr
