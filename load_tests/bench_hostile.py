"""Benchmark: synchronous CPU per message for hostile input against valid input of the same size.

Times what `StreamRuntime.process_room_batch` does on the event loop for one message, without Kafka:
`RoomPartition.process` (decode, validate, de-duplicate, windows) plus building its dead-letter
envelope. The target (issue 13) is at most 100 ms for any message; a junk message should cost about
what a valid message of its size costs.

Run: .venv/bin/python -m load_tests.bench_hostile [--repeats 20]
Prints, per case: message bytes, events accepted, rejected events, envelope bytes, and the median and
maximum wall time and CPU time (process_time: the part not lost to other processes on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import orjson

from pipeline.events import contract as c
from pipeline.events.deadletter import message_envelope
from pipeline.settings import Settings
from pipeline.stages.rooms import RoomPartition

NOW = 1_731_290_000_000
ROOM = 7301234567890123456
KEY = str(ROOM).encode()


def _view(i: int, **changes: object) -> dict[str, object]:
    ev = {
        "event_id": f"9f0c2a4e-5b1d-4c7e-9a63-{i:012d}",
        "type": "view",
        "ts": NOW - 1000 + i % 1000,
        "room_id": ROOM,
        "creator_id": 1041234567,
        "user_id": 58123456789 + i,
        "source": "live_feed",
    }
    ev.update(changes)
    return ev


def _fill(make: Callable[[int], object], limit: int = c.MAX_MESSAGE_BYTES) -> bytes:
    """A JSON array of make(0), make(1), ... as long as it stays within `limit` bytes and the cap."""
    items: list[object] = []
    size = 1
    while len(items) < c.MAX_BATCH_EVENTS:
        item = make(len(items))
        n = len(orjson.dumps(item)) + 1
        if size + n > limit:
            break
        items.append(item)
        size += n
    return orjson.dumps(items)


def _cases(round_: int) -> list[tuple[str, bytes]]:
    base = round_ * 100_000  # fresh event ids each round: valid events are new, not duplicates
    return [
        ("1 MiB of valid views", _fill(lambda i: _view(base + i))),
        ("1 MiB junk array [0,0,...]", b"[" + b",".join([b"0"] * (c.MAX_MESSAGE_BYTES // 2 - 1)) + b"]"),
        ("1 MiB junk array [{},{},...]", b"[" + b",".join([b"{}"] * (c.MAX_MESSAGE_BYTES // 3 - 1)) + b"]"),
        ("16,384 x {} (at the element cap)", orjson.dumps([{}] * c.MAX_BATCH_EVENTS)),
        ('16,384 x {"type":"x"}', orjson.dumps([{"type": "x"}] * c.MAX_BATCH_EVENTS)),
        ("1 MiB of views, every one bad source", _fill(lambda i: _view(base + i, source="tv"))),
        ("800 KB not UTF-8", b"[" + b"\xff" * 800_000),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    settings = Settings.from_env({})
    part = RoomPartition(settings.topics.views, 0, settings, settings.topic_partitions)
    times: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    shape: dict[str, tuple[int, int, int, int]] = {}
    offset = 0
    for round_ in range(args.repeats):
        for name, value in _cases(round_):
            offset += 1
            started, started_cpu = time.perf_counter(), time.process_time()
            result = part.process(offset, KEY, value, NOW)
            envelope = b""
            if result.rejections:
                envelope = message_envelope(
                    result.rejections, result.rejected_by_reason, "live.views", 0, offset, KEY, NOW
                )
            times.setdefault(name, []).append((time.perf_counter() - started) * 1000)
            cpu.setdefault(name, []).append((time.process_time() - started_cpu) * 1000)
            shape[name] = (len(value), len(result.accepted), result.invalid, len(envelope))
        part.checkpoint()  # as the worker does after each batch: keeps the partition's buffers bounded
    print(f"load average {os.getloadavg()[0]:.1f}, {args.repeats} repeats")
    print(
        f"{'case':38} {'bytes':>9} {'accepted':>8} {'rejected':>8} {'envelope':>8} "
        f"{'wall p50':>8} {'max':>6} {'cpu p50':>7} {'max':>6}  (ms)"
    )
    for name, runs in times.items():
        size, accepted, rejected, envelope = shape[name]
        print(
            f"{name:38} {size:>9,} {accepted:>8,} {rejected:>8,} {envelope:>8,} "
            f"{statistics.median(runs):>8.1f} {max(runs):>6.1f} {statistics.median(cpu[name]):>7.1f} "
            f"{max(cpu[name]):>6.1f}"
        )


if __name__ == "__main__":
    main()
