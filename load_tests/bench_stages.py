"""Micro-benchmark: our own per-record Python, both stages, without Kafka, Faust or ClickHouse.

Run: .venv/bin/python -m load_tests.bench_stages [--records 200000] [--repeats 5]

It generates the stream benchmark's batched traffic (bench_backlog.base_config: seed 7, 200 rooms,
100 creators, simulated linger 60 s), spreads the messages over 6 partitions per input topic the way
the producer does (by key), and then times, per stage and in the worker's order:
- room: `RoomPartition.process` of every message, a checkpoint every 2,000 messages per partition
  (what a backlog batch holds); the raw-event rows the sink writes are built in `process` (the
  "raw rows" line only checks them);
- creator: `CreatorPartition.apply` of every contribution message those checkpoints produced, and its
  checkpoints.
Printed: µs of CPU per record (process_time, so other processes on this shared machine do not count),
median of the repeats. This is the part of the worker's main-thread time that is ours; the rest is
Faust, aiokafka and asyncio (see RESULTS.md).
"""

from __future__ import annotations

import argparse
import statistics
import time
import zlib
from collections import defaultdict
from dataclasses import replace

from load_tests.bench_backlog import base_config
from pipeline.settings import Settings
from pipeline.stages.creators import CreatorPartition
from pipeline.stages.rooms import IngestProcessor
from pipeline.traffic.generator import TrafficModel

PARTITIONS = 6
BATCH_MESSAGES = 2000
START_MS = 1_700_000_000_000


def _messages(records: int) -> tuple[list[tuple[str, int, bytes, bytes, int]], int]:
    model = TrafficModel(replace(base_config(batch_size=100), start_ts_ms=START_MS))
    out = []
    offsets: dict[tuple[str, int], int] = defaultdict(int)
    for msg in model.messages(records):
        # Any stable key -> partition map will do here (the real producer uses murmur2).
        partition = zlib.crc32(msg.key or b"") % PARTITIONS
        offset = offsets[(msg.topic, partition)]
        offsets[(msg.topic, partition)] += 1
        out.append((msg.topic, partition, msg.key, msg.value, offset))
    return out, model.counts.records


def _run(messages, settings: Settings) -> dict[str, float]:
    rooms = IngestProcessor(settings, creator_partitions=PARTITIONS)
    expected = len(settings.topics.inputs) * PARTITIONS
    creators = {p: CreatorPartition(p, settings.window_ms, expected) for p in range(PARTITIONS)}
    now = START_MS + 10**9  # the future-skew check passes
    spent = dict.fromkeys(("room process", "room checkpoint", "raw rows", "creator stage"), 0.0)
    clock = time.process_time
    for start in range(0, len(messages), BATCH_MESSAGES * PARTITIONS):
        batch = messages[start : start + BATCH_MESSAGES * PARTITIONS]
        t0 = clock()
        touched = set()
        for topic, partition, key, value, offset in batch:
            rooms.partition(topic, partition).process(offset, key, value, now)
            touched.add((topic, partition))
        t1 = clock()
        checkpoints = [rooms.partition(*tp).checkpoint() for tp in touched]
        t2 = clock()
        for cp in checkpoints:
            assert all(type(line) is bytes for line in cp.raw_events)  # built in process since 2026-11
        t3 = clock()
        for cp in checkpoints:
            for target, values in cp.forwards.items():
                for value in values:
                    creators[target].apply(value)
        for part in creators.values():
            part.checkpoint()
        t4 = clock()
        spent["room process"] += t1 - t0
        spent["room checkpoint"] += t2 - t1
        spent["raw rows"] += t3 - t2
        spent["creator stage"] += t4 - t3
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    messages, records = _messages(args.records)
    settings = Settings.from_env({"WINDOW_SECONDS": "60"})
    print(f"{len(messages):,} messages, {records:,} records; µs of CPU per record, median of {args.repeats}")
    runs = [_run(messages, settings) for _ in range(args.repeats)]
    total = []
    for name in runs[0]:
        values = [r[name] / records * 1e6 for r in runs]
        print(f"  {name:16s} {statistics.median(values):6.2f}  [{min(values):.2f} – {max(values):.2f}]")
    total = [sum(r.values()) / records * 1e6 for r in runs]
    print(f"  {'total':16s} {statistics.median(total):6.2f}  [{min(total):.2f} – {max(total):.2f}]")


if __name__ == "__main__":
    main()
