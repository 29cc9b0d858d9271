"""The dead-letter envelope: one JSON document per rejection, published to the dead-letter topic.

Format v1 (schema: schemas/events/deadletter.schema.json; described in schemas/events/README.md):
`reason`, `message`, `source_topic`, `partition`, `offset`, `key` (the message key decoded as UTF-8,
undecodable bytes as backslash escapes, or null), `batch_index` (null for a whole-message rejection),
`value_b64` (base64 of `Rejection.raw`: the original value bytes for a whole message, the orjson
re-serialization for a batch element), `rejected_at` (epoch ms) and `schema_version` 1.
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
