"""Stream benchmark: what one worker sustains, Kafka to aggregates visible in ClickHouse, and at what latency.

Run: .venv/bin/python -m load_tests.bench_pipeline            (figures in load_tests/RESULTS.md)

Starts its own Kafka broker and ClickHouse server on free ports in a temporary directory (tied to this
process), pre-fills four backlogs of generator traffic (seed 7, 200 rooms, event times from 30 minutes
ago): `batched` (100 events per message at most, the generator's default shape), `single` (one event
per message), `even` (batched, every room equally busy) and `hot` (batched, one room carries 50% of
the records, the others equal). Then, `--repeats` times, side by side in one run:

- ceiling: a bare aiokafka consumer + orjson over the batched and the single backlog (bench_backlog);
- the real worker over the batched, single, even and hot backlogs, records/s until both public window
  views hold every accepted event (bench_worker);
- naive Faust (load_tests/naive_faust.py) over the single backlog (bench_worker);
- latency p50/p99, production to visibility, with live traffic at half the rate the worker sustained
  in this repeat, batched and single (bench_latency).
Ratios are taken within a repeat, then the median and range over the repeats are printed. Finally the
worker runs once more, sampled by py-spy (or under cProfile with `--profiler cprofile`; bench_profile
summarises either) over `--profile-scenario` (default `even`: batched messages, and a backlog the
worker can finish), unless --no-profile. `--repeats 0` only profiles.
Records are everything sent: distinct events, duplicate re-sends and invalid messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from load_tests.bench_backlog import Backlog, Scenario, base_config, ceiling_rate, produce_backlog
from load_tests.bench_latency import measure_latency
from load_tests.bench_profile import summarise, summarise_samples
from load_tests.bench_worker import WorkerRates, naive_rate, worker_rate
from pipeline.local.clickhouse import LocalClickHouse
from pipeline.local.kafka import LocalKafka
from pipeline.local.kafka_jars import default_lib_dir
from pipeline.local.process import find_free_port
from pipeline.settings import Settings


def scenarios(batched: int, single: int) -> list[Scenario]:
    return [
        Scenario("batched", base_config(100), batched),
        Scenario("single", base_config(1), single),
        Scenario("even", base_config(100, zipf_s=0.0), batched),
        Scenario("hot", base_config(100, zipf_s=0.0, hot_room_share=0.5), batched),
    ]


def _worker(r: dict[str, float], name: str, rates: WorkerRates) -> float:
    """Record the room-view rate under `rooms_<name>`, print a failure, return the full rate."""
    r[f"rooms_{name}"] = rates.rooms
    if rates.failure:
        print(f"  worker on {name} FAILED (room view complete at {rates.rooms:,.0f}/s): {rates.failure}")
    return rates.full


def run_repeat(services: dict, workdir: Path, backlogs: dict[str, Backlog], args) -> dict[str, float]:
    bootstrap, parts = services["KAFKA_BOOTSTRAP_SERVERS"], args.partitions
    r: dict[str, float] = {}

    def step(key: str, measure) -> None:
        started = time.monotonic()
        r[key] = measure()
        print(f"  {key}: {r[key]:,.0f} records/s ({time.monotonic() - started:.0f} s)", flush=True)

    step("ceiling_batched", lambda: asyncio.run(ceiling_rate(bootstrap, backlogs["batched"])))
    step(
        "worker_batched",
        lambda: _worker(r, "batched", worker_rate(services, workdir, backlogs["batched"], parts)),
    )
    step("ceiling_single", lambda: asyncio.run(ceiling_rate(bootstrap, backlogs["single"])))
    step(
        "worker_single",
        lambda: _worker(r, "single", worker_rate(services, workdir, backlogs["single"], parts)),
    )
    step("naive_single", lambda: naive_rate(services, workdir, backlogs["single"], parts))
    step("worker_even", lambda: _worker(r, "even", worker_rate(services, workdir, backlogs["even"], parts)))
    step("worker_hot", lambda: _worker(r, "hot", worker_rate(services, workdir, backlogs["hot"], parts)))
    for name in ("batched", "single"):
        cfg = backlogs[name].scenario.config
        # Half the full rate; half the room-view rate when the worker could not finish the backlog.
        sustained = r[f"worker_{name}"] if not math.isnan(r[f"worker_{name}"]) else r[f"rooms_{name}"]
        lat = measure_latency(services, workdir, cfg, sustained / 2, args.latency_seconds, parts)
        for key, value in asdict(lat).items():
            r[f"latency_{name}_{key}"] = value
    r["batched_vs_ceiling"] = r["worker_batched"] / r["ceiling_batched"]
    r["batched_vs_naive"] = r["worker_batched"] / r["naive_single"]
    r["single_vs_naive"] = r["worker_single"] / r["naive_single"]
    r["single_vs_ceiling"] = r["worker_single"] / r["ceiling_single"]
    r["hot_vs_even"] = r["worker_hot"] / r["worker_even"]
    r["rooms_batched_vs_ceiling"] = r["rooms_batched"] / r["ceiling_batched"]
    r["rooms_batched_vs_naive"] = r["rooms_batched"] / r["naive_single"]
    r["rooms_hot_vs_even"] = r["rooms_hot"] / r["rooms_even"]
    print("repeat: " + json.dumps({k: round(v, 3) for k, v in r.items()}), flush=True)
    return r


def report(repeats: list[dict[str, float]]) -> str:
    lines = ["| figure | median | range |", "| --- | ---: | ---: |"]
    for key in repeats[0]:
        values = [r[key] for r in repeats if not math.isnan(r[key])]
        if not values:
            lines.append(f"| {key} | failed | |")
            continue
        fmt = "{:,.0f}" if max(values) >= 100 else "{:.3f}"
        median = fmt.format(statistics.median(values))
        lines.append(f"| {key} | {median} | {fmt.format(min(values))} – {fmt.format(max(values))} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Large enough that filling and draining the checkpoint pipeline (a few seconds) do not dominate.
    p.add_argument("--events", type=int, default=600_000, help="records per batched backlog")
    p.add_argument("--single-events", type=int, default=12_000, help="records in the single-event backlog")
    p.add_argument("--partitions", type=int, default=6, help="TOPIC_PARTITIONS of every topic")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--latency-seconds", type=float, default=10.0, help="duration of each live latency run")
    p.add_argument("--no-profile", action="store_true", help="skip the profiled run")
    p.add_argument(
        "--profiler",
        default="py-spy",
        choices=("py-spy", "cprofile"),
        help="py-spy samples every thread at full speed; cProfile counts calls but slows the worker",
    )
    p.add_argument(
        "--profile-scenario",
        default="even",
        choices=("batched", "single", "even", "hot"),
        help="backlog of the profiled run (default even: it is batched, and the worker can finish it)",
    )
    p.add_argument("--json", type=Path, help="also write every repeat's figures to this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs) afterwards")
    args = p.parse_args(argv)
    # Fresh topics answer "not leader" for a moment; aiokafka retries, and would log each retry.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    workdir = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    kafka = LocalKafka(
        workdir / "kafka",
        lib_dir=default_lib_dir(Settings.from_env().local_dir),
        port=find_free_port(),
        controller_port=find_free_port(),
        tied=True,
    )
    clickhouse = LocalClickHouse(
        workdir / "clickhouse", http_port=find_free_port(), tcp_port=find_free_port(), tied=True
    )
    try:
        kafka.start()
        clickhouse.start()
        services = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "CLICKHOUSE_URL": clickhouse.url}
        backlogs = {}
        for scenario in scenarios(args.events, args.single_events):
            if not args.repeats and scenario.name != args.profile_scenario:
                continue
            backlogs[scenario.name] = backlog = asyncio.run(
                produce_backlog(services, workdir, scenario, args.partitions)
            )
            c = backlog.counts
            print(
                f"backlog {scenario.name}: {c.records:,} records in {c.messages:,} messages "
                f"({c.records / c.messages:.1f} per message), {c.events:,} distinct valid events",
                flush=True,
            )
        repeats = [run_repeat(services, workdir, backlogs, args) for _ in range(args.repeats)]
        if repeats:
            print(report(repeats))
        if args.json:
            args.json.write_text(json.dumps(repeats, indent=1))
        if not args.no_profile:
            suffix = ".collapsed" if args.profiler == "py-spy" else ".prof"
            profile, backlog = workdir / f"worker{suffix}", backlogs[args.profile_scenario]
            rates = worker_rate(services, workdir, backlog, args.partitions, profile_to=profile)
            print(f"profiled worker on {args.profile_scenario}: {rates}")
            if args.profiler == "py-spy":
                print(summarise_samples(profile, backlog.counts.records))
            else:
                print(summarise(profile, backlog.counts.records))
    finally:
        clickhouse.stop()
        kafka.stop()
        if args.keep:
            print(f"logs and data kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
