"""Row contracts between the stream and the ClickHouse tables, and the sinks' factory.

Stream tuples (what the stream passes to `put`; the `WindowAggregator` rows of pipeline.windows.aggregate):
- room windows:    (window_start_ms, room_id, creator_id, views, viewers, clicks, clickers, orders, buyers,
                    gmv_fen, refunds, refund_fen)
- creator windows: (window_start_ms, creator_id, creator_id, views, ..., refund_fen): the same 12-field
                    shape, fields 1 and 2 both the creator id; metrics are taken from row[3:].
- raw events:      (event: Mapping, topic, partition, offset), `event` being the validated event dict.
Window rows carry no version: values are absolute and only grow while a window is open, and a room row
may be written by several partitions (one per input topic), each filling its own metrics with the
others 0. The window tables keep each column's maximum (schemas/clickhouse/0002_window_stats.sql), so
re-writing a row, or writing an older one after a newer one, is harmless.
Ids are integers (event contract: 1..2^63-1) stored as UInt64; missing optional ids (product_id,
merchant_id, mcn_id) become 0.
The converters below turn them into the tables' insert rows: window_start in seconds (the columns are
DateTime), window_end = window_start + settings.window_ms stored in the row (a later change of the
window size does not rewrite old rows), raw event ts kept in ms (DateTime64(3) takes ms ticks).
`updated_at` and `inserted_at` are filled by ClickHouse at insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.settings import Settings
from pipeline.sink.batching import BatchingSink
from pipeline.sink.policy import BULK, ONCE_PER_SECOND, FlushPolicy
from pipeline.sink.writer import Writer

_METRICS = ("views", "viewers", "clicks", "clickers", "orders", "buyers", "gmv_fen", "refunds", "refund_fen")
ROOM_WINDOW_COLUMNS = ("window_start", "window_end", "room_id", "creator_id", *_METRICS)
CREATOR_WINDOW_COLUMNS = ("window_start", "window_end", "creator_id", *_METRICS)
RAW_EVENT_FIELDS = (
    "event_id", "type", "ts", "room_id", "creator_id", "user_id", "product_id", "order_id",
    "amount_fen", "quantity", "merchant_id", "mcn_id", "category", "source",
)  # fmt: skip
RAW_EVENT_COLUMNS = (*RAW_EVENT_FIELDS, "kafka_topic", "kafka_partition", "kafka_offset")
_RAW_DEFAULTS = {"product_id": 0, "order_id": "", "amount_fen": 0, "quantity": 0, "merchant_id": 0,
                 "mcn_id": 0, "category": "", "source": ""}  # fmt: skip


def room_window_row(row: tuple, window_ms: int) -> tuple:
    """Stream room-window tuple -> insert row in ROOM_WINDOW_COLUMNS order:
    (start_s, end_s, room_id, creator_id, *metrics)."""
    start_ms = int(row[0])
    return (start_ms // 1000, (start_ms + window_ms) // 1000, *row[1:])


def creator_window_row(row: tuple, window_ms: int) -> tuple:
    """Stream creator-window tuple (window_start_ms, creator_id, creator_id, *metrics) -> insert row in
    CREATOR_WINDOW_COLUMNS order: (start_s, end_s, creator_id, *metrics)."""
    start_ms = int(row[0])
    return (start_ms // 1000, (start_ms + window_ms) // 1000, row[1], *row[3:])


def raw_event_row(item: tuple[Mapping[str, Any], str, int, int]) -> tuple:
    """(event dict, topic, partition, offset) -> insert row in RAW_EVENT_COLUMNS order.

    Optional fields that are missing or None become the column default ('' for strings, 0 for ids and
    numbers).
    """
    event, topic, partition, offset = item
    values = []
    for name in RAW_EVENT_FIELDS:
        value = event.get(name)
        values.append(_RAW_DEFAULTS[name] if value is None else value)
    values.append(topic)
    values.append(int(partition))
    values.append(int(offset))
    return tuple(values)


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
    window_policy: FlushPolicy = ONCE_PER_SECOND,
    raw_policy: FlushPolicy = BULK,
) -> Sinks:
    """The three sinks the stream writes to, on `settings.clickhouse_database`."""
    db, window_ms = settings.clickhouse_database, settings.window_ms
    return Sinks(
        raw_events=BatchingSink(
            writer, f"{db}.raw_events", RAW_EVENT_COLUMNS, policy=raw_policy, convert=raw_event_row
        ),
        room_windows=BatchingSink(
            writer,
            f"{db}.room_windows",
            ROOM_WINDOW_COLUMNS,
            policy=window_policy,
            convert=lambda r: room_window_row(r, window_ms),
        ),
        creator_windows=BatchingSink(
            writer,
            f"{db}.creator_windows",
            CREATOR_WINDOW_COLUMNS,
            policy=window_policy,
            convert=lambda r: creator_window_row(r, window_ms),
        ),
    )
