"""`livecommerce demo`: the whole pipeline on this machine, until Ctrl-C.

Starts (or reuses) the local Kafka broker and ClickHouse server, applies the migrations, creates the
topics, then runs a worker, the HTTP collector and simulated phones uploading through it as child
processes, the way they run in production (`--direct`: the generator produces straight to Kafka
instead, as the benchmarks do). Prints where everything is and a status line every few seconds.
Ctrl-C (or SIGTERM) stops the traffic, then the collector, then the worker (which finishes its
checkpoint), then the services it started; services that were already running are left running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from pipeline.errors import UserFacingError
from pipeline.local.cli import local_clickhouse, local_kafka
from pipeline.settings import Settings, redact_url

STATUS_EVERY_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser(
        "demo",
        help="run everything locally: Kafka, ClickHouse, migrations, a worker and generated traffic",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument("--rate", type=float, default=2000, help="generated records per second (default 2000)")
    demo.add_argument(
        "--rooms", type=int, default=500, help="live rooms in the generated traffic (default 500)"
    )
    demo.add_argument("--creators", type=int, default=150, help="creators hosting them (default 150)")
    demo.add_argument("--seed", type=int, default=None, help="traffic seed (default: a new one each run)")
    demo.add_argument(
        "--direct", action="store_true", help="generator straight to Kafka instead of phones -> collector"
    )
    demo.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    started_services = []
    children: list[tuple[str, subprocess.Popen]] = []
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in (local_kafka(settings), local_clickhouse(settings)):
            if service.running_pid() is None:
                print(f"demo: starting {service.name} at {service.endpoint} ...", flush=True)
                service.start()
                started_services.append(service)
            print(f"demo: {service.name} up at {service.endpoint}; log: {service.log_path}")
        _run_cli(["migrate"])
        from pipeline.topics import ensure_topics

        asyncio.run(ensure_topics(settings))
        log_dir = settings.local_dir / "demo"
        log_dir.mkdir(parents=True, exist_ok=True)
        children.append(("worker", _spawn(["worker"], log_dir / "worker.log")))
        _wait_for_worker(settings, children[0][1], log_dir / "worker.log")
        seed = args.seed if args.seed is not None else int(time.time())
        traffic = ["--rate", str(args.rate), "--rooms", str(args.rooms), "--creators", str(args.creators)]
        traffic += ["--seed", str(seed), "--progress-interval", "60"]
        if args.direct:
            children.append(("generator", _spawn(["generate", *traffic], log_dir / "generator.log")))
        else:
            # Every simulated phone is 127.0.0.1 here: the per-address limit would throttle them all as one.
            no_address_limit = {"COLLECTOR_RATE_PER_ADDRESS": "0"}
            children.append(("collector", _spawn(["collector"], log_dir / "collector.log", no_address_limit)))
            _wait_for_collector(settings, children[-1][1], log_dir / "collector.log")
            children.append(("phones", _spawn(["phones", *traffic], log_dir / "phones.log")))
        base = f"http://{settings.web_host}:{settings.web_port}"
        print(
            f"\ndemo: running. Leaderboard page: {base}/   health: {base}/health   metrics: {base}/metrics\n"
            f"demo: ClickHouse for BI: {redact_url(settings.clickhouse_url)} (database "
            f"{settings.clickhouse_database}); logs in {log_dir}\n"
            "demo: press Ctrl-C to stop everything.\n",
            flush=True,
        )
        next_status = time.monotonic()
        while not stopping:
            for name, proc in children:
                if proc.poll() is not None:
                    raise UserFacingError(
                        f"the {name} exited with code {proc.returncode}; see {log_dir}/{name}.log"
                    )
            if time.monotonic() >= next_status:
                print(f"demo: {_status_line(base)}", flush=True)
                next_status += STATUS_EVERY_S
            time.sleep(0.2)
        print("\ndemo: stopping ...", flush=True)
        return 0
    finally:
        for name, proc in reversed(children):
            _stop_child(name, proc)
        for service in reversed(started_services):
            service.stop()
            print(f"demo: {service.name} stopped")
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_cli(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", *argv], check=False)
    if result.returncode != 0:
        raise UserFacingError(f"`livecommerce {' '.join(argv)}` failed with exit code {result.returncode}")


def _spawn(argv: list[str], log_path, env: dict[str, str] | None = None) -> subprocess.Popen:
    # Own process group: the terminal's Ctrl-C reaches only the demo, which stops children in order.
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )


def _wait_for_worker(settings: Settings, proc: subprocess.Popen, log_path, timeout_s: float = 90) -> None:
    url = f"http://{settings.web_host}:{settings.web_port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserFacingError(f"the worker exited during start (code {proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    print(f"demo: worker up (pid {proc.pid}); log: {log_path}")
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise UserFacingError(f"the worker did not answer {url} within {timeout_s:.0f} s; see {log_path}")


def _wait_for_collector(settings: Settings, proc: subprocess.Popen, log_path, timeout_s: float = 60) -> None:
    url = f"http://{settings.collector_host}:{settings.collector_port}/health"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserFacingError(
                f"the collector exited during start (code {proc.returncode}); see {log_path}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    print(f"demo: collector up at {url.removesuffix('/health')}/v1/events; log: {log_path}")
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise UserFacingError(f"the collector did not answer {url} within {timeout_s:.0f} s; see {log_path}")


def _stop_child(name: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print(f"demo: {name} stopped (exit code {proc.returncode})")


_EVENTS = re.compile(r'^livecommerce_events_total\{outcome="(\w+)",topic="[^"]*"\} ([0-9.e+]+)$', re.M)


def _status_line(base: str) -> str:
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError as exc:
        return f"worker not answering ({exc})"
    totals: dict[str, float] = {}
    for outcome, value in _EVENTS.findall(text):
        totals[outcome] = totals.get(outcome, 0) + float(value)
    parts = ", ".join(f"{k} {int(v):,}" for k, v in sorted(totals.items()))
    return f"events: {parts or 'none yet'}"
