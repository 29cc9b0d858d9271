"""Event contract v1: field rules, limits, reason codes and the per-event check.

The rules here and the JSON Schema files in `schemas/events/` describe the same contract; the tests
compare the two on generated payloads, so a change to one must be made to the other.

`validate_event` is on the hot path (called once per event): it runs one chain of plain type and range
tests over the orjson dict and allocates nothing for a valid event. Only when that chain fails does
`explain_event` walk the rules in a fixed order to name the first broken one; that path may be slow.
"""

from __future__ import annotations

import functools
from typing import Any

SCHEMA_VERSION = 1

# -- limits ---------------------------------------------------------------------------------------------
ID_MIN = 1
ID_MAX = 2**63 - 1  # fits ClickHouse Int64/UInt64 and Java long producers
TS_MIN = 0  # epoch milliseconds UTC; very old events are the window stage's business (late)
TS_MAX = ID_MAX
# Per-event ceilings that keep every sum within its ClickHouse column (arithmetic: schemas/events/README.md).
AMOUNT_FEN_MAX = 10**10  # 1亿 CNY in one order or refund
QUANTITY_MAX = 10**6  # items in one order; raw_events.quantity is UInt32
EVENT_ID_MAX_LEN = 128
ORDER_ID_MAX_LEN = 128
CATEGORY_MAX_LEN = 64
MAX_EVENT_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 1024 * 1024
# The smallest valid event is 77 bytes of JSON, so a 1 MiB batch holds at most 13,443 valid events: this
# cap never rejects a batch of valid events, and it bounds the per-element work of a junk array (a
# million-element `[0,0,...]` costs one length check instead of a million rejections).
MAX_BATCH_EVENTS = 16_384

# -- event types ----------------------------------------------------------------------------------------
VIEW = "view"
CLICK = "click"
ORDER = "order"
REFUND = "refund"
EVENT_TYPES: frozenset[str] = frozenset((VIEW, CLICK, ORDER, REFUND))
VIEW_TYPES: frozenset[str] = frozenset((VIEW,))
CLICK_TYPES: frozenset[str] = frozenset((CLICK,))
ORDER_TYPES: frozenset[str] = frozenset((ORDER, REFUND))

SOURCES: frozenset[str] = frozenset(("live_feed", "short_video", "search", "mall", "follow", "other"))

COMMON_REQUIRED: tuple[str, ...] = ("type", "event_id", "ts", "room_id", "creator_id", "user_id")
TYPE_REQUIRED: dict[str, tuple[str, ...]] = {
    VIEW: (),
    CLICK: ("product_id",),
    ORDER: ("order_id", "product_id", "amount_fen"),
    REFUND: ("order_id", "amount_fen"),
}
# Optional fields may be absent or JSON null (null means absent). `quantity` is optional on orders only
# and is filled in as 1 when absent or null, so downstream code can always read ev["quantity"].
COMMON_OPTIONAL: tuple[str, ...] = ("merchant_id", "mcn_id", "category", "source")
ORDER_OPTIONAL: tuple[str, ...] = ("quantity",)
DEFAULT_QUANTITY = 1
# The fields an event of each type defines. Any other field is ignored by validation, so it must be
# ignored downstream too (never stored): a view carrying "product_id": "x" is a valid view.
FIELDS_BY_TYPE: dict[str, tuple[str, ...]] = {
    t: COMMON_REQUIRED + required + COMMON_OPTIONAL + (ORDER_OPTIONAL if t == ORDER else ())
    for t, required in TYPE_REQUIRED.items()
}

# -- reason codes ---------------------------------------------------------------------------------------
# Whole-message reasons (the Kafka message is rejected as one unit).
EMPTY_VALUE = "empty_value"
MESSAGE_TOO_LARGE = "message_too_large"
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
EMPTY_BATCH = "empty_batch"
BAD_KEY = "bad_key"
TOO_MANY_EVENTS = "too_many_events"
# Per-event reasons (a batch element, or the single event of a message).
NOT_OBJECT = "not_object"
EVENT_TOO_LARGE = "event_too_large"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
OUT_OF_RANGE = "out_of_range"
INVALID_VALUE = "invalid_value"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
WRONG_TOPIC = "wrong_topic"
KEY_MISMATCH = "key_mismatch"
TS_IN_FUTURE = "ts_in_future"

REASONS: frozenset[str] = frozenset(
    (
        EMPTY_VALUE,
        MESSAGE_TOO_LARGE,
        NOT_UTF8,
        NOT_JSON,
        EMPTY_BATCH,
        BAD_KEY,
        TOO_MANY_EVENTS,
        NOT_OBJECT,
        EVENT_TOO_LARGE,
        MISSING_FIELD,
        WRONG_TYPE,
        OUT_OF_RANGE,
        INVALID_VALUE,
        UNKNOWN_EVENT_TYPE,
        WRONG_TOPIC,
        KEY_MISMATCH,
        TS_IN_FUTURE,
    )
)
# Reasons the per-event JSON Schema (schemas/events/event.schema.json) also rejects. The others depend
# on bytes, the message key, the topic or the clock, which a per-event schema cannot see.
SCHEMA_REASONS: frozenset[str] = frozenset(
    (NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, OUT_OF_RANGE, INVALID_VALUE, UNKNOWN_EVENT_TYPE)
)

Rejected = tuple[str, str]
"""(reason code, message for a person)."""


def validate_event(
    ev: dict[str, Any],
    allowed_types: frozenset[str],
    key_room_id: int | None,
    now_ms: int,
    max_skew_ms: int,
) -> Rejected | None:
    """Check one decoded event; return None if valid, else (reason, message).

    `ev` must be a dict (callers check). A valid order without `quantity` (or with null) gets
    `quantity = 1` written into it; nothing else is modified. `key_room_id` None skips the key check.
    Never raises.
    """
    # One short-circuit chain for the common case. `type(x) is int` rejects bool (a subclass of int)
    # and float (orjson gives float for 1.0 and for integers beyond 64 bits).
    get = ev.get
    t = get("type")
    eid = get("event_id")
    ts = get("ts")
    room = get("room_id")
    creator = get("creator_id")
    user = get("user_id")
    if (
        type(t) is str
        and t in allowed_types
        and type(eid) is str
        and 0 < len(eid) <= EVENT_ID_MAX_LEN
        and type(ts) is int
        and TS_MIN <= ts <= now_ms + max_skew_ms
        and ts <= TS_MAX
        and type(room) is int
        and ID_MIN <= room <= ID_MAX
        and (key_room_id is None or room == key_room_id)
        and type(creator) is int
        and ID_MIN <= creator <= ID_MAX
        and type(user) is int
        and ID_MIN <= user <= ID_MAX
    ):
        # Optional fields are only looked at when the dict holds more keys than the required ones.
        n = len(ev)
        if t == VIEW:
            if n <= 6 or _optionals_ok(get):
                return None
        elif t == CLICK:
            p = get("product_id")
            if type(p) is int and ID_MIN <= p <= ID_MAX and (n <= 7 or _optionals_ok(get)):
                return None
        elif t == ORDER:
            p = get("product_id")
            oid = get("order_id")
            amt = get("amount_fen")
            q = get("quantity")
            if (
                type(p) is int
                and ID_MIN <= p <= ID_MAX
                and type(oid) is str
                and 0 < len(oid) <= ORDER_ID_MAX_LEN
                and type(amt) is int
                and 0 < amt <= AMOUNT_FEN_MAX
                and (q is None or (type(q) is int and 0 < q <= QUANTITY_MAX))
                and (n <= 9 or _optionals_ok(get))
            ):
                if q is None:  # filled only once the event is known valid: rejects stay as sent
                    ev["quantity"] = DEFAULT_QUANTITY
                return None
        elif t == REFUND:
            oid = get("order_id")
            amt = get("amount_fen")
            if (
                type(oid) is str
                and 0 < len(oid) <= ORDER_ID_MAX_LEN
                and type(amt) is int
                and 0 < amt <= AMOUNT_FEN_MAX
                and (n <= 8 or _optionals_ok(get))
            ):
                return None
    return explain_event(ev, allowed_types, key_room_id, now_ms, max_skew_ms) or (
        INVALID_VALUE,
        "event failed validation",  # unreachable while explain_event and the fast chain agree (tested)
    )


def _optionals_ok(get: Any) -> bool:
    m = get("merchant_id")
    if m is not None and not (type(m) is int and ID_MIN <= m <= ID_MAX):
        return False
    m = get("mcn_id")
    if m is not None and not (type(m) is int and ID_MIN <= m <= ID_MAX):
        return False
    c = get("category")
    if c is not None and not (type(c) is str and len(c) <= CATEGORY_MAX_LEN):
        return False
    s = get("source")
    return s is None or (type(s) is str and s in SOURCES)


# -- the slow path: name the first broken rule ------------------------------------------------------------


def explain_event(
    ev: dict[str, Any],
    allowed_types: frozenset[str],
    key_room_id: int | None,
    now_ms: int,
    max_skew_ms: int,
) -> Rejected | None:
    """The first broken rule of `ev` as (reason, message), or None if `ev` is valid.

    Rules are checked in a fixed order: `type`, common fields, type-specific fields, optional fields,
    then the key and the clock. Does not modify `ev`. Never raises.
    """
    t = ev.get("type")
    if t is None:
        return _missing("type", ev)
    if type(t) is not str:
        return WRONG_TYPE, f"'type' must be a string, got {_show(t)}"
    if t not in TYPE_REQUIRED:
        return UNKNOWN_EVENT_TYPE, f"'type' {_show(t)} is not one of {_names(EVENT_TYPES)}"
    if t not in allowed_types:
        return (
            WRONG_TOPIC,
            f"'type' {t!r} does not belong on this topic, which accepts {_names(allowed_types)}",
        )
    for name in COMMON_REQUIRED[1:] + TYPE_REQUIRED[t]:
        value = ev.get(name)
        if value is None:
            return _missing(name, ev)
        problem = _check_field(name, value)
        if problem is not None:
            return problem
    optional = COMMON_OPTIONAL + ORDER_OPTIONAL if t == ORDER else COMMON_OPTIONAL
    for name in optional:
        value = ev.get(name)
        if value is not None:
            problem = _check_field(name, value)
            if problem is not None:
                return problem
    if key_room_id is not None and ev["room_id"] != key_room_id:
        return KEY_MISMATCH, (
            f"room_id {ev['room_id']} differs from the message key {key_room_id}; "
            "key each message by the room_id of its events"
        )
    if ev["ts"] > now_ms + max_skew_ms:
        ahead_s = (ev["ts"] - now_ms) / 1000
        return TS_IN_FUTURE, (
            f"ts {ev['ts']} is {ahead_s:.0f} s ahead of the pipeline clock (at most {max_skew_ms // 1000} s "
            "allowed); ts must be epoch milliseconds UTC from a synchronised clock"
        )
    return None


def _missing(name: str, ev: dict[str, Any]) -> Rejected:
    if name in ev:
        return WRONG_TYPE, f"'{name}' is required and must not be null"
    return MISSING_FIELD, f"required field '{name}' is missing"


_ID_FIELDS = frozenset(("room_id", "creator_id", "user_id", "product_id", "merchant_id", "mcn_id"))
_STR_LIMITS = {
    "event_id": (1, EVENT_ID_MAX_LEN),
    "order_id": (1, ORDER_ID_MAX_LEN),
    "category": (0, CATEGORY_MAX_LEN),
}


def _check_field(name: str, value: Any) -> Rejected | None:
    """Type and range of one present, non-null field (the `type` field excepted)."""
    if name in _STR_LIMITS:
        lo, hi = _STR_LIMITS[name]
        if type(value) is not str:
            return WRONG_TYPE, f"'{name}' must be a string, got {_show(value)}"
        if not lo <= len(value) <= hi:
            return OUT_OF_RANGE, f"'{name}' must be {lo} to {hi} characters long, got {len(value)}"
        return None
    if name == "source":
        if type(value) is not str:
            return WRONG_TYPE, f"'source' must be a string, got {_show(value)}"
        if value not in SOURCES:
            return INVALID_VALUE, f"'source' {_show(value)} is not one of {_names(SOURCES)}"
        return None
    if name in _ID_FIELDS:
        lo, hi, what = ID_MIN, ID_MAX, "an integer id from 1 to 2^63-1"
    elif name == "ts":
        lo, hi, what = TS_MIN, TS_MAX, "an integer: epoch milliseconds UTC"
    elif name == "amount_fen":
        lo, hi, what = 1, AMOUNT_FEN_MAX, "an integer number of fen (1 CNY = 100 fen) from 1 to 10^10"
    else:  # quantity
        lo, hi, what = 1, QUANTITY_MAX, "an integer from 1 to 10^6"
    if type(value) is int:
        if lo <= value <= hi:
            return None
        return OUT_OF_RANGE, f"'{name}' must be {what}, got {value}"
    if type(value) is float and value.is_integer() and not lo <= value <= hi:
        # orjson turns integers beyond 64 bits into floats: the producer sent a too-large integer.
        return OUT_OF_RANGE, f"'{name}' must be {what}, got {value:.0f}"
    if type(value) is float:
        return WRONG_TYPE, f"'{name}' must be {what} written without fraction or exponent, got {value!r}"
    return WRONG_TYPE, f"'{name}' must be {what}, got {_show(value)}"


def _show(value: Any) -> str:
    """A short description of a bad value for a message: its JSON type and a truncated repr."""
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{kind.get(type(value), type(value).__name__)} {text}"


@functools.cache  # a handful of frozensets; rejected events of a junk batch would sort them each time
def _names(values: frozenset[str]) -> str:
    return ", ".join(sorted(values))


def event_reason(
    ev: dict[str, Any],
    allowed_types: frozenset[str],
    key_room_id: int | None,
    now_ms: int,
    max_skew_ms: int,
) -> str | None:
    """The reason code `validate_event` would give `ev`, or None if valid (then `ev` gets its default
    `quantity` like validate_event). For events past a message's detailed rejections, which are only
    counted. Never raises."""
    problem = validate_event(ev, allowed_types, key_room_id, now_ms, max_skew_ms)
    return None if problem is None else problem[0]
