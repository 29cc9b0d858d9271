"""De-duplication of client retries by `event_id`, within a horizon of EVENT time.

One `Deduplicator` per input partition (events of one room always share a partition, and a retry is
sent with the same key). State is bounded two ways:

* by time: ids are filed in buckets of event time; when the highest event time seen (or a value passed
  to `advance`) moves past a bucket's end + horizon, the whole bucket is dropped in one step;
* by count: over `max_entries`, the oldest ids are dropped first (counted in `evicted_by_cap`, which
  should stay 0; if it grows, duplicates older than the surviving entries can slip through). The
  worker exports it as `livecommerce_dedup_evicted_total{topic}` and on `/health`
  (`dedup_evicted_by_cap` per partition and in total).

Memory (measured with tracemalloc on CPython 3.11, 200,000 ids): the dict and bucket deques take about
47 bytes per id, and the memory keeps each id's string and ts int alive: about 85 + 32 bytes for a
36-character UUID id, so about 165 bytes per id in all (about 140 for 12-character ids). A partition
holds its event rate times `DEDUP_HORIZON_SECONDS` ids (1,000 events/s over 600 s: 600,000 ids, about
100 MB); the cap, `DEFAULT_MAX_ENTRIES` = 1,000,000 ids per partition, bounds it at about 165 MB per
input partition (times the input partitions a worker owns). Reaching it means a partition takes more
than cap / horizon events per second (1,667/s at the defaults).

Guarantee: a repeat of an event_id whose first copy was recorded and whose `ts` is within `horizon_ms`
of the highest event time seen is reported as a duplicate, unless the cap evicted it.
An event older than that (ts < high-water mark - horizon) cannot be checked: `is_duplicate` returns
False and does not record it. This is harmless when horizon >= window + allowed
lateness (enforced by Settings): the window stage, using the same event-time clock, drops such an event
as late anyway.

Persistence: `DedupChunks` is a memory's durable form, the ids it recorded written as numbered chunks of
at most MAX_IDS_PER_CHUNK (an orjson array [[event_id, ts], ...] each); a chunk is deleted once every
id in it is past the horizon. The caller files the chunks under its own keys (the room stage:
`pipeline.windows.codec.chunk_key`) and persists `next_chunk` with its watermark.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import orjson

DEFAULT_MAX_ENTRIES = 1_000_000  # about 165 MB per partition at 36-char event_ids (see the docstring)
_BUCKETS_PER_HORIZON = 16
# De-duplication ids per chunk: at most ~200 bytes each as JSON (event ids are at most 128 characters),
# so a chunk stays under ~1 MB however many events one checkpoint takes (a backlog's checkpoint can
# hold 100,000 or more).
MAX_IDS_PER_CHUNK = 5_000


class Deduplicator:
    """Remembers recent event_ids per partition. Not thread-safe; one instance per partition."""

    __slots__ = (
        "_bucket_ms",
        "_buckets",
        "_cutoff_bucket",
        "_high",
        "_seen",
        "evicted_by_cap",
        "horizon_ms",
        "max_entries",
    )

    def __init__(self, horizon_ms: int, max_entries: int = DEFAULT_MAX_ENTRIES, bucket_ms: int | None = None):
        if horizon_ms <= 0:
            raise ValueError(f"horizon_ms must be positive, got {horizon_ms}")
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.horizon_ms = horizon_ms
        self.max_entries = max_entries
        self._bucket_ms = bucket_ms or max(1, horizon_ms // _BUCKETS_PER_HORIZON)
        self._seen: dict[str, int] = {}  # event_id -> ts
        # bucket number (ts // bucket_ms) -> ids in arrival order. Python dicts keep insertion order,
        # which is NOT time order for late events, so eviction looks up the minimum bucket explicitly.
        self._buckets: dict[int, deque[str]] = {}
        self._high: int | None = None  # highest event time seen or advanced to
        self._cutoff_bucket: int | None = None  # buckets below this number are expired
        self.evicted_by_cap = 0

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def high_water_ms(self) -> int | None:
        """Highest event time seen or passed to `advance`; None before the first event."""
        return self._high

    def is_duplicate(self, event_id: str, ts: int) -> bool:
        """True if `event_id` was recorded within the horizon; otherwise record it and return False.

        Advances the event-time high-water mark to `ts` first when later (duplicates included), so the
        answer does not depend on whether the event was new. Amortised O(1).
        """
        high = self._high
        if high is None or ts > high:
            self.advance(ts)
            high = ts
        seen = self._seen
        if event_id in seen:
            return True
        if ts < high - self.horizon_ms:
            return False
        seen[event_id] = ts
        b = ts // self._bucket_ms
        bucket = self._buckets.get(b)
        if bucket is None:
            bucket = self._buckets[b] = deque()
        bucket.append(event_id)
        if len(seen) > self.max_entries:
            self._evict_oldest(len(seen) - self.max_entries)
        return False

    def advance(self, event_time_ms: int) -> None:
        """Move the high-water mark forward (never back) and drop buckets wholly past the horizon.

        The worker may call this with a partition watermark so state shrinks while a partition is idle.
        """
        if self._high is not None and event_time_ms <= self._high:
            return
        self._high = event_time_ms
        # A bucket b covers [b*w, (b+1)*w); it may go once its last ms is older than high - horizon.
        cutoff = (event_time_ms - self.horizon_ms) // self._bucket_ms
        if self._cutoff_bucket is not None and cutoff <= self._cutoff_bucket:
            return
        self._cutoff_bucket = cutoff
        buckets = self._buckets
        expired = [b for b in buckets if b < cutoff]
        seen = self._seen
        for b in expired:
            for event_id in buckets.pop(b):
                del seen[event_id]

    def _evict_oldest(self, count: int) -> None:
        buckets = self._buckets
        seen = self._seen
        while count > 0 and buckets:
            b = min(buckets)
            bucket = buckets[b]
            while count > 0 and bucket:
                del seen[bucket.popleft()]
                count -= 1
                self.evicted_by_cap += 1
            if not bucket:
                del buckets[b]

    def snapshot(self) -> list[tuple[str, int]]:
        """All remembered (event_id, ts), oldest bucket first: compact, JSON-able, for `restore`."""
        seen = self._seen
        return [(event_id, seen[event_id]) for b in sorted(self._buckets) for event_id in self._buckets[b]]

    def restore(self, items: Iterable[tuple[str, int]], high_water_ms: int | None = None) -> None:
        """Replace the state with `items` (from `snapshot`, possibly after a JSON round trip).

        The high-water mark becomes `high_water_ms` or, if None, the largest ts among the items; entries
        beyond the horizon are dropped and the cap is applied, as if the items had been seen in order.
        Pairs may be 2-element lists (as JSON gives them back). `evicted_by_cap` is left unchanged.
        """
        evicted = self.evicted_by_cap
        self._seen = {}
        self._buckets = {}
        self._high = None
        self._cutoff_bucket = None
        pairs = [(str(event_id), int(ts)) for event_id, ts in items]
        if high_water_ms is None and pairs:
            high_water_ms = max(ts for _, ts in pairs)
        if high_water_ms is not None:
            self.advance(high_water_ms)
        for event_id, ts in pairs:
            self.is_duplicate(event_id, ts)
        self.evicted_by_cap = evicted


class DedupChunks:
    """The durable form of one partition's `Deduplicator`, written at every checkpoint.

    The caller appends every id the memory recorded to `new_ids` (the room stage does it in its hot loop,
    where a method call per event would cost); `take_changes` turns them into new chunks and deletes the
    chunks wholly past the horizon; `restore` rebuilds the memory from the stored chunks."""

    __slots__ = ("_chunks", "dedup", "ids_per_chunk", "new_ids", "next_chunk")

    def __init__(self, dedup: Deduplicator, ids_per_chunk: int = MAX_IDS_PER_CHUNK):
        self.dedup = dedup
        self.ids_per_chunk = ids_per_chunk
        self.new_ids: list[tuple[str, int]] = []
        self.next_chunk = 0  # the number of the next chunk written (persisted by the caller)
        self._chunks: dict[int, int] = {}  # chunk number -> highest ts in it

    def take_changes(self) -> dict[int, bytes | None]:
        """Chunk number -> its value, or None to delete it: the ids recorded since the last call, cut into
        chunks, then the chunks whose newest id the memory no longer holds."""
        changes: dict[int, bytes | None] = {}
        new_ids, self.new_ids = self.new_ids, []
        step = self.ids_per_chunk
        for start in range(0, len(new_ids), step):
            ids = new_ids[start : start + step]
            chunk = self.next_chunk
            self.next_chunk += 1
            changes[chunk] = orjson.dumps(ids)
            self._chunks[chunk] = max(ts for _, ts in ids)
        high = self.dedup.high_water_ms
        if high is not None:
            for chunk in [c for c, top in self._chunks.items() if top < high - self.dedup.horizon_ms]:
                del self._chunks[chunk]
                changes[chunk] = None
        return changes

    def restore(
        self,
        chunks: Iterable[tuple[int, bytes]],
        next_chunk: int,
        event_time_ms: int | None,
        limit_ms: int | None = None,
    ) -> None:
        """Rebuild the memory from stored (chunk number, value) pairs. Its high-water mark becomes the
        partition's event time (None: none yet, then no high-water mark) or the newest id, whichever is
        later, but at most `limit_ms`: ids of far-future events must not age out all the others."""
        self.next_chunk = next_chunk
        ids: list[tuple[str, int]] = []
        for number, value in chunks:
            chunk_ids = orjson.loads(value)
            self._chunks[number] = max(ts for _, ts in chunk_ids)
            ids.extend(chunk_ids)
        if not ids:
            return
        ids.sort(key=lambda pair: pair[1])
        high = None if event_time_ms is None else max(event_time_ms, ids[-1][1])
        if high is not None and limit_ms is not None:
            high = min(high, limit_ms)
        self.dedup.restore(ids, high_water_ms=high)
