"""The creator stage as plain code: contributions from the room stage in, creator windows out.

The room stage forwards, per input message, what it added to each window of a room (a partial, see
pipeline.windows.aggregate) through the repartition topic, partitioned by creator, together with its
watermark. Here one `CreatorPartition` owns all creators of one repartition partition, so a creator's
distinct viewers and buyers are exact across its rooms.

Exactly-once without transactions: each window records, per source input partition, the last input
offset applied; a contribution replayed after a room-stage crash is skipped window by window.

Event-time progress: the creator watermark is the lowest watermark among all `expected_sources` (every
input partition), and stays unset until each has been heard from (the room stage sends heartbeats).
A window is final once every source has passed its end; because a source never forwards an event that
is late by its own watermark, nothing can arrive for a window after it was finalised here. Anything
that still does (a source added while running, or one whose persisted event time was corrected back at
restore) is dropped and counted through `on_late` (the worker: `livecommerce_creator_late_events_total`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import orjson

from pipeline.windows import codec
from pipeline.windows.aggregate import CREATOR_KEY, START, WindowAggregator, partial_events
from pipeline.windows.checkpoint import Checkpoint, checkpoint_windows, restore_windows
from pipeline.windows.timing import NO_WATERMARK, is_final

log = logging.getLogger(__name__)


class CreatorPartition:
    def __init__(
        self,
        partition: int,
        window_ms: int,
        expected_sources: int,
        source_prefix: str = "creators",
        on_late: Callable[[int], object] | None = None,
    ):
        self.partition = partition
        self.expected_sources = expected_sources
        self.source = codec.source_name(source_prefix, partition)
        self.windows = WindowAggregator(window_ms)
        self.window_ms = window_ms
        self.source_watermarks: dict[str, int] = {}
        self.on_late = on_late  # called with the number of events dropped as late, when there are any
        self._meta_dirty = False

    @property
    def watermark(self) -> int:
        if len(self.source_watermarks) < self.expected_sources:
            return NO_WATERMARK
        return min(self.source_watermarks.values())

    def apply(self, value: bytes) -> int:
        """Apply one contribution message; returns the number of events applied (replays excluded)."""
        source, source_wm, partials = codec.decode_contribution(value)
        finalised_before = self.watermark
        applied = late = 0
        for offset, parts in partials:
            if finalised_before != NO_WATERMARK:
                kept = []
                for p in parts:
                    if not is_final(p[START], self.window_ms, finalised_before):
                        kept.append(p)
                    else:
                        late += partial_events(p)
                parts = kept
            applied += self.windows.add_partials(parts, CREATOR_KEY, source, offset)
        if late and self.on_late is not None:
            self.on_late(late)
        if source_wm > self.source_watermarks.get(source, NO_WATERMARK):
            self.source_watermarks[source] = source_wm
            self._meta_dirty = True
        return applied

    def checkpoint(self) -> Checkpoint:
        cp = checkpoint_windows(self.windows, self.source, self.watermark)
        if self._meta_dirty:
            cp.state[codec.meta_key(self.source)] = orjson.dumps(self.source_watermarks)
            self._meta_dirty = False
        return cp

    def restore(self, items: Iterable[tuple[bytes, bytes]], max_watermark_ms: int | None = None) -> int:
        """Load this partition's state; returns windows loaded. With `max_watermark_ms` (the highest
        watermark a source can have by the trusted clock: worker clock + skew - lateness), a persisted
        source watermark above it (written before event time was bounded, e.g. after a producer a year
        ahead) is corrected down to it and logged, as the room stage corrects its own: the source's
        lower watermarks would otherwise be ignored here for as long as that time is ahead."""
        loaded, others = restore_windows(self.windows, self.source, items)
        for kind, _rest, value in others:
            if kind == codec.SOURCE_META:
                self.source_watermarks = orjson.loads(value)
        if max_watermark_ms is not None:
            for source, wm in self.source_watermarks.items():
                if wm > max_watermark_ms:
                    log.warning(
                        "creator stage %s: persisted watermark of %s is %.0f s past the trusted clock;"
                        " corrected to %d",
                        self.source, source, (wm - max_watermark_ms) / 1000, max_watermark_ms,
                    )  # fmt: skip
                    self.source_watermarks[source] = max_watermark_ms
                    self._meta_dirty = True
        return loaded
