"""Invalid messages, the kinds producers really send, each with the reason code a validator must give.

Contract: `make_invalid` returns a message that yields exactly ONE rejection under the v1 contract,
whose reason code (a `pipeline.events.contract` code) is `Message.kind`, and no valid event. Each bad
record starts from a realistic valid event with a fresh `event_id`, then breaks one thing, so the
validator's first-failing-rule order cannot turn it into another reason.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Protocol

import orjson

from pipeline.settings import Topics
from pipeline.traffic.message import Message
from pipeline.traffic.population import Population


class EventSource(Protocol):
    """What a bad record is made from: the part of `generator.TrafficModel` this module uses (a
    protocol, so that the generator imports this module and not the other way round)."""

    topics: Topics
    population: Population

    @property
    def rng(self) -> random.Random: ...

    def base_event(self, kind: int, room: int, user_id: int, now: float) -> dict[str, Any]: ...


# kind (= expected reason code) -> relative weight; common producer bugs are weighted higher.
WEIGHTS = {
    "not_json": 2,
    "not_utf8": 1,
    "empty_value": 1,
    "not_object": 1,
    "empty_batch": 1,
    "bad_key": 1,
    "missing_field": 3,
    "wrong_type": 3,
    "out_of_range": 3,  # includes negative and zero amounts
    "invalid_value": 1,
    "unknown_event_type": 1,
    "wrong_topic": 2,
    "key_mismatch": 2,
}
INVALID_KINDS = tuple(WEIGHTS)
_CUM = list(itertools.accumulate(WEIGHTS.values()))
_REQUIRED = {
    "view": ("event_id", "type", "ts", "room_id", "creator_id", "user_id"),
    "click": ("event_id", "type", "ts", "room_id", "creator_id", "user_id", "product_id"),
    "order": (
        "event_id",
        "type",
        "ts",
        "room_id",
        "creator_id",
        "user_id",
        "order_id",
        "product_id",
        "amount_fen",
    ),
    "refund": ("event_id", "type", "ts", "room_id", "creator_id", "user_id", "order_id", "amount_fen"),
}
_TOPIC_INDEX = {"view": 0, "click": 1, "order": 2, "refund": 2}


def make_invalid(model: EventSource, room: int, now: float) -> Message:
    """One invalid message for `room` at simulated time `now` (see the module contract)."""
    rng = model.rng
    kind = rng.choices(INVALID_KINDS, cum_weights=_CUM)[0]
    ev = sample_event(model, rng.choice(("view", "click", "order", "refund")), room, now)
    topic = model.topics.inputs[_TOPIC_INDEX[ev["type"]]]
    key = model.population.keys[room]
    value: Any = ev  # serialized at the end unless a kind sets bytes
    if kind == "not_json":  # a truncated write, or a Python repr instead of JSON
        ev = sample_event(model, "view", room, now)  # ASCII only: a cut cannot make it bad UTF-8
        value = rng.choice((orjson.dumps(ev)[:-20], str(ev).encode()))
    elif kind == "not_utf8":  # a client that encodes JSON as UTF-16
        value = orjson.dumps(ev).decode().encode("utf-16")
    elif kind == "empty_value":  # nothing, or JSON null (no event either way)
        value = rng.choice((b"", b"null"))
    elif kind == "not_object":
        value = rng.choice((b"42", b'"view"', b"true", b"[null]", b"[1]", b'["view"]'))
    elif kind == "empty_batch":
        value = b"[]"
    elif kind == "bad_key":  # an event keyed by something other than str(room_id)
        key = rng.choice((b"room-" + key, b"0" + key, b"-" + key, b" " + key))
    elif kind == "missing_field":
        del ev[rng.choice(_REQUIRED[ev["type"]])]
    elif kind == "wrong_type":
        _wrong_type(rng, ev)
    elif kind == "out_of_range":
        _out_of_range(rng, ev)
    elif kind == "invalid_value":
        ev["source"] = rng.choice(("tv", "LIVE_FEED", "直播", ""))
    elif kind == "unknown_event_type":
        ev["type"] = rng.choice(("purchase", "like", "share", "View", ""))
    elif kind == "wrong_topic":  # an event on a topic for other types
        index = _TOPIC_INDEX[ev["type"]]
        topic = model.topics.inputs[(index + 1 + int(rng.random() * 2)) % 3]
    elif kind == "key_mismatch":  # a batch of the room named by the key holding another room's event
        other = (room + 1) % len(model.population.room_ids)
        if other != room:
            ev["room_id"] = model.population.room_ids[other]
            ev["creator_id"] = model.population.room_creator_ids[other]
        else:
            ev["room_id"] += 1
        value = [ev]
    if not isinstance(value, bytes):
        value = orjson.dumps(value)
    return Message(topic, key, value, [], True, kind, 0)


def sample_event(model: EventSource, type_: str, room: int, now: float) -> dict[str, Any]:
    """A valid event of `type_` for `room`, outside the funnel (schedules and counts nothing)."""
    rng, pop = model.rng, model.population
    ev = model.base_event(
        ("view", "click", "order", "refund").index(type_), room, pop.user(rng.random()), now
    )
    if type_ == "view":
        ev["source"] = "live_feed"
        return ev
    product = pop.product(room, rng.random())
    if type_ != "refund":
        ev["product_id"] = product.product_id
    if type_ != "click":
        ev["order_id"] = f"{ev['event_id']}-o"
        ev["amount_fen"] = product.price_fen
    if type_ == "order":
        ev["quantity"] = 1
    ev["merchant_id"] = product.merchant_id
    ev["category"] = product.category
    return ev


def _wrong_type(rng: Any, ev: dict[str, Any]) -> None:
    choices: list[tuple[str, Any]] = [
        ("ts", str(ev["ts"])),  # epoch ms as a string
        ("ts", float(ev["ts"])),  # 1700000000000.0: a number with a fraction part
        ("user_id", str(ev["user_id"])),
        ("room_id", str(ev["room_id"])),
        ("event_id", 12345),
        ("user_id", None),  # a required field sent as null
        ("type", 1),
    ]
    if ev["type"] in ("order", "refund"):
        choices.append(("amount_fen", ev["amount_fen"] / 100))  # yuan as a float instead of fen
    if ev["type"] == "order":
        choices.append(("quantity", True))  # JSON true is not an integer
    name, value = rng.choice(choices)
    ev[name] = value


def _out_of_range(rng: Any, ev: dict[str, Any]) -> None:
    choices: list[tuple[str, Any]] = [
        ("user_id", 0),
        ("creator_id", -ev["creator_id"]),
        ("user_id", 2**63),  # one past the largest signed 64-bit id
        ("ts", -1),
        ("event_id", ""),
        ("event_id", "e" * 129),
    ]
    if ev["type"] in ("order", "refund"):
        choices += [("amount_fen", -ev["amount_fen"]), ("amount_fen", 0)]
    if ev["type"] == "order":
        choices.append(("quantity", 0))
    name, value = rng.choice(choices)
    ev[name] = value
