"""What a stage must make durable at a checkpoint, in the order the worker writes it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pipeline.windows import codec
from pipeline.windows.aggregate import WindowAggregator
from pipeline.windows.timing import NO_WATERMARK


@dataclass(slots=True)
class Checkpoint:
    """Rows are absolute window values (see aggregate.py), so writing them again is harmless.

    1. `raw_events` and `window_rows` go to ClickHouse;
    2. `forwards` (target partition -> messages, in order) go to the creator repartition topic;
    3. `state` (key -> value, None deletes) goes to the state table and its changelog.
    Only then are the input offsets acknowledged.
    """

    window_rows: list[tuple] = field(default_factory=list)
    raw_events: list[bytes] = field(default_factory=list)  # JSONEachRow lines (pipeline.rows.raw_event_line)
    forwards: dict[int, list[bytes]] = field(default_factory=dict)
    state: dict[bytes, bytes | None] = field(default_factory=dict)
    newest_event_ms: list[int] = field(default_factory=list)  # per input message, for the latency metric
    # The watermark the checkpoint was cut at: once its writes are confirmed, every event of a window
    # that ends at or before it is in ClickHouse (a later event of such a window is late by definition).
    watermark: int = NO_WATERMARK


def checkpoint_windows(windows: WindowAggregator, source: str, watermark: int) -> Checkpoint:
    """A checkpoint of `source`'s windows: rows of the windows the watermark finalised (dropped from
    memory and from the state table) and of the windows that changed (written to both)."""
    cp = Checkpoint(watermark=watermark)
    final = windows.pop_final(watermark)
    for row in final:
        cp.state[codec.window_key(source, row[0], row[1])] = None
    changed = windows.take_changed()
    for row in changed:
        cp.state[codec.window_key(source, row[0], row[1])] = codec.encode_window(
            windows.windows[(row[0], row[1])]
        )
    cp.window_rows = final + changed
    return cp


def restore_windows(
    windows: WindowAggregator, source: str, items: Iterable[tuple[bytes, bytes]]
) -> tuple[int, list[tuple[str, list[str], bytes]]]:
    """Load `source`'s windows from state-table items; return how many, and the source's other items
    as (kind, key parts after the source, value) for the caller's own state."""
    loaded = 0
    others = []
    for key, value in items:
        kind, item_source, rest = codec.parse_key(key)
        if item_source != source:
            continue
        if kind == codec.WINDOW:
            windows.windows[(int(rest[0]), int(rest[1]))] = codec.decode_window(value)
            loaded += 1
        else:
            others.append((kind, rest, value))
    return loaded, others
