"""The sinks of the three tables the stream writes (raw events, room windows, creator windows) and their
factory. What their rows hold, and the converters from the stream's tuples, are in `pipeline.rows`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.rows import (
    CREATOR_WINDOW_COLUMNS,
    RAW_EVENT_COLUMNS,
    ROOM_WINDOW_COLUMNS,
    creator_window_row,
    room_window_row,
)
from pipeline.settings import Settings
from pipeline.sink.batching import BatchingSink, RefusedRow
from pipeline.sink.policy import BULK, ONCE_PER_SECOND, FlushPolicy
from pipeline.sink.writer import JSON_EACH_ROW, Writer


@dataclass
class Sinks:
    raw_events: BatchingSink
    room_windows: BatchingSink
    creator_windows: BatchingSink

    def all(self) -> tuple[BatchingSink, ...]:
        return (self.raw_events, self.room_windows, self.creator_windows)

    async def flush(self) -> None:
        """Return when every row put into any of the sinks before the call is written."""
        for sink in self.all():
            await sink.flush()

    async def close(self, timeout: float | None = None) -> bool:
        results = [await sink.close(timeout) for sink in self.all()]
        return all(results)


def make_sinks(
    settings: Settings,
    writer: Writer,
    *,
    raw_writer: Writer | None = None,
    window_policy: FlushPolicy = ONCE_PER_SECOND,
    raw_policy: FlushPolicy = BULK,
    on_refused: Callable[[RefusedRow], Awaitable[None]] | None = None,
) -> Sinks:
    """The three sinks the stream writes to, on `settings.clickhouse_database`. Raw events go through
    `raw_writer` if given: a writer inserts one batch at a time, and the window tables, which the
    leaderboards wait for, should not queue behind a bulk raw-event insert. `on_refused` gets every row
    ClickHouse refuses for good (see `BatchingSink`)."""
    db, window_ms = settings.clickhouse_database, settings.window_ms
    return Sinks(
        raw_events=BatchingSink(
            raw_writer or writer,
            f"{db}.raw_events",
            RAW_EVENT_COLUMNS,
            policy=raw_policy,
            fmt=JSON_EACH_ROW,  # the room stage puts `raw_event_line`s
            on_refused=on_refused,
        ),
        room_windows=BatchingSink(
            writer,
            f"{db}.room_windows",
            ROOM_WINDOW_COLUMNS,
            policy=window_policy,
            convert=lambda r: room_window_row(r, window_ms),
            on_refused=on_refused,
        ),
        creator_windows=BatchingSink(
            writer,
            f"{db}.creator_windows",
            CREATOR_WINDOW_COLUMNS,
            policy=window_policy,
            convert=lambda r: creator_window_row(r, window_ms),
            on_refused=on_refused,
        ),
    )
