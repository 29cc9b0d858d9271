"""Decode one Kafka message value into valid events and rejections.

A value is ONE event (a JSON object) or a BATCH (a JSON array of event objects of the room named by the
message key). Each outcome is either a valid event (the orjson dict itself) or a `Rejection`:

* whole-message rejections (`batch_index` None, `raw` = the exact original value bytes): empty_value,
  message_too_large, not_utf8, not_json, not_object (top level), empty_batch, bad_key,
  too_many_events (an array of more than MAX_BATCH_EVENTS elements, rejected before any element is
  looked at), and every reason of a single-event message;
* batch-element rejections (`batch_index` = position, `raw` = the element re-serialized with orjson,
  because orjson does not keep each element's original bytes).

Invariant: `len(events) + rejected == len(array)` for a non-empty array with a usable key, and `== 1`
for every other value, where `rejected` is the number of rejected events (`rejected_by_reason` counts
every one of them by reason). Only the first MAX_DETAILED_REJECTIONS of a message are kept as
`Rejection` objects (with a message and their bytes); the rest are only counted, so the cost of a
junk batch stays close to that of a valid batch of the same size. `decode_message` never raises,
whatever the bytes.

Keys: a key is "usable" when it is a canonical decimal room id (ASCII digits, no sign, no leading zero,
1..2^63-1), i.e. exactly `str(room_id)`; anything else would hash the room to a different partition.
A missing key (None or b"") rejects a batch as `bad_key`: batches are routed and aggregated per room by
their key, and one rejection keeps the whole message replayable from the dead-letter topic once the
producer is fixed. With `require_key` (what the pipeline passes) it rejects a single event as `bad_key`
too: a key-less event lands on any partition, and two partitions writing one room's row would corrupt
it. Without `require_key` (schema comparisons) a key-less single event skips the room check. A present
but unusable key rejects any message as `bad_key`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.events import contract as c
from pipeline.settings import Topics

# Batch elements are size-checked by re-serializing groups of this many at once: when a group's JSON is
# within the event limit, none of its elements can exceed it, so normal batches cost one dumps per group
# instead of one per element.
_SIZE_GROUP = 64
# Rejections of one message kept in full (reason, message, bytes); later ones are counted by reason only.
MAX_DETAILED_REJECTIONS = 100
_NO_KEY = None
_BAD_KEY = -1


@dataclass(slots=True)
class Rejection:
    """One event (or one whole message) that failed the contract."""

    reason: str
    message: str
    batch_index: int | None
    raw: bytes
    event: dict[str, Any] | None = None


@dataclass(slots=True)
class DecodedMessage:
    """`rejections`: the first MAX_DETAILED_REJECTIONS rejections, in batch order; `rejected_by_reason`:
    every rejected event of the message, counted by reason (its total is `rejected`)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejected_by_reason.values())


def allowed_types_for_topic(topic: str, topics: Topics) -> frozenset[str]:
    """Event types accepted on `topic`; ValueError for a topic that is not an input topic."""
    if topic == topics.views:
        return c.VIEW_TYPES
    if topic == topics.clicks:
        return c.CLICK_TYPES
    if topic == topics.orders:
        return c.ORDER_TYPES
    raise ValueError(f"{topic!r} is not an event input topic (expected one of {', '.join(topics.inputs)})")


def parse_key(key: bytes | None) -> int | None:
    """The room id a message key names: None when missing (None or b""), -1 when unusable."""
    if not key:
        return _NO_KEY
    try:
        # bytes.isdigit() is ASCII-only; leading zeros and >19 digits would not round-trip str(room_id).
        if key.isdigit() and key[0] != 0x30 and len(key) <= 19:
            room = int(key)
            if room <= c.ID_MAX:
                return room
    except (AttributeError, TypeError, ValueError):
        pass
    return _BAD_KEY


def decode_message(
    value: bytes | None,
    key: bytes | None,
    allowed_types: frozenset[str],
    now_ms: int,
    max_skew_ms: int,
    require_key: bool = False,
) -> DecodedMessage:
    """Decode and validate one message value; see the module docstring for the contract."""
    if not value:
        return _whole(
            c.EMPTY_VALUE, "message value is empty; send one event object or an array of events", b""
        )
    if type(value) is not bytes:
        if not isinstance(value, bytearray | memoryview):
            return _whole(c.NOT_JSON, f"message value must be bytes, got {type(value).__name__}", b"")
        value = bytes(value)
    size = len(value)
    if size > c.MAX_MESSAGE_BYTES:
        return _whole(
            c.MESSAGE_TOO_LARGE,
            f"message is {size} bytes, over the {c.MAX_MESSAGE_BYTES} byte limit; split the batch",
            value,
        )
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return _undecodable(value, exc)
    room_key = parse_key(key)

    if type(obj) is dict:
        if room_key == _BAD_KEY or (require_key and room_key is _NO_KEY):
            return _whole(c.BAD_KEY, _bad_key_message(key), value, obj)
        if size > c.MAX_EVENT_BYTES:
            return _whole(
                c.EVENT_TOO_LARGE,
                f"event is {size} bytes, over the {c.MAX_EVENT_BYTES} byte limit",
                value,
                obj,
            )
        problem = c.validate_event(obj, allowed_types, room_key, now_ms, max_skew_ms)
        if problem is None:
            return DecodedMessage([obj], [])
        return _whole(problem[0], problem[1], value, obj)

    if type(obj) is list:
        if not obj:
            return _whole(c.EMPTY_BATCH, "batch array is empty; send at least one event", value)
        if room_key is _NO_KEY or room_key == _BAD_KEY:
            return _whole(c.BAD_KEY, _bad_key_message(key), value)
        if len(obj) > c.MAX_BATCH_EVENTS:
            return _whole(
                c.TOO_MANY_EVENTS,
                f"batch has {len(obj)} elements, over the {c.MAX_BATCH_EVENTS} element limit; "
                "split the batch",
                value,
            )
        return _decode_batch(obj, room_key, allowed_types, now_ms, max_skew_ms)

    if obj is None:
        return _whole(c.EMPTY_VALUE, "message value is JSON null; send one event object or an array", value)
    return _whole(
        c.NOT_OBJECT, f"message must be a JSON object or an array of objects, got {_json_kind(obj)}", value
    )


def _decode_batch(
    items: list[Any], room_key: int, allowed_types: frozenset[str], now_ms: int, max_skew_ms: int
) -> DecodedMessage:
    oversized = _oversized_indexes(items)
    events: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    counts: dict[str, int] = {}
    validate = c.validate_event
    append = events.append
    detailed = 0
    for i, ev in enumerate(items):
        if type(ev) is dict and (oversized is None or i not in oversized):
            if detailed < MAX_DETAILED_REJECTIONS:
                problem = validate(ev, allowed_types, room_key, now_ms, max_skew_ms)
                if problem is None:
                    append(ev)
                    continue
                reason, message = problem
            else:
                # Past the detailed rejections only the reason is needed: no message is built.
                reason = c.event_reason(ev, allowed_types, room_key, now_ms, max_skew_ms)
                if reason is None:
                    append(ev)
                    continue
                counts[reason] = counts.get(reason, 0) + 1
                continue
        elif type(ev) is dict:
            reason = c.EVENT_TOO_LARGE
            message = (
                f"batch element is {oversized[i]} bytes as JSON, over the {c.MAX_EVENT_BYTES} byte limit"
            )
        else:
            reason = c.NOT_OBJECT
            if detailed >= MAX_DETAILED_REJECTIONS:
                counts[reason] = counts.get(reason, 0) + 1
                continue
            message = f"batch element must be a JSON object, got {_json_kind(ev)}"
        counts[reason] = counts.get(reason, 0) + 1
        if detailed < MAX_DETAILED_REJECTIONS:
            detailed += 1
            rejections.append(
                Rejection(reason, message, i, orjson.dumps(ev), ev if type(ev) is dict else None)
            )
    return DecodedMessage(events, rejections, counts)


def _oversized_indexes(items: list[Any]) -> dict[int, int] | None:
    """Indexes of elements whose re-serialized JSON exceeds the event limit, with their sizes."""
    found: dict[int, int] | None = None
    dumps = orjson.dumps
    limit = c.MAX_EVENT_BYTES
    for start in range(0, len(items), _SIZE_GROUP):
        group = items[start : start + _SIZE_GROUP]
        if len(dumps(group)) <= limit:
            continue
        for offset, item in enumerate(group):
            n = len(dumps(item))
            if n > limit:
                if found is None:
                    found = {}
                found[start + offset] = n
    return found


def _whole(reason: str, message: str, value: bytes, event: dict[str, Any] | None = None) -> DecodedMessage:
    return DecodedMessage([], [Rejection(reason, message, None, value, event)], {reason: 1})


def _undecodable(value: bytes, exc: Exception) -> DecodedMessage:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _whole(
            c.NOT_UTF8,
            f"message is not valid UTF-8 (bad byte at offset {bad.start}); encode JSON as UTF-8",
            value,
        )
    return _whole(c.NOT_JSON, f"message is not valid JSON: {exc}", value)


def _bad_key_message(key: bytes | None) -> str:
    if not key:
        return "a message needs its room_id as the message key (decimal string); the key is missing"
    shown = repr(bytes(key)[:40]) if isinstance(key, bytes | bytearray) else type(key).__name__
    return f"message key {shown} is not a room_id written as a decimal string without leading zeros"


def _json_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return kinds.get(type(value), "null" if value is None else type(value).__name__)
