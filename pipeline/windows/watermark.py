"""Event-time progress per input partition.

Faust has no watermarks, so they are built here explicitly. A partition's watermark is the highest
event time seen on it minus the allowed lateness; it never moves backwards. What is late or final at
a watermark, and where windows start and end, is `pipeline.windows.timing`.
"""

from __future__ import annotations

from pipeline.windows import timing
from pipeline.windows.timing import NO_WATERMARK


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
        return timing.watermark(self.max_event_ms, self.lateness_ms)

    def is_late(self, ts_ms: int) -> bool:
        """True when the event's window ended at or before the current watermark."""
        return timing.is_late(ts_ms, self.size_ms, self.value)

    def observe(self, ts_ms: int) -> None:
        if ts_ms > self.max_event_ms:
            self.max_event_ms = ts_ms
