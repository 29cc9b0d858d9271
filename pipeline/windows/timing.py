"""Window arithmetic, written once: tumbling event-time windows and when they are late or final.

Windows are tumbling and aligned to the epoch: the window of an event at `ts` starts at
`ts - ts % size` and covers [start, start + size). A watermark (see watermark.py) is the event time up
to which windows are complete. A window is *final* once it ended at or before the watermark: its value
is written for good and its state dropped. An event is *late* when its window is final: applying it
would change a number ops have already seen as final. NO_WATERMARK (before the first event) finalises
nothing.

Every stage, the sink's rows and reconciliation use these functions; the room stage calls them per
event, so they stay plain functions of ints (no objects, no checks).
"""

from __future__ import annotations

NO_WATERMARK = -(2**63)


def window_start(ts_ms: int, size_ms: int) -> int:
    return ts_ms - ts_ms % size_ms


def window_end(start_ms: int, size_ms: int) -> int:
    """The end (exclusive) of the window that starts at `start_ms`."""
    return start_ms + size_ms


def is_final(start_ms: int, size_ms: int, watermark_ms: int) -> bool:
    """True when the window that starts at `start_ms` ended at or before the watermark."""
    return start_ms + size_ms <= watermark_ms


def is_late(ts_ms: int, size_ms: int, watermark_ms: int) -> bool:
    """True when the window of an event at `ts_ms` is final at the watermark."""
    return is_final(ts_ms - ts_ms % size_ms, size_ms, watermark_ms)


def open_window_start(ts_ms: int, size_ms: int, watermark_ms: int) -> int | None:
    """The start of the window of an event at `ts_ms`, or None when that window is final (the event is
    late): both answers in one call, for the room stage's per-event loop."""
    start = ts_ms - ts_ms % size_ms
    return None if start + size_ms <= watermark_ms else start


def watermark(max_event_ms: int, lateness_ms: int) -> int:
    """The watermark of a partition whose highest event time is `max_event_ms` (NO_WATERMARK: none)."""
    return NO_WATERMARK if max_event_ms == NO_WATERMARK else max_event_ms - lateness_ms
