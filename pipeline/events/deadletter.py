"""The dead-letter envelope: one JSON document per rejected message, published to the dead-letter topic.

Format v1 (schema: schemas/events/deadletter.schema.json; described in schemas/events/README.md).
The v1 fields describe the message's FIRST rejection: `reason`, `message`, `source_topic`, `partition`,
`offset`, `key` (the message key decoded as UTF-8, undecodable bytes as backslash escapes, or null),
`batch_index` (null for a whole-message rejection), `value_b64` (base64 of `Rejection.raw`: the original
value bytes for a whole message, the orjson re-serialization for a batch element), `rejected_at` (epoch
ms) and `schema_version` 1. Added fields (readers of the first version ignore them):

* `value_length`, `value_sha256`, `value_truncated`: `value_b64` holds at most MAX_VALUE_BYTES of the
  rejected bytes; these describe all of them.
* `rejected_events` and `reasons` ({reason: count}): every rejected event of the message.
* `other_rejections`: the message's next detailed rejections (at most decode.MAX_DETAILED_REJECTIONS in
  all), each with `batch_index`, `reason`, `message` and its bytes in the same `value_*` fields; they
  share OTHER_VALUES_BYTES of bytes, in batch order.
* `key_truncated`: the key text (and the dead-letter record's key) keeps at most MAX_KEY_BYTES.

Bound: an envelope is at most MAX_ENVELOPE_BYTES whatever the rejections, well below the dead-letter
topic's `max.message.bytes` (pipeline.topics.DEADLETTER_MAX_MESSAGE_BYTES).

A row ClickHouse refused for good (`refused_row_envelope`, reason `refused_by_clickhouse`) has the
same fields, ClickHouse's message as `message`, and three more: `table`, `clickhouse_code` and `row`
(the row as a JSON object; `value_b64` is that JSON's bytes).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from pipeline.events.decode import Rejection

DEADLETTER_SCHEMA_VERSION = 1
# Bytes of the first rejection kept in `value_b64` (base64: 4/3 of that), and the bytes shared by the
# `other_rejections`. Both with their full length and SHA-256, so a truncated value can be matched to
# the source message, which stays readable at source_topic/partition/offset while the topic retains it.
MAX_VALUE_BYTES = 256 * 1024
OTHER_VALUES_BYTES = 128 * 1024
MAX_KEY_BYTES = 1024
# A `message` is ours and short (offending values are shown truncated); bounded anyway.
MAX_MESSAGE_CHARS = 300
# Worst case: 2 x base64 of the byte budgets (524,292) + 100 messages of 300 characters escaped to 6 bytes
# each (180,000) + per-entry fields and key (< 40,000): under 760,000 bytes. The fallback below enforces it.
MAX_ENVELOPE_BYTES = 800 * 1024


def deadletter_key(key: bytes | None) -> bytes | None:
    """The key of the dead-letter record: the source message's key, at most MAX_KEY_BYTES of it."""
    return None if key is None else bytes(key[:MAX_KEY_BYTES])


def deadletter_envelope(
    rejection: Rejection,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    rejected_at_ms: int,
) -> bytes:
    """The envelope of a message with this one rejection; never raises for a Rejection from decode."""
    return message_envelope([rejection], {rejection.reason: 1}, topic, partition, offset, key, rejected_at_ms)


def message_envelope(
    rejections: Sequence[Rejection],
    rejected_by_reason: Mapping[str, int],
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    rejected_at_ms: int,
) -> bytes:
    """The one envelope of a message: `rejections` (non-empty, in batch order) are its detailed
    rejections, `rejected_by_reason` counts all of its rejected events. At most MAX_ENVELOPE_BYTES."""
    first = rejections[0]
    doc: dict[str, Any] = {
        "reason": first.reason,
        "message": first.message[:MAX_MESSAGE_CHARS],
        "source_topic": topic,
        "partition": partition,
        "offset": offset,
        "key": None if key is None else bytes(key[:MAX_KEY_BYTES]).decode("utf-8", "backslashreplace"),
        "batch_index": first.batch_index,
        **_value_fields(first.raw, MAX_VALUE_BYTES),
        "rejected_at": rejected_at_ms,
        "schema_version": DEADLETTER_SCHEMA_VERSION,
        "rejected_events": sum(rejected_by_reason.values()),
        "reasons": dict(rejected_by_reason),
        "key_truncated": key is not None and len(key) > MAX_KEY_BYTES,
    }
    others = []
    budget = OTHER_VALUES_BYTES
    for r in rejections[1:]:
        entry = {"batch_index": r.batch_index, "reason": r.reason, "message": r.message[:MAX_MESSAGE_CHARS]}
        entry.update(_value_fields(r.raw, budget))
        budget -= min(len(r.raw), budget)
        others.append(entry)
    doc["other_rejections"] = others
    envelope = orjson.dumps(doc)
    if len(envelope) > MAX_ENVELOPE_BYTES:  # not reachable with the budgets above; a guarantee all the same
        doc["other_rejections"] = []
        envelope = orjson.dumps(doc)
    return envelope


def _value_fields(raw: bytes, limit: int) -> dict[str, Any]:
    kept = raw[:limit]
    return {
        "value_b64": base64.b64encode(kept).decode("ascii"),
        "value_length": len(raw),
        "value_sha256": hashlib.sha256(raw).hexdigest(),
        "value_truncated": len(kept) < len(raw),
    }


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
