"""Micro-benchmark: µs per event for decode_message (orjson + contract checks), no Kafka.

Run: .venv/bin/python -m load_tests.bench_decode  (prints one line per case; medians of 5 runs)
Compare with the cost figures in docs/domain.md: orjson alone ~0.41 µs/event,
decode+checks+count budget ~1.3 µs/event.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import orjson

from pipeline.events import contract as c
from pipeline.events.decode import decode_message
from pipeline.events.dedup import Deduplicator

NOW = 1_731_290_000_000
ROOM = 7301234567890123456
KEY = str(ROOM).encode()


def _view(i: int) -> dict[str, object]:
    return {
        "event_id": f"9f0c2a4e-5b1d-4c7e-9a63-{i:012d}",
        "type": "view",
        "ts": NOW - 1000 + i,
        "room_id": ROOM,
        "creator_id": 1041234567,
        "user_id": 58123456789 + i,
        "source": "live_feed",
    }


def _order(i: int) -> dict[str, object]:
    return {
        **_view(i),
        "type": "order",
        "order_id": f"49213456789{i:08d}",
        "product_id": 3612345678901234567,
        "amount_fen": 19900,
        "merchant_id": 112233,
        "category": "美妆",
    }


def _per_event_us(fn: Callable[[], object], events_per_call: int, calls: int) -> float:
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - start) / (calls * events_per_call) * 1e6)
    return statistics.median(runs)


def main() -> None:
    views = orjson.dumps([_view(i) for i in range(100)])
    orders = orjson.dumps([_order(i) for i in range(100)])
    big = orjson.dumps([_view(i) for i in range(5000)])
    single = orjson.dumps(_view(1))
    dedup = Deduplicator(horizon_ms=600_000)
    ids = [(f"9f0c2a4e-5b1d-4c7e-9a63-{i:012d}", NOW + i) for i in range(5 * 1000 * 100)]
    counter = iter(range(10**9))

    def dedup_batch() -> None:  # every id new: the recording path, with expiry as time advances
        base = next(counter) * 100
        for eid, ts in ids[base : base + 100]:
            dedup.is_duplicate(eid, ts)

    print(f"view event {len(single)} B, order event {len(orjson.dumps(_order(1)))} B as JSON")
    cases = [
        ("orjson.loads only, 100-view batch", lambda: orjson.loads(views), 100, 2000),
        (
            "decode_message, 100-view batch",
            lambda: decode_message(views, KEY, c.VIEW_TYPES, NOW, 300_000),
            100,
            2000,
        ),
        (
            "decode_message, 100-order batch",
            lambda: decode_message(orders, KEY, c.ORDER_TYPES, NOW, 300_000),
            100,
            2000,
        ),
        (
            "decode_message, 5000-view batch (~700 KB)",
            lambda: decode_message(big, KEY, c.VIEW_TYPES, NOW, 300_000),
            5000,
            40,
        ),
        (
            "decode_message, single view event",
            lambda: decode_message(single, KEY, c.VIEW_TYPES, NOW, 300_000),
            1,
            200_000,
        ),
        ("Deduplicator.is_duplicate, new ids", dedup_batch, 100, 1000),
    ]
    for name, fn, per_call, calls in cases:
        print(f"{name:45s} {_per_event_us(fn, per_call, calls):6.2f} µs/event")


if __name__ == "__main__":
    main()
