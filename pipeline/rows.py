"""Row contracts between the stages and the ClickHouse tables, shared by the stages (which build the
raw-event rows while they process a message) and the sink (which writes them): the sink needs no event
contract, and the stages no sink code.

Stream tuples (what the stream passes to `put`; the `WindowAggregator` rows of pipeline.windows.aggregate):
- room windows:    (window_start_ms, room_id, creator_id, views, viewers, clicks, clickers, orders, buyers,
                    gmv_fen, refunds, refund_fen)
- creator windows: (window_start_ms, creator_id, creator_id, views, ..., refund_fen): the same 12-field
                    shape, fields 1 and 2 both the creator id; metrics are taken from row[3:].
- raw events:      JSONEachRow lines (`raw_event_line`, built by the room stage), or for tools
                    (event: Mapping, topic, partition, offset), `event` being the validated event dict.
Window rows carry no version: values are absolute and only grow while a window is open, and a room row
may be written by several partitions (one per input topic), each filling its own metrics with the
others 0. The window tables keep each column's maximum (schemas/clickhouse/0002_window_stats.sql), so
re-writing a row, or writing an older one after a newer one, is harmless.
Ids are integers (event contract: 1..2^63-1) stored as UInt64; missing optional ids (product_id,
merchant_id, mcn_id) become 0.
The converters below turn them into the tables' insert rows (formats: pipeline.sink.writer; the sinks
themselves: pipeline.sink.tables):
- window rows: NATIVE tuples, window_start in seconds (the columns are DateTime), window_end =
  window_start + settings.window_ms stored in the row (a later change of the window size does not
  rewrite old rows).
- raw events: one JSONEachRow object per event (`raw_event_line`, what the sink writes): the fields its
  type defines plus kafka_topic/partition/offset, so the per-event Python is a dict copy and orjson, and
  ClickHouse, not the driver, parses the values. ClickHouse ignores keys that are not columns and gives
  a missing or null optional field its column DEFAULT, the values `raw_event_row` fills in
  (`raw_event_row` builds the same row as a NATIVE tuple, for tests and tools that insert directly).
  `ts` (epoch ms) is sent as the string "SSSSSSSSSS.mmm": ClickHouse reads a JSON integer as seconds,
  and a string with under 9 digits before the point (before 1973) as a date (YYYYMMDD...) or not at
  all, hence the zero padding to 10 digits (good to the year 2286; the contract keeps ts >= 0 and near
  the pipeline clock).
`updated_at` and `inserted_at` are filled by ClickHouse at insert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from pipeline.events.contract import FIELDS_BY_TYPE
from pipeline.windows.timing import window_end

# The nine metrics of a window, in the order of the window tables' columns and of every window row (the
# `WindowAggregator` rows, the sink's insert rows, reconciliation): the one place they are named.
METRIC_COLUMNS = (
    "views",
    "viewers",
    "clicks",
    "clickers",
    "orders",
    "buyers",
    "gmv_fen",
    "refunds",
    "refund_fen",
)
ROOM_WINDOW_COLUMNS = ("window_start", "window_end", "room_id", "creator_id", *METRIC_COLUMNS)
CREATOR_WINDOW_COLUMNS = ("window_start", "window_end", "creator_id", *METRIC_COLUMNS)
RAW_EVENT_FIELDS = (
    "event_id", "type", "ts", "room_id", "creator_id", "user_id", "product_id", "order_id",
    "amount_fen", "quantity", "merchant_id", "mcn_id", "category", "source",
)  # fmt: skip
RAW_EVENT_COLUMNS = (*RAW_EVENT_FIELDS, "kafka_topic", "kafka_partition", "kafka_offset")
_KAFKA_TAIL = b',"kafka_topic":%b,"kafka_partition":%d,"kafka_offset":%d}'
_DEFINED = {kind: frozenset(fields) for kind, fields in FIELDS_BY_TYPE.items()}
_RAW_DEFAULTS = {"product_id": 0, "order_id": "", "amount_fen": 0, "quantity": 0, "merchant_id": 0,
                 "mcn_id": 0, "category": "", "source": ""}  # fmt: skip


def room_window_row(row: tuple, window_ms: int) -> tuple:
    """Stream room-window tuple -> insert row in ROOM_WINDOW_COLUMNS order:
    (start_s, end_s, room_id, creator_id, *metrics)."""
    start_ms = int(row[0])
    return (start_ms // 1000, window_end(start_ms, window_ms) // 1000, *row[1:])


def creator_window_row(row: tuple, window_ms: int) -> tuple:
    """Stream creator-window tuple (window_start_ms, creator_id, creator_id, *metrics) -> insert row in
    CREATOR_WINDOW_COLUMNS order: (start_s, end_s, creator_id, *metrics)."""
    start_ms = int(row[0])
    return (start_ms // 1000, window_end(start_ms, window_ms) // 1000, row[1], *row[3:])


def raw_event_row(item: tuple[Mapping[str, Any], str, int, int]) -> tuple:
    """(event dict, topic, partition, offset) -> NATIVE insert row in RAW_EVENT_COLUMNS order.

    Only the fields the event's type defines are stored (validation ignores the others, whatever their
    value). Optional fields that are missing or None become the column default ('' for strings, 0 for
    ids and numbers); ts stays in ms (clickhouse-connect takes DateTime64(3) as ms ticks). The sink
    writes `raw_event_json` instead; this is for inserting raw rows directly (tests, tools).
    """
    event, topic, partition, offset = item
    defined = FIELDS_BY_TYPE[event["type"]]
    values = []
    for name in RAW_EVENT_FIELDS:
        value = event.get(name) if name in defined else None
        values.append(_RAW_DEFAULTS[name] if value is None else value)
    values.append(topic)
    values.append(int(partition))
    values.append(int(offset))
    return tuple(values)


def kafka_position_tail(topic: str, partition: int, offset: int) -> bytes:
    """The end of every raw-event JSON line of one Kafka message: its position, and the closing brace."""
    return _KAFKA_TAIL % (orjson.dumps(topic), partition, offset)


def raw_event_line(event: Mapping[str, Any], tail: bytes) -> bytes:
    """One JSONEachRow object for RAW_EVENT_COLUMNS (bytes): `event`'s fields and `tail`
    (`kafka_position_tail` of its message). Stores the same values as `raw_event_row` (see the module
    docstring for ts and the defaults). The room stage calls this once per accepted event."""
    defined = _DEFINED[event["type"]]
    # Only the fields the type defines: another field may hold anything (validation ignores it), and
    # one bad value would make ClickHouse refuse the whole batch, forever. The usual event has no other
    # field, and a plain copy is half the cost of filtering.
    if event.keys() <= defined:
        row = dict(event)
    else:
        row = {name: value for name, value in event.items() if name in defined}
    # Integer arithmetic only (a float would round some ms); %-format: twice as fast as f"{:010d}".
    row["ts"] = "%010d.%03d" % divmod(event["ts"], 1000)  # noqa: UP031
    # The position is appended as bytes: adding three keys would make the dict grow (a third slower).
    return orjson.dumps(row)[:-1] + tail


def raw_event_json(item: tuple[Mapping[str, Any], str, int, int]) -> bytes:
    """(event dict, topic, partition, offset) -> `raw_event_line` of the event at that position."""
    event, topic, partition, offset = item
    return raw_event_line(event, kafka_position_tail(topic, partition, offset))
