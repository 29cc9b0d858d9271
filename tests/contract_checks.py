"""An independent reading of event contract v1, for tests of what the traffic generator produces
(written apart from pipeline.events on purpose: a second implementation catches a shared mistake).
Shared by tests/unit/traffic/test_generator.py and tests/integration/test_generate_kafka.py."""

from __future__ import annotations

from typing import Any

import orjson

from pipeline.settings import Topics
from pipeline.traffic.generator import Message

TOPICS = Topics()


def allowed(topics: Topics) -> dict[str, set[str]]:
    """Event types per input topic."""
    return {topics.views: {"view"}, topics.clicks: {"click"}, topics.orders: {"order", "refund"}}


ALLOWED = allowed(TOPICS)
ID_MAX = 2**63 - 1
EXTRA = {
    "view": {},
    "click": {"product_id": "id"},
    "order": {"order_id": "str", "product_id": "id", "amount_fen": "id", "quantity": "id"},
    "refund": {"order_id": "str", "amount_fen": "id"},
}
OPTIONAL = {"merchant_id": "id", "mcn_id": "id", "category": "str"}
SOURCES = {"live_feed", "short_video", "search", "mall", "follow", "other"}


def check_event(ev: Any, types: set[str], key_room: int) -> str | None:
    """The first broken rule of contract v1 for one event (of a topic for `types`), or None."""
    if type(ev) is not dict:
        return "not an object"
    t = ev.get("type")
    if t not in types:
        return f"type {t!r} not allowed on this topic"
    eid = ev.get("event_id")
    if type(eid) is not str or not 1 <= len(eid) <= 128:
        return "event_id"
    rules = {"ts": "id", "room_id": "id", "creator_id": "id", "user_id": "id", **EXTRA[t]}
    for name, rule in rules.items():
        value = ev.get(name)
        if rule == "id" and not (type(value) is int and 1 <= value <= ID_MAX):
            return f"{name}={value!r}"
        if rule == "str" and not (type(value) is str and value):
            return f"{name}={value!r}"
    for name, rule in OPTIONAL.items():
        value = ev.get(name)
        if value is not None and rule == "id" and not (type(value) is int and 1 <= value <= ID_MAX):
            return f"{name}={value!r}"
        if value is not None and rule == "str" and type(value) is not str:
            return f"{name}={value!r}"
    if "source" in ev and ev["source"] not in SOURCES:
        return f"source={ev['source']!r}"
    unknown = set(ev) - {"event_id", "type", *rules, *OPTIONAL, "source"}
    if unknown:
        return f"unknown fields {unknown}"
    return None if ev["room_id"] == key_room else "room_id differs from key"


def check_message(msg: Message, topics: Topics = TOPICS) -> list[str]:
    """Every problem of one message under the contract (empty for a valid message)."""
    if not msg.key.isdigit() or msg.key.startswith(b"0"):
        return ["bad key"]
    try:
        value = orjson.loads(msg.value)
    except orjson.JSONDecodeError:
        return ["not JSON"]
    events = value if type(value) is list else [value]
    if not events:
        return ["empty batch"]
    problems = [check_event(ev, allowed(topics)[msg.topic], int(msg.key)) for ev in events]
    return [p for p in problems if p is not None]
