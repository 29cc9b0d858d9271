"""Deduplicator: duplicates within the event-time horizon, expiry, the entry cap, snapshot/restore."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events.dedup import DedupChunks, Deduplicator

MIN = 60_000
T0 = 1_731_290_000_000


def test_repeat_within_horizon_is_a_duplicate() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    assert d.is_duplicate("e-1", T0) is False
    assert d.is_duplicate("e-2", T0 + 1) is False
    assert d.is_duplicate("e-1", T0) is True
    assert d.is_duplicate("e-1", T0 + 5 * MIN) is True  # the id decides, not the ts
    assert len(d) == 2


def test_retry_arriving_late_but_within_horizon_is_caught() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    d.is_duplicate("e-1", T0)
    d.is_duplicate("e-2", T0 + 10 * MIN)  # high-water mark now exactly one horizon later
    assert d.is_duplicate("e-1", T0) is True


def test_entries_expire_once_the_high_water_mark_passes_the_horizon() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    for i in range(100):
        d.is_duplicate(f"old-{i}", T0 + i)
    d.is_duplicate("new", T0 + 12 * MIN)
    assert len(d) == 1
    assert d.is_duplicate("new", T0 + 12 * MIN) is True


def test_event_older_than_the_horizon_is_not_checked_nor_recorded() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    d.is_duplicate("now", T0 + 30 * MIN)
    assert d.is_duplicate("ancient", T0) is False
    assert d.is_duplicate("ancient", T0) is False  # documented: not a duplicate, the window drops it late
    assert len(d) == 1


def test_advance_expires_an_idle_partition_and_never_moves_back() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    d.is_duplicate("e-1", T0)
    d.advance(T0 + 5 * MIN)
    assert len(d) == 1
    d.advance(T0 + 20 * MIN)
    assert len(d) == 0
    d.advance(T0)
    assert d.high_water_ms == T0 + 20 * MIN


def test_out_of_order_events_within_horizon_are_all_kept() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    for i, offset in enumerate([5, 0, 9, 1, 7, 3]):
        assert d.is_duplicate(f"e-{i}", T0 + offset * MIN) is False
    assert len(d) == 6
    assert all(d.is_duplicate(f"e-{i}", 0) for i in range(6))


def test_cap_bounds_memory_and_evicts_the_oldest_first() -> None:
    d = Deduplicator(horizon_ms=10 * MIN, max_entries=1000)
    for i in range(5000):
        d.is_duplicate(f"e-{i}", T0 + i)  # all within the horizon: only the cap limits them
        assert len(d) <= 1000
    assert d.evicted_by_cap == 4000
    assert d.is_duplicate("e-4999", T0 + 4999) is True
    assert d.is_duplicate("e-0", T0) is False  # evicted: the documented cost of the safety bound


def test_snapshot_restore_round_trip_through_json() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    for i in range(50):
        d.is_duplicate(f"e-{i}", T0 + (i * 7919) % (9 * MIN))
    stored = orjson.dumps(d.snapshot())
    e = Deduplicator(horizon_ms=10 * MIN)
    e.restore(orjson.loads(stored))
    assert len(e) == 50
    assert all(e.is_duplicate(f"e-{i}", T0) for i in range(50))
    assert e.high_water_ms == d.high_water_ms
    assert sorted(e.snapshot()) == sorted(d.snapshot())


def test_restore_applies_horizon_and_cap_and_replaces_state() -> None:
    e = Deduplicator(horizon_ms=10 * MIN, max_entries=3)
    e.is_duplicate("stale-state", T0)
    items = [
        ("old", T0),
        ("a", T0 + 20 * MIN),
        ("b", T0 + 21 * MIN),
        ("c", T0 + 22 * MIN),
        ("d", T0 + 23 * MIN),
    ]
    e.restore(items)
    assert sorted(eid for eid, _ in e.snapshot()) == ["b", "c", "d"]
    assert e.is_duplicate("stale-state", T0 + 23 * MIN) is False


def test_restore_with_explicit_high_water_mark() -> None:
    e = Deduplicator(horizon_ms=10 * MIN)
    e.restore([("a", T0), ("b", T0 + 5 * MIN)], high_water_ms=T0 + 14 * MIN)
    assert [eid for eid, _ in e.snapshot()] == ["b"]


def test_snapshot_is_oldest_first() -> None:
    d = Deduplicator(horizon_ms=10 * MIN, bucket_ms=MIN)
    for eid, ts in [("c", T0 + 3 * MIN), ("a", T0 + MIN), ("b", T0 + 2 * MIN)]:
        d.is_duplicate(eid, ts)
    assert [eid for eid, _ in d.snapshot()] == ["a", "b", "c"]


@pytest.mark.parametrize(("horizon", "cap"), [(0, 10), (10, 0)])
def test_bad_arguments(horizon: int, cap: int) -> None:
    with pytest.raises(ValueError):
        Deduplicator(horizon_ms=horizon, max_entries=cap)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.integers(0, 40 * MIN)), max_size=200),
    st.integers(1, 20 * MIN),
)
def test_matches_a_reference_model_without_cap(stream: list[tuple[int, int]], horizon: int) -> None:
    """Exact for ids that are still within the horizon; expired ones may be remembered up to one bucket."""
    d = Deduplicator(horizon_ms=horizon, bucket_ms=1)  # 1 ms buckets: expiry is exact
    first_ts: dict[str, int] = {}
    high: int | None = None
    for n, offset in stream:
        eid, ts = f"e-{n}", T0 + offset
        high = ts if high is None else max(high, ts)
        live = {k: v for k, v in first_ts.items() if v >= high - horizon}
        expected = eid in live
        if not expected and ts >= high - horizon:
            live[eid] = ts
        first_ts = live
        assert d.is_duplicate(eid, ts) is expected, (eid, ts)
        assert len(d) == len(first_ts)


def test_chunks_round_trip_and_are_deleted_once_past_the_horizon() -> None:
    d = Deduplicator(horizon_ms=10 * MIN)
    chunks = DedupChunks(d, ids_per_chunk=2)
    for i in range(3):
        assert d.is_duplicate(f"e-{i}", T0 + i) is False
        chunks.new_ids.append((f"e-{i}", T0 + i))
    changes = chunks.take_changes()
    assert [orjson.loads(v) for v in changes.values()] == [[["e-0", T0], ["e-1", T0 + 1]], [["e-2", T0 + 2]]]
    assert chunks.next_chunk == 2 and chunks.take_changes() == {}
    restored = DedupChunks(Deduplicator(horizon_ms=10 * MIN))
    restored.restore(changes.items(), next_chunk=2, event_time_ms=T0 + 2)
    assert restored.dedup.is_duplicate("e-1", T0 + 1) and restored.next_chunk == 2
    # Once the high-water mark passes a chunk's newest id by the horizon, the chunk is deleted.
    d.advance(T0 + 1 + 10 * MIN + 1)
    assert chunks.take_changes() == {0: None}
