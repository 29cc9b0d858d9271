"""Processes the stream benchmark measures: the real worker and the naive Faust app, each on a backlog.

Real worker (`worker_rate`): `python -m pipeline.cli worker` with an isolated environment (own consumer
group, output topics, ClickHouse database and state directory) reading a pre-filled backlog. Its rate
is records / seconds from "ready" (its /health reports assigned partitions) until BOTH public views
show every accepted event: `sum(views + clicks + orders + refunds)` of `room_window_stats` and of
`creator_window_stats` each equal the generator's count of distinct valid events. That is Kafka to
aggregates visible in ClickHouse, through the room stage, the repartition topic and the creator stage.
The rate until the room view alone is complete is reported too; when the worker stops making progress
for STALL_S seconds the full rate is NaN and the last error of its log is kept.

Naive Faust (`naive_rate`): `load_tests.naive_faust` on the single-event backlog; its rate is messages /
seconds between the first and the last message its agent handled (start-up excluded, which only
flatters the baseline).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import clickhouse_connect

from load_tests.bench_backlog import Backlog, isolated_env
from pipeline.local.process import find_free_port

POLL_S = 0.1
STALL_S = 15.0  # no progress in the views for this long while events are missing: the worker is stuck


TOTALS_SQL = (
    "SELECT (SELECT sum(views) + sum(clicks) + sum(orders) + sum(refunds) FROM {db}.room_window_stats), "
    "(SELECT sum(views) + sum(clicks) + sum(orders) + sum(refunds) FROM {db}.creator_window_stats)"
)


class Child:
    """One subprocess with its output in `log_path`; stopped by its own pid only."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
            )
        self.sampler: subprocess.Popen | None = None

    def sample_to(self, path: Path) -> None:
        """Attach py-spy: it samples every thread without slowing the worker (cProfile roughly doubles
        the cost of code that makes many small calls, and sees the main thread only), and writes
        collapsed stacks to `path` when the worker exits."""
        spy = Path(sys.executable).with_name("py-spy")
        argv = [str(spy), "record", "--pid", str(self.proc.pid), "--threads", "--format", "raw",
                "--rate", "200", "--nonblocking", "--output", str(path)]  # fmt: skip
        self.sampler = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.log_path.name} exited with {self.proc.returncode}:\n{tail}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.sampler is not None:
            self.sampler.wait(60)  # py-spy writes its file once the process it samples is gone


def migrate(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "migrate"],
        env={**os.environ, **env},
        check=True,
        capture_output=True,
        timeout=120,
    )


def start_worker(env: dict[str, str], log_path: Path, profile_to: Path | None = None) -> Child:
    """Start the worker and return once it has partitions (its /health says so)."""
    sampled = profile_to is not None and profile_to.suffix == ".collapsed"
    profiler = ["-m", "cProfile", "-o", str(profile_to)] if profile_to and not sampled else []
    worker = Child([sys.executable, *profiler, "-m", "pipeline.cli", "worker"], env, log_path)
    if sampled:
        worker.sample_to(profile_to)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{env['WEB_PORT']}/health"
    while time.monotonic() < deadline:
        worker.check_alive()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read())["consumer"]["assigned_partitions"] > 0:
                    return worker
        except OSError:
            pass
        time.sleep(0.05)
    worker.stop()
    raise RuntimeError(f"worker did not get partitions within 120 s; see {log_path}")


class Totals:
    """Reads the accepted-event totals of the room and creator views of one database."""

    def __init__(self, env: dict[str, str]):
        port = int(env["CLICKHOUSE_URL"].rsplit(":", 1)[1])
        self.client = clickhouse_connect.get_client(host="127.0.0.1", port=port)
        self.sql = TOTALS_SQL.format(db=env["CLICKHOUSE_DATABASE"])

    def read(self) -> tuple[int, int]:
        rooms, creators = self.client.query(self.sql).result_rows[0]
        return int(rooms or 0), int(creators or 0)

    def close(self) -> None:
        self.client.close()


@dataclass
class WorkerRates:
    """Records per second until the room view, and until both views, held every accepted event.
    `full` is NaN when the worker got stuck before the creator view was complete (`failure` says why)."""

    rooms: float
    full: float
    failure: str | None = None


def worker_rate(
    services: dict[str, str], workdir: Path, backlog: Backlog, partitions: int, profile_to: Path | None = None
) -> WorkerRates:
    """Rates of one real worker over `backlog`, Kafka to the room view and to both views complete."""
    env = isolated_env(services, workdir, backlog.topics, partitions)
    migrate(env)
    expected = backlog.counts.events
    totals = Totals(env)
    worker = start_worker(env, workdir / f"worker-{env['APP_ID']}.log", profile_to)
    rooms_done, failure = math.nan, None
    try:
        started = progressed = time.perf_counter()
        seen = (0, 0)
        while seen != (expected, expected):
            worker.check_alive()
            time.sleep(POLL_S)
            now, before, seen = time.perf_counter(), seen, totals.read()
            if seen != before:
                progressed = now
            if seen[0] == expected and math.isnan(rooms_done):
                rooms_done = now - started
            if now - progressed > STALL_S or max(seen) > expected:
                failure = f"totals {seen} of {expected}: {_last_error(worker.log_path)}"
                break
        elapsed = math.nan if failure else time.perf_counter() - started
    finally:
        worker.stop()
        # Its tables would keep ClickHouse busy merging while the next measurement runs on this machine.
        totals.client.command(f"DROP DATABASE IF EXISTS {env['CLICKHOUSE_DATABASE']} SYNC")
        totals.close()
    records = backlog.counts.records
    return WorkerRates(records / rooms_done, records / elapsed, failure)


def _last_error(log_path: Path) -> str:
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if "Error" in line]
    return lines[-1].strip()[:300] if lines else f"no error logged (see {log_path})"


def naive_rate(services: dict[str, str], workdir: Path, backlog: Backlog, partitions: int) -> float:
    """Messages per second of the naive Faust app over the (single-event) backlog."""
    tag = f"naive{os.getpid()}{int(time.time() * 1000) % 10**8}"
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services["KAFKA_BOOTSTRAP_SERVERS"],
        "NAIVE_APP_ID": tag,
        "NAIVE_TOPICS": ",".join(backlog.inputs),
        "NAIVE_EXPECTED": str(backlog.counts.messages),
        "NAIVE_DATADIR": str(workdir / tag),
        "WEB_PORT": str(find_free_port()),
        "TOPIC_PARTITIONS": str(partitions),
    }
    log_path = workdir / f"{tag}.log"
    app = Child([sys.executable, "-m", "load_tests.naive_faust", "worker", "-l", "warn"], env, log_path)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            app.check_alive()
            done = re.search(r"NAIVE_DONE messages=(\d+) first=([\d.]+) last=([\d.]+)", log_path.read_text())
            if done:
                messages, first, last = int(done[1]), float(done[2]), float(done[3])
                return messages / (last - first)
            time.sleep(0.2)
        raise RuntimeError(f"naive Faust did not finish within 600 s; see {log_path}")
    finally:
        app.stop()
