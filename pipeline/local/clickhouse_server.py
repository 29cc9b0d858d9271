"""A ClickHouse server process built on the chdb-core engine (real ClickHouse, in-process).

Run: `python -m pipeline.local.clickhouse_server --dir D --http-port P --tcp-port Q`. It serves the
ClickHouse HTTP and native TCP protocols on 127.0.0.1 (no authentication, so never on another
address) with its data in `D/data`, until SIGTERM or SIGINT; then it exits 0. It exits 1 if the
listeners stop on their own (for example a port was taken: the engine's message is in the log).

How chdb has to be driven (found by experiment with chdb-core 26.9):
- Listeners exist only while a query runs through the module-level `chdb._chdb.query(..., path=...)`
  (clickhouse-local's server code); their ports and listen host come from `config.xml` in the
  working directory. So a background thread runs `SYSTEM START LISTEN ...` plus a query that sleeps
  forever (an INSERT ... SELECT, see LISTEN_SQL), and the format given there (TabSeparated) becomes
  the server's default format.
- To stop, that query must be killed over the network: a second in-process `_chdb.query` (e.g. a
  `KILL QUERY`) blocks forever while the first runs. `KILL QUERY` over our own HTTP port ends it
  cleanly; the call returns once open connections are gone, and if some stay open 5 s the engine
  exits the process with status 1 (hence the short keep-alive in `write_config`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
# A marker in the listener query so KILL QUERY finds it and nothing else.
MARKER = "livecommerce_local_listener"
# The endless query is an INSERT into a Null table, not a SELECT: a SELECT is pulled by the engine's
# pulling executor, whose thread spins at 100% of a core while the query sleeps (measured: 94% of a
# core for an idle server); an INSERT ... SELECT runs in the calling thread and sleeps (0.2%).
LISTEN_SQL = (
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "CREATE TABLE IF NOT EXISTS default.livecommerce_local_listener (x UInt8) ENGINE = Null; "
    "INSERT INTO default.livecommerce_local_listener SELECT sleepEachRow(1) FROM numbers(1000000000000) "
    f"WHERE '{MARKER}' != '' SETTINGS max_execution_time = 0, max_block_size = 1"
)
KILL_SQL = f"KILL QUERY WHERE query LIKE '%{MARKER}%' AND query NOT LIKE 'KILL%' SYNC"


def write_config(directory: Path, http_port: int, tcp_port: int) -> Path:
    """Write the `config.xml` the engine reads from its working directory."""
    path = directory / "config.xml"
    path.write_text(
        "<clickhouse>\n"
        f"    <listen_host>{HOST}</listen_host>\n"
        f"    <http_port>{http_port}</http_port>\n"
        f"    <tcp_port>{tcp_port}</tcp_port>\n"
        # On stop the engine waits `shutdown_wait_unfinished` (5 s) for open connections and then exits
        # the process hard with status 1. Idle HTTP keep-alive connections (every clickhouse-connect
        # client keeps one) count, so they are closed after 3 s idle to let a stop finish cleanly.
        "    <keep_alive_timeout>3</keep_alive_timeout>\n"
        "</clickhouse>\n"
    )
    return path


def kill_listener(http_port: int, timeout: float = 5.0) -> bool:
    """Ask our own HTTP listener to kill the listener query; False if it could not be reached."""
    url = f"http://{HOST}:{http_port}/?" + urllib.parse.urlencode({"query": KILL_SQL})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=timeout) as resp:
            resp.read()
    except OSError:
        return False
    return True


def serve(directory: Path, http_port: int, tcp_port: int) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    write_config(directory, http_port, tcp_port)
    os.chdir(directory)
    from chdb import _chdb  # imported late: loading the engine takes a moment and a lot of memory

    stopping = threading.Event()

    def listen() -> None:
        # Returns when the query is killed, or at once if a listener could not start.
        _chdb.query(LISTEN_SQL, "TabSeparated", path=str(directory / "data"))

    listener = threading.Thread(target=listen, name="clickhouse-listener", daemon=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    listener.start()
    print(f"clickhouse: serving http://{HOST}:{http_port} and tcp {HOST}:{tcp_port}", flush=True)
    while listener.is_alive() and not stopping.wait(0.5):
        pass
    if not stopping.is_set():
        print("clickhouse: the listeners stopped on their own (see the engine's message above)", flush=True)
        return 1
    print("clickhouse: stopping", flush=True)
    deadline = time.monotonic() + 15
    while listener.is_alive() and time.monotonic() < deadline:
        kill_listener(http_port)
        listener.join(1.0)
    if listener.is_alive():
        print("clickhouse: the listener query did not stop; exiting hard", flush=True)
        sys.stdout.flush()
        os._exit(1)
    print("clickhouse: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve ClickHouse HTTP and native TCP on 127.0.0.1 (chdb).")
    parser.add_argument("--dir", type=Path, required=True, help="working and data directory")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--tcp-port", type=int, required=True)
    args = parser.parse_args(argv)
    return serve(args.dir.resolve(), args.http_port, args.tcp_port)


if __name__ == "__main__":
    sys.exit(main())
