"""Load test of one collector process with wrk on loopback (see load_tests/RESULTS.md).

    .venv/bin/python -m load_tests.bench_collector [--duration 30] [--connections 64] [--events 5]
    .venv/bin/python -m load_tests.bench_collector --bare [--duration 10] [--connections 64]

`--worker` also starts a local ClickHouse and one `livecommerce worker` consuming the collector's topics
(its own consumer group, topics and database) and reports the worker's accepted events/s from its
/metrics during the wrk run, and how long after wrk it took to catch up.
`--bare` measures the ceiling instead: a bare aiohttp app whose POST handler reads and parses the same
body and answers a small JSON (no Kafka, no validation), under the same wrk script and connections,
once on asyncio's default loop and once on uvloop, back to back in one run.

Starts a private single-node Kafka broker (temporary directory, free ports, the project's jars), creates
the topics, starts `livecommerce collector` (rate limits off: every wrk connection is 127.0.0.1), runs
`wrk -t1 --latency -s load_tests/collector.lua`, then reads the collector's /metrics for the events per
Kafka message. Prints a summary; everything it started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from pipeline.local.kafka import LocalKafka
from pipeline.local.kafka_jars import default_lib_dir
from pipeline.local.process import find_free_port
from pipeline.settings import Settings
from pipeline.topics import ensure_topics

HERE = Path(__file__).resolve().parent


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def _bare_upload(request):
    import orjson
    from aiohttp import web

    items = orjson.loads(await request.read())
    return web.Response(
        body=orjson.dumps({"accepted": len(items), "rejected": 0}), content_type="application/json"
    )


def serve_bare(port: int, loop_name: str) -> None:
    """The ceiling: aiohttp with the collector's server options and a handler that does no work."""
    from aiohttp import web

    async def health(_request):
        return web.Response(text="ok")

    app = web.Application(handler_args={"auto_decompress": False})
    app.router.add_post("/v1/events", _bare_upload)
    app.router.add_get("/health", health)
    loop = None
    if loop_name == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, loop=loop)


def _wait_health(base: str) -> None:
    for _ in range(100):
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)


def _wrk(args: argparse.Namespace, base: str) -> tuple[list[str], str]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency",
           "-s", str(HERE / "collector.lua"), base + "/v1/events"]  # fmt: skip
    wrk_env = {**os.environ, "EVENTS": str(args.events), "ROOMS": str(args.rooms)}
    return cmd, subprocess.run(cmd, env=wrk_env, capture_output=True, text=True, check=False).stdout


def bare(args: argparse.Namespace) -> int:
    for loop_name in ("asyncio", "uvloop"):
        port = find_free_port()
        argv = [
            sys.executable,
            "-m",
            "load_tests.bench_collector",
            "--serve-bare",
            str(port),
            "--loop",
            loop_name,
        ]
        server = subprocess.Popen(argv)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_health(base)
            load_before = os.getloadavg()[0]
            cpu_before = _cpu_seconds(server.pid)
            started = time.monotonic()
            cmd, out = _wrk(args, base)
            elapsed = time.monotonic() - started
            cpu = _cpu_seconds(server.pid) - cpu_before
            print(f"== bare aiohttp, {loop_name} loop")
            print("$ " + " ".join(cmd) + f"   (EVENTS={args.events} ROOMS={args.rooms})")
            print(out)
            print(f"server CPU {cpu / elapsed:.2f} cores; load average before {load_before:.2f}, "
                  f"after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--events", type=int, default=5, help="events per request")
    ap.add_argument("--rooms", type=int, default=1000)
    ap.add_argument("--linger-ms", type=int, default=50)
    ap.add_argument("--bare", action="store_true", help="the ceiling: bare aiohttp, asyncio vs uvloop")
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                    help="the collector's loop; auto: uvloop if installed")  # fmt: skip
    ap.add_argument("--worker", action="store_true", help="also run a worker behind the collector")
    ap.add_argument("--partitions", type=int, default=4, help="input topic partitions (with --worker)")
    ap.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.loop)
        return 0
    if shutil.which("wrk") is None:
        print("bench_collector: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    if args.bare:
        return bare(args)
    work = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    broker = LocalKafka(directory=work / "kafka", lib_dir=default_lib_dir(Settings.from_env().local_dir),
                        port=find_free_port(), controller_port=find_free_port(), tied=True)  # fmt: skip
    collector = clickhouse = worker = None
    try:
        broker.start()
        port = find_free_port()
        worker_env: dict[str, str] = {}
        if args.worker:
            from load_tests.bench_backlog import isolated_env
            from load_tests.bench_worker import migrate
            from pipeline.local.clickhouse import LocalClickHouse

            clickhouse = LocalClickHouse(work / "clickhouse", http_port=find_free_port(),
                                         tcp_port=find_free_port(), tied=True)  # fmt: skip
            clickhouse.start()
            services = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "CLICKHOUSE_URL": clickhouse.url}
            worker_env = isolated_env(services, work, None, args.partitions)
            migrate(worker_env)
        env = {**os.environ, **worker_env, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
               "COLLECTOR_PORT": str(port),
               "COLLECTOR_RATE_PER_ADDRESS": "0", "COLLECTOR_RATE_PER_KEY": "0",
               "COLLECTOR_LINGER_MS": str(args.linger_ms), "LOG_LEVEL": "warning",
               "COLLECTOR_EVENT_LOOP": args.loop}  # fmt: skip
        asyncio.run(ensure_topics(Settings.from_env(env)))
        log = (work / "collector.log").open("wb")
        collector = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "collector"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        _wait_health(base)
        if args.worker:
            from load_tests.bench_worker import start_worker

            worker = start_worker(worker_env, work / "worker.log")
            worker_url = f"http://127.0.0.1:{worker_env['WEB_PORT']}/metrics"
            worker_before = _worker_accepted(worker_url)
        load_before = os.getloadavg()[0]
        cpu_before = _cpu_seconds(collector.pid)
        started = time.monotonic()
        cmd, out = _wrk(args, base)
        elapsed = time.monotonic() - started
        cpu = _cpu_seconds(collector.pid) - cpu_before
        if worker is not None:
            worker_during = _worker_accepted(worker_url) - worker_before
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
        accepted = metric(text, 'livecommerce_collector_events_total{outcome="accepted"}')
        messages = metric(text, "livecommerce_collector_batch_events_count")
        batched = metric(text, "livecommerce_collector_batch_events_sum")
        print("$ " + " ".join(cmd) + f"   (EVENTS={args.events} ROOMS={args.rooms} loop={args.loop})")
        print(out)
        rate = accepted / elapsed
        print(
            f"collector: {accepted:,.0f} events accepted in {elapsed:.1f} s = {rate:,.0f} events/s; "
            f"{messages:,.0f} Kafka messages, {batched / max(messages, 1):.1f} events per message; "
            f"collector CPU {cpu / elapsed:.2f} cores; load average before {load_before:.2f}, "
            f"after {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
        )
        produce_sum = metric(text, "livecommerce_collector_produce_seconds_sum")
        produce_n = metric(text, "livecommerce_collector_produce_seconds_count")
        print(f"produce to ack mean {1000 * produce_sum / max(produce_n, 1):.1f} ms")
        if worker is not None:
            waited = time.monotonic()
            while _worker_accepted(worker_url) - worker_before < accepted and time.monotonic() - waited < 120:
                time.sleep(0.5)
            behind = accepted - (_worker_accepted(worker_url) - worker_before)
            print(f"worker: {worker_during:,.0f} events accepted during the {elapsed:.1f} s of wrk = "
                  f"{worker_during / elapsed:,.0f} events/s; caught up {time.monotonic() - waited:.1f} s "
                  f"after wrk ended ({behind:,.0f} events still behind)")  # fmt: skip
        return 0
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(30)
        if worker is not None:
            worker.stop()
        if clickhouse is not None:
            clickhouse.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _worker_accepted(url: str) -> float:
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(v)
        for v in re.findall(r'^livecommerce_events_total\{[^}]*outcome="accepted"[^}]*\} (\S+)$', text, re.M)
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
