"""Turning one upload body into per-event results, with the event contract's own rules and reasons.

Pure code (no I/O): `read_upload` decodes the (maybe gzip) body, `check_events` validates each element
with `pipeline.events.contract.validate_event` and picks its topic by type (settings.topics), so an
event the collector accepts is one the worker accepts in a batch keyed by its room_id.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.events import contract as c
from pipeline.settings import Topics

# Whole-upload error codes (the response is 400/413/415); per-event reasons are the contract's.
NOT_JSON = c.NOT_JSON
NOT_UTF8 = c.NOT_UTF8
NOT_ARRAY = "not_array"
EMPTY_BATCH = c.EMPTY_BATCH
TOO_MANY_EVENTS = "too_many_events"
BODY_TOO_LARGE = "body_too_large"
BAD_GZIP = "bad_gzip"


class UploadError(Exception):
    """The whole upload is refused: `status` (400, 413), `code` and a message for the client."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def gunzip(body: bytes, max_bytes: int) -> bytes:
    """The decompressed body, refusing more than `max_bytes` of output (a gzip bomb costs nothing)."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, max_bytes + 1)
        if len(out) > max_bytes:
            raise UploadError(413, BODY_TOO_LARGE, f"the decompressed body is over {max_bytes} bytes")
        if not d.eof or d.unused_data:
            raise UploadError(400, BAD_GZIP, "the gzip body is truncated or has trailing data")
    except zlib.error:
        raise UploadError(400, BAD_GZIP, "the body is not valid gzip") from None
    return out


def parse_array(body: bytes, max_events: int) -> list[Any]:
    """The JSON array an upload must be; UploadError otherwise."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            raise UploadError(400, NOT_UTF8, "the body is not valid UTF-8; encode JSON as UTF-8") from None
        raise UploadError(400, NOT_JSON, f"the body is not valid JSON: {exc}") from None
    if type(obj) is not list:
        raise UploadError(400, NOT_ARRAY, "the body must be a JSON array of event objects")
    if not obj:
        raise UploadError(400, EMPTY_BATCH, "the array is empty; send at least one event")
    if len(obj) > max_events:
        raise UploadError(
            413, TOO_MANY_EVENTS, f"{len(obj)} events in one upload, over the limit of {max_events}; split it"
        )
    return obj


ACCEPTED = {"status": "accepted"}


@dataclass(slots=True)
class CheckedUpload:
    results: list[dict[str, Any]]  # one per element, in order
    accepted: list[tuple[str, int, bytes]] = field(default_factory=list)  # (topic, room_id, event JSON)
    accepted_bytes: int = 0
    rejected_reasons: list[str] = field(default_factory=list)


def topic_by_type(topics: Topics) -> dict[str, str]:
    return {c.VIEW: topics.views, c.CLICK: topics.clicks, c.ORDER: topics.orders, c.REFUND: topics.orders}


def check_events(items: list[Any], topic_of: dict[str, str], now_ms: int, max_skew_ms: int) -> CheckedUpload:
    """Validate every element like a batch element on its topic (size first, then the contract)."""
    results: list[dict[str, Any]] = []
    out = CheckedUpload(results)
    accepted = out.accepted
    dumps, validate, limit, types = orjson.dumps, c.validate_event, c.MAX_EVENT_BYTES, c.EVENT_TYPES
    for ev in items:
        if type(ev) is not dict:
            reason, message = c.NOT_OBJECT, "each element must be a JSON object (one event)"
        else:
            part = dumps(ev)
            if len(part) > limit:
                reason, message = c.EVENT_TOO_LARGE, f"event is {len(part)} bytes as JSON, over {limit}"
            else:
                no_quantity = ev.get("quantity") is None
                problem = validate(ev, types, None, now_ms, max_skew_ms)
                if problem is None:
                    if no_quantity and ev["type"] == c.ORDER:
                        part = dumps(ev)  # the contract filled in the default quantity
                    accepted.append((topic_of[ev["type"]], ev["room_id"], part))
                    out.accepted_bytes += len(part) + 1
                    results.append(ACCEPTED)
                    continue
                reason, message = problem
        out.rejected_reasons.append(reason)
        result = {"status": "rejected", "reason": reason, "message": message}
        eid = ev.get("event_id") if type(ev) is dict else None
        if type(eid) is str and len(eid) <= c.EVENT_ID_MAX_LEN:
            result["event_id"] = eid
        results.append(result)
    return out
