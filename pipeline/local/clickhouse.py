"""The local ClickHouse server: the chdb-core engine serving HTTP and native TCP on 127.0.0.1.

`LocalClickHouse` runs `python -m pipeline.local.clickhouse_server` in the background with the same
lifecycle as Kafka (see `LocalService`). Directory layout: `config.xml` (written by the server),
`data/` (the engine's databases, kept across restarts), `logs/clickhouse.log`, `clickhouse.pid`.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

from pipeline.errors import UserFacingError
from pipeline.local import process
from pipeline.local.service import LocalService


def clickhouse_answers(http_port: int, tcp_port: int, host: str = process.LOCALHOST) -> bool:
    """True if `GET /ping` says `Ok.`, a `SELECT 1` through clickhouse-connect returns 1 and the native
    TCP port accepts connections."""
    try:
        with urllib.request.urlopen(f"http://{host}:{http_port}/ping", timeout=2) as resp:
            if resp.read().strip() != b"Ok.":
                return False
    except OSError:
        return False
    import clickhouse_connect
    import urllib3

    # A private pool, cleared afterwards: an idle keep-alive connection left in the shared pool would
    # make a later stop wait for the server's keep-alive timeout.
    pool = urllib3.PoolManager()
    try:
        client = clickhouse_connect.get_client(
            host=host, port=http_port, connect_timeout=2, send_receive_timeout=5, pool_mgr=pool
        )
        try:
            if client.command("SELECT 1") != 1:
                return False
        finally:
            client.close()
    except Exception:
        return False
    finally:
        pool.clear()
    return process.port_accepts(tcp_port, host)


class LocalClickHouse(LocalService):
    """ClickHouse on `host` (always 127.0.0.1: the server has no authentication) with HTTP on
    `http_port` and the native protocol on `tcp_port`, data under `directory / "data"`."""

    name = "clickhouse"
    start_timeout = 60.0
    stop_timeout = 20.0

    def __init__(self, directory: Path, http_port: int = 8123, tcp_port: int = 9000, tied: bool = False):
        super().__init__(directory, tied=tied)
        self.host = process.LOCALHOST
        self.http_port = http_port
        self.tcp_port = tcp_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def endpoint(self) -> str:
        return f"{self.url}, native tcp {self.host}:{self.tcp_port}"

    def ports(self) -> dict[str, int]:
        return {"--http-port": self.http_port, "--tcp-port": self.tcp_port}

    def prepare(self) -> None:
        if importlib.util.find_spec("chdb") is None:
            raise UserFacingError(
                "the embedded ClickHouse engine is not installed; run `pip install -e '.[local]'` "
                "(make demo and make test do it)"
            )
        (self.directory / "data").mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pipeline.local.clickhouse_server",
            "--dir",
            str(self.directory),
            "--http-port",
            str(self.http_port),
            "--tcp-port",
            str(self.tcp_port),
        ]

    def is_ready(self) -> bool:
        return clickhouse_answers(self.http_port, self.tcp_port, self.host)
