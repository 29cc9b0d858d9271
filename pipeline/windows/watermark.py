"""Event-time progress per input partition.

Faust has no watermarks, so they are built here explicitly. A partition's watermark is the highest
event time seen on it minus the allowed lateness; it never moves backwards. An event is *late* when
its tumbling window ended at or before the watermark: the window's final value may already be
written, so applying the event would change a number ops have seen as final.

Windows are aligned to the epoch: window_start = ts - ts % size.
"""

from __future__ import annotations

NO_WATERMARK = -(2**63)


def window_start(ts_ms: int, size_ms: int) -> int:
    return ts_ms - ts_ms % size_ms


class Watermark:
    """Watermark of one partition. Not thread-safe; one per partition per worker."""

    __slots__ = ("lateness_ms", "max_event_ms", "size_ms")

    def __init__(self, size_ms: int, lateness_ms: int, max_event_ms: int = NO_WATERMARK):
        self.size_ms = size_ms
        self.lateness_ms = lateness_ms
        self.max_event_ms = max_event_ms

    @property
    def value(self) -> int:
        """Event time up to which windows are complete; NO_WATERMARK before the first event."""
        if self.max_event_ms == NO_WATERMARK:
            return NO_WATERMARK
        return self.max_event_ms - self.lateness_ms

    def is_late(self, ts_ms: int) -> bool:
        """True when the event's window ended at or before the current watermark."""
        return window_start(ts_ms, self.size_ms) + self.size_ms <= self.value

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms
