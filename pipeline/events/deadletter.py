"""The dead-letter envelope: one JSON document per rejection, published to the dead-letter topic.

Format v1 (schema: schemas/events/deadletter.schema.json; described in schemas/events/README.md):
`reason`, `message`, `source_topic`, `partition`, `offset`, `key` (the message key decoded as UTF-8,
undecodable bytes as backslash escapes, or null), `batch_index` (null for a whole-message rejection),
`value_b64` (base64 of `Rejection.raw`: the original value bytes for a whole message, the orjson
re-serialization for a batch element), `rejected_at` (epoch ms) and `schema_version` 1.

A row ClickHouse refused for good (`refused_row_envelope`, reason `refused_by_clickhouse`) has the
same fields, ClickHouse's message as `message`, and three more: `table`, `clickhouse_code` and `row`
(the row as a JSON object; `value_b64` is that JSON's bytes).
"""

from __future__ import annotations

import base64

import orjson

from pipeline.events.decode import Rejection

DEADLETTER_SCHEMA_VERSION = 1


def deadletter_envelope(
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    rejected_at_ms: int,
) -> bytes:
    """Serialize `rejection` with where it came from; never raises for a Rejection from decode."""
    return orjson.dumps(
        {
            "reason": rejection.reason,
            "message": rejection.message,
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None if key is None else bytes(key).decode("utf-8", "backslashreplace"),
            "batch_index": rejection.batch_index,
            "value_b64": base64.b64encode(rejection.raw).decode("ascii"),
            "rejected_at": rejected_at_ms,
            "schema_version": DEADLETTER_SCHEMA_VERSION,
        }
    )


REFUSED_BY_CLICKHOUSE = "refused_by_clickhouse"
MAX_REFUSAL_MESSAGE_CHARS = 2_000  # ClickHouse's messages can quote a whole block; the start says why


def refused_row_envelope(
    table: str,
    row: dict,
    message: str,
    code: int | None,
    source: tuple[str, int, int] | None,
    rejected_at_ms: int,
) -> bytes:
    """The envelope of a row ClickHouse refused for good (format v1, fields added; see the module).

    `row` is the row as a JSON object (column -> value; integers outside 64 bits become strings);
    `source` the (topic, partition, offset) of the input message the row came from: a raw event's own
    position, or for a window row the last message of the checkpoint that wrote it; when unknown,
    `source_topic` is the table and `partition` and `offset` are 0.
    `value_b64` holds the row's JSON, so a tool can re-insert it once the cause is fixed."""
    row_json = orjson.dumps({key: _json_value(value) for key, value in row.items()})
    topic, partition, offset = source if source else (table, 0, 0)
    return orjson.dumps(
        {
            "reason": REFUSED_BY_CLICKHOUSE,
            "message": message[:MAX_REFUSAL_MESSAGE_CHARS],
            "source_topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None,
            "batch_index": None,
            "value_b64": base64.b64encode(row_json).decode("ascii"),
            "rejected_at": rejected_at_ms,
            "schema_version": DEADLETTER_SCHEMA_VERSION,
            "table": table,
            "clickhouse_code": code,
            "row": orjson.Fragment(row_json),
        }
    )


def _json_value(value):
    # orjson refuses integers beyond 64 bits (an overflowing sum is exactly such a row).
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    return value
