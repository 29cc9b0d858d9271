"""What a stage must make durable at a checkpoint, in the order the worker writes it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Checkpoint:
    """Rows are absolute window values (see aggregate.py), so writing them again is harmless.

    1. `raw_events` and `window_rows` go to ClickHouse;
    2. `forwards` (target partition -> message) go to the creator repartition topic;
    3. `state` (key -> value, None deletes) goes to the state table and its changelog.
    Only then are the input offsets acknowledged.
    """

    window_rows: list[tuple] = field(default_factory=list)
    final_windows: int = 0
    raw_events: list[tuple[dict, str, int, int]] = field(default_factory=list)
    forwards: dict[int, bytes] = field(default_factory=dict)
    state: dict[bytes, bytes | None] = field(default_factory=dict)
