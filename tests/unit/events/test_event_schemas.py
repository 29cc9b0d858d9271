"""The JSON Schema files and the code agree: on every example payload and on generated payloads.

Schemas are checked with a draft 2020-12 validator whose "integer" is strict (`type(x) is int`): plain
JSON Schema counts 1.0 as an integer, the contract does not (see schemas/events/README.md).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.validators import extend
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from pipeline.events import contract as c
from pipeline.events.deadletter import (
    MAX_ENVELOPE_BYTES,
    MAX_VALUE_BYTES,
    OTHER_VALUES_BYTES,
    REFUSED_BY_CLICKHOUSE,
    deadletter_envelope,
    deadletter_key,
    message_envelope,
    refused_row_envelope,
)
from pipeline.events.decode import MAX_DETAILED_REJECTIONS, Rejection, allowed_types_for_topic, decode_message
from pipeline.settings import PROJECT_ROOT, Topics
from pipeline.topics import DEADLETTER_MAX_MESSAGE_BYTES

SCHEMA_DIR = PROJECT_ROOT / "schemas" / "events"
EXAMPLES = SCHEMA_DIR / "examples"
CONTEXT = json.loads((EXAMPLES / "context.json").read_text(encoding="utf-8"))
TOPICS = Topics()
TOPIC_OF_TYPE = {
    "view": TOPICS.views,
    "click": TOPICS.clicks,
    "order": TOPICS.orders,
    "refund": TOPICS.orders,
}
# Sizes cannot live in small example files; tests/unit/events/test_event_contract.py covers them.
REASONS_COVERED_ELSEWHERE = {c.MESSAGE_TOO_LARGE, c.EVENT_TOO_LARGE, c.TOO_MANY_EVENTS}

StrictValidator = extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", lambda _, x: type(x) is int),
)


def _load_schemas() -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8")) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))
    }


def _without_dialect(schema: dict[str, Any]) -> dict[str, Any]:
    # jsonschema picks the validator class from "$schema" each time a $ref enters another file, which
    # would silently swap the strict class for the plain one; without "$schema" it keeps the caller's.
    return {k: v for k, v in schema.items() if k != "$schema"}


SCHEMAS = _load_schemas()
REGISTRY = Registry().with_resources(
    (schema["$id"], DRAFT202012.create_resource(_without_dialect(schema))) for schema in SCHEMAS.values()
)
PLAIN_REGISTRY = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)


def validator(name: str) -> Draft202012Validator:
    return StrictValidator(_without_dialect(SCHEMAS[name]), registry=REGISTRY)


EVENT_SCHEMA = validator("event.schema.json")


# -- the schema files themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_file_is_valid_draft_2020_12_with_id(name: str) -> None:
    schema = SCHEMAS[name]
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/v1/" + name)


def test_one_schema_per_event_type() -> None:
    assert {f"{t}.schema.json" for t in c.EVENT_TYPES} <= set(SCHEMAS)


def test_schema_limits_match_code_constants() -> None:
    defs = SCHEMAS["common.schema.json"]["$defs"]
    assert defs["id"]["minimum"] == c.ID_MIN and defs["id"]["maximum"] == c.ID_MAX
    assert (defs["amountFen"]["minimum"], defs["amountFen"]["maximum"]) == (1, c.AMOUNT_FEN_MAX)
    quantity = SCHEMAS["order.schema.json"]["properties"]["quantity"]
    assert (quantity["minimum"], quantity["maximum"]) == (1, c.QUANTITY_MAX)
    assert (defs["ts"]["minimum"], defs["ts"]["maximum"]) == (c.TS_MIN, c.TS_MAX)
    assert defs["eventId"]["maxLength"] == c.EVENT_ID_MAX_LEN
    assert defs["orderId"]["maxLength"] == c.ORDER_ID_MAX_LEN
    assert defs["base"]["properties"]["category"]["maxLength"] == c.CATEGORY_MAX_LEN
    assert set(defs["base"]["properties"]["source"]["enum"]) - {None} == c.SOURCES
    reasons = SCHEMAS["deadletter.schema.json"]["properties"]["reason"]["enum"]
    # The decoder's reasons, and the sink's for a row ClickHouse refused.
    assert set(reasons) == c.REASONS | {REFUSED_BY_CLICKHOUSE} and len(reasons) == len(c.REASONS) + 1


def test_plain_json_schema_counts_float_as_integer_which_the_code_does_not() -> None:
    """Documents why the strict validator is needed (README: 'Integers')."""
    ev = json.loads((EXAMPLES / "invalid" / "wrong_type--amount-written-as-float.json").read_text())
    plain = Draft202012Validator(SCHEMAS["event.schema.json"], registry=PLAIN_REGISTRY)
    assert plain.is_valid(ev)
    assert not EVENT_SCHEMA.is_valid(ev)


# -- examples: decoder and schema over every file ---------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_json(raw: bytes) -> Any:
    """stdlib parse (keeps integers beyond 64 bits as integers, as JSON Schema does), without NaN."""
    return json.loads(raw, parse_constant=_reject_constant)


def _example_paths() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*/*") if p.parent.name in ("valid", "invalid"))


def _context(path: Path, raw: bytes) -> dict[str, Any]:
    rel = f"{path.parent.name}/{path.name}"
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    first = obj[0] if isinstance(obj, list) and obj else obj
    first = first if isinstance(first, dict) else {}
    ctx = {
        "topic": TOPIC_OF_TYPE.get(first.get("type"), TOPICS.views),
        "key": str(first["room_id"]) if "room_id" in first else None,
        "accepted": 0,
        **CONTEXT["defaults"],
    }
    ctx.update(CONTEXT["examples"].get(rel, {}))
    return ctx


def _expected_reason(path: Path) -> str | None:
    return None if path.parent.name == "valid" else path.name.split("--", 1)[0]


def _example_id(path: Path) -> str:
    reason = _expected_reason(path)
    code_only = reason is not None and reason not in c.SCHEMA_REASONS
    return f"{path.parent.name}/{path.name}" + (" [code-only]" if code_only else "")


@pytest.mark.parametrize("path", _example_paths(), ids=_example_id)
def test_example_decodes_as_stated_and_schema_agrees(path: Path) -> None:
    raw = path.read_bytes()
    ctx = _context(path, raw)
    key = None if ctx["key"] is None else ctx["key"].encode()
    allowed = allowed_types_for_topic(ctx["topic"], TOPICS)
    out = decode_message(raw, key, allowed, ctx["now_ms"], ctx["max_skew_ms"])
    expected = _expected_reason(path)

    if expected is None:
        assert out.rejections == []
        obj = orjson.loads(raw)
        assert len(out.events) == (len(obj) if isinstance(obj, list) else 1)
    else:
        assert expected in c.REASONS, f"file name prefix {expected!r} is not a reason code"
        assert out.rejections, "an invalid example must be rejected"
        assert {r.reason for r in out.rejections} == {expected}, [r.message for r in out.rejections]
        assert len(out.events) == ctx["accepted"]
        assert all(r.message for r in out.rejections)

    # The schema sees what the decoder judged one by one: the single object, or each batch element.
    try:
        obj = _strict_json(raw)
    except ValueError:
        return  # not JSON at all: nothing for a schema to say (code-only)
    if obj is None:
        return  # empty_value: a whole-message rule
    rejected_at = {r.batch_index: r.reason for r in out.rejections}
    items = list(enumerate(obj)) if isinstance(obj, list) else [(None, obj)]
    for index, item in items:
        reason = rejected_at.get(index)
        schema_should_reject = reason in c.SCHEMA_REASONS
        assert EVENT_SCHEMA.is_valid(item) is not schema_should_reject, (index, reason)
        if reason is None and isinstance(item, dict):  # accepted: its own type's schema agrees too
            assert validator(f"{item['type']}.schema.json").is_valid(item)


def test_every_reason_code_has_an_example() -> None:
    prefixes = {p.name.split("--", 1)[0] for p in (EXAMPLES / "invalid").iterdir()}
    assert prefixes <= c.REASONS
    assert prefixes | REASONS_COVERED_ELSEWHERE == c.REASONS


def test_context_names_existing_examples() -> None:
    for rel in CONTEXT["examples"]:
        assert (EXAMPLES / rel).is_file(), rel


def test_valid_batches_pass_the_batch_schema() -> None:
    batch = validator("batch.schema.json")
    for path in (EXAMPLES / "valid").glob("batch--*.json"):
        assert batch.is_valid(json.loads(path.read_bytes())), path.name
    assert not batch.is_valid([])
    assert not batch.is_valid([{}] * (c.MAX_BATCH_EVENTS + 1))  # too_many_events, like the decoder


# -- generated payloads: code and schema accept and reject the same ones ----------------------------------

BIG = c.ID_MAX
ids = st.one_of(st.integers(1, BIG), st.sampled_from([1, BIG]))


def _up_to(ceiling: int) -> st.SearchStrategy[int]:
    """Mostly within a ceiling (valid), with its edges and the id range beyond it (out_of_range)."""
    return st.one_of(
        st.integers(1, ceiling), st.integers(1, ceiling), st.sampled_from([1, ceiling, ceiling + 1]), ids
    )


amounts = _up_to(c.AMOUNT_FEN_MAX)
quantities = _up_to(c.QUANTITY_MAX)
text = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["类", "x", "😀"]).flatmap(lambda ch: st.integers(0, 140).map(lambda n: ch * n)),
)
weird = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, BIG, BIG + 1, 2**64 - 1, 2**64, -(2**63), 1.0, 0.5, -1.0, 1e16, 1e30]),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
    st.sampled_from([*sorted(c.SOURCES | c.EVENT_TYPES), "VIEW", "wechat", ""]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = (
    *c.COMMON_REQUIRED,
    "product_id",
    "order_id",
    "amount_fen",
    "quantity",
    *c.COMMON_OPTIONAL,
    "extra",
)


_ID_EDGES = [-1, 0, 1, BIG, BIG + 1, 2**64 - 1, 2**64, True, 1.0]
_TS_EDGES = [-1, 0, 1, c.TS_MAX, c.TS_MAX + 1, False, 0.0]
EDGES: dict[str, list[Any]] = {
    "event_id": ["", "e", "e" * 128, "e" * 129, "类" * 128, "类" * 129],
    "order_id": ["", "o", "o" * 128, "o" * 129],
    "category": ["", "c" * 64, "c" * 65, "类" * 64, "类" * 65, None],
    "source": [None, "", "mall", "Mall", "wechat"],
    "ts": _TS_EDGES,
    "amount_fen": [*_ID_EDGES, c.AMOUNT_FEN_MAX, c.AMOUNT_FEN_MAX + 1],
    "quantity": [*_ID_EDGES, c.QUANTITY_MAX, c.QUANTITY_MAX + 1, 2**32, None],
    "merchant_id": [*_ID_EDGES, None],
    "mcn_id": [*_ID_EDGES, None],
    "room_id": _ID_EDGES,
}


@st.composite
def near_valid_events(draw: st.DrawFn) -> Any:
    t = draw(st.sampled_from(sorted(c.EVENT_TYPES)))
    ev: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=128)),
        "type": t,
        "ts": draw(st.one_of(st.integers(c.TS_MIN, c.TS_MAX), st.sampled_from([0, c.TS_MAX]))),
        "room_id": draw(ids),
        "creator_id": draw(ids),
        "user_id": draw(ids),
    }
    if t in ("click", "order"):
        ev["product_id"] = draw(ids)
    if t in ("order", "refund"):
        ev["order_id"] = draw(st.text(min_size=1, max_size=128))
        ev["amount_fen"] = draw(amounts)
    if t == "order" and draw(st.booleans()):
        ev["quantity"] = draw(st.one_of(quantities, st.none()))
    for name in c.COMMON_OPTIONAL:
        if draw(st.integers(0, 3)) == 0:
            ev[name] = draw(
                {
                    "merchant_id": st.one_of(ids, st.none()),
                    "mcn_id": st.one_of(ids, st.none()),
                    "category": st.one_of(st.text(max_size=64), st.none()),
                    "source": st.sampled_from([*sorted(c.SOURCES), None]),
                }[name]
            )
    own_fields = [*c.COMMON_REQUIRED[1:], *c.TYPE_REQUIRED[t], *c.COMMON_OPTIONAL]
    if t == "order":
        own_fields.append("quantity")
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["delete", "set", "edge", "edge", "rename_type", "extra"]))
        # Mostly a field this type defines, where a bad value matters; sometimes any field.
        name = draw(st.sampled_from(own_fields if draw(st.integers(0, 4)) else FIELDS))
        if action == "delete":
            ev.pop(name, None)
        elif action == "set":
            ev[name] = draw(weird)
        elif action == "edge":
            ev[name] = draw(st.sampled_from(EDGES.get(name, EDGES["room_id"])))
        elif action == "rename_type":
            ev["type"] = draw(st.sampled_from([*sorted(c.EVENT_TYPES), "purchase", "View", ""]))
        else:
            ev[draw(st.text(max_size=8))] = draw(weird)
    # Mostly the type's own topic, so the comparison is about fields rather than wrong_topic.
    topic = draw(st.sampled_from(TOPICS.inputs)) if draw(st.integers(0, 5)) == 0 else TOPIC_OF_TYPE[t]
    if draw(st.integers(0, 30)) == 0:  # now and then, not an object at all (arrays are batches: elsewhere)
        return draw(weird.filter(lambda v: v is not None and not isinstance(v, list))), topic
    return ev, topic


def _accepted_by_schema(obj: Any, allowed: frozenset[str]) -> bool:
    return EVENT_SCHEMA.is_valid(obj) and obj["type"] in allowed


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=near_valid_events())
def test_code_and_schema_accept_the_same_payloads(case: tuple[Any, str]) -> None:
    payload, topic = case
    raw = json.dumps(payload).encode()  # stdlib can write integers beyond 64 bits; orjson cannot
    allowed = allowed_types_for_topic(topic, TOPICS)
    # now_ms at the end of time and no key: the clock and key rules stay out of the comparison.
    out = decode_message(raw, None, allowed, c.TS_MAX, 0)
    code_accepts = not out.rejections
    assert len(out.events) + len(out.rejections) == 1
    schema_accepts = _accepted_by_schema(json.loads(raw), allowed)
    assert code_accepts == schema_accepts, out.rejections
    if not code_accepts:
        expected = c.SCHEMA_REASONS | {c.WRONG_TOPIC}
        assert out.rejections[0].reason in expected, out.rejections[0]


BASE_EVENTS: dict[str, dict[str, Any]] = {
    "view": {"event_id": "v-1", "type": "view", "ts": 1, "room_id": 7, "creator_id": 8, "user_id": 9},
    "click": {
        "event_id": "c-1",
        "type": "click",
        "ts": 1,
        "room_id": 7,
        "creator_id": 8,
        "user_id": 9,
        "product_id": 5,
    },
    "order": {
        **{"event_id": "o-1", "type": "order", "ts": 1, "room_id": 7, "creator_id": 8, "user_id": 9},
        **{"order_id": "4921", "product_id": 5, "amount_fen": 100},
    },
    "refund": {
        **{"event_id": "r-1", "type": "refund", "ts": 1, "room_id": 7, "creator_id": 8, "user_id": 9},
        **{"order_id": "4921", "amount_fen": 100},
    },
}
GRID_VALUES: list[Any] = [None, True, False, 0, 1, -1, 1.0, 1.5, "1", "", [], {}, BIG, BIG + 1, 2**64]


@pytest.mark.parametrize("event_type", sorted(c.EVENT_TYPES))
def test_code_and_schema_agree_on_every_single_field_change(event_type: str) -> None:
    """Every field (and its absence) of each type against typical and edge values, one change at a time."""
    allowed = allowed_types_for_topic(TOPIC_OF_TYPE[event_type], TOPICS)
    checked = 0
    for name in FIELDS:
        values = [*GRID_VALUES, *EDGES.get(name, []), "missing"]
        for value in values:
            ev = dict(BASE_EVENTS[event_type])
            if value == "missing" and type(value) is str:
                ev.pop(name, None)
            else:
                ev[name] = value
            raw = json.dumps(ev).encode()
            out = decode_message(raw, None, allowed, c.TS_MAX, 0)
            assert (not out.rejections) == _accepted_by_schema(json.loads(raw), allowed), (name, value, out)
            checked += 1
    assert checked > 200


# -- the dead-letter envelope -----------------------------------------------------------------------------

DEADLETTER = validator("deadletter.schema.json")


@pytest.mark.parametrize("key", [None, b"7301234567890123456", b"\xff\xfe-bad"])
def test_deadletter_envelope_matches_its_schema_and_keeps_the_bytes(key: bytes | None) -> None:
    raw = b'{"type":"view","event_id":"e-1"}\xff'
    rejection = Rejection(c.NOT_UTF8, "message is not valid UTF-8", None, raw)
    doc = orjson.loads(deadletter_envelope(rejection, "live.views", 3, 42, key, 1731290000000))
    assert DEADLETTER.is_valid(doc), list(DEADLETTER.iter_errors(doc))
    assert base64.b64decode(doc["value_b64"]) == raw
    assert doc["key"] == (None if key is None else key.decode("utf-8", "backslashreplace"))
    assert (doc["source_topic"], doc["partition"], doc["offset"], doc["batch_index"]) == (
        "live.views",
        3,
        42,
        None,
    )
    assert (doc["reason"], doc["rejected_at"], doc["schema_version"]) == (c.NOT_UTF8, 1731290000000, 1)


def test_deadletter_envelope_for_a_batch_element_carries_the_element() -> None:
    good = {"event_id": "v-1", "type": "view", "ts": 1, "room_id": 7, "creator_id": 1, "user_id": 1}
    bad = {**good, "event_id": "v-2", "user_id": True}
    out = decode_message(orjson.dumps([good, bad]), b"7", c.VIEW_TYPES, 10, 0)
    (rejection,) = out.rejections
    doc = orjson.loads(deadletter_envelope(rejection, "live.views", 0, 5, b"7", 99))
    assert DEADLETTER.is_valid(doc)
    assert doc["batch_index"] == 1 and doc["reason"] == c.WRONG_TYPE
    assert orjson.loads(base64.b64decode(doc["value_b64"])) == bad


def test_one_envelope_carries_a_junk_batch_counted_by_reason() -> None:
    good = {"event_id": "v-1", "type": "view", "ts": 1, "room_id": 7, "creator_id": 1, "user_id": 1}
    items = [good, *range(300), *[{**good, "user_id": 0}] * 50]
    out = decode_message(orjson.dumps(items), b"7", c.VIEW_TYPES, 10, 0)
    envelope = message_envelope(out.rejections, out.rejected_by_reason, "live.views", 0, 5, b"7", 99)
    doc = orjson.loads(envelope)
    assert DEADLETTER.is_valid(doc), list(DEADLETTER.iter_errors(doc))
    assert (doc["reason"], doc["batch_index"]) == (c.NOT_OBJECT, 1)
    assert doc["rejected_events"] == 350 == len(items) - len(out.events)
    assert doc["reasons"] == {c.NOT_OBJECT: 300, c.OUT_OF_RANGE: 50}
    others = doc["other_rejections"]
    assert len(others) == MAX_DETAILED_REJECTIONS - 1
    assert [e["batch_index"] for e in others] == list(range(2, MAX_DETAILED_REJECTIONS + 1))
    assert [base64.b64decode(e["value_b64"]) for e in others[:2]] == [b"1", b"2"]


def _oversized_rejections() -> tuple[list[Rejection], dict[str, int]]:
    # The worst a message can do: 100 detailed rejections, each a 64 KiB-plus element whose message
    # shows control characters (6 bytes each once escaped as JSON).
    raw = b"\x01" * (70 * 1024)
    message = "\x01" * 1000
    rejections = [Rejection(c.EVENT_TOO_LARGE, message, i, raw) for i in range(MAX_DETAILED_REJECTIONS)]
    return rejections, {c.EVENT_TOO_LARGE: 5000, c.NOT_OBJECT: 10_000}


def test_envelope_of_an_oversized_message_stays_under_the_topic_limit() -> None:
    value = b"[" + b"\xff" * (800 * 1024)  # an ~800 KB rejected message: 1.07 MB as plain base64
    key = b"k" * (600 * 1024)
    envelope = deadletter_envelope(Rejection(c.NOT_UTF8, "bad", None, value), "live.views", 0, 1, key, 99)
    record_key = deadletter_key(key)
    assert len(envelope) + len(record_key) < DEADLETTER_MAX_MESSAGE_BYTES
    doc = orjson.loads(envelope)
    assert DEADLETTER.is_valid(doc), list(DEADLETTER.iter_errors(doc))
    kept = base64.b64decode(doc["value_b64"])
    assert kept == value[:MAX_VALUE_BYTES] and doc["value_truncated"] is True
    assert doc["value_length"] == len(value)
    assert doc["value_sha256"] == hashlib.sha256(value).hexdigest()
    assert doc["key_truncated"] is True and doc["key"] == "k" * len(record_key)


def test_envelope_of_the_worst_batch_stays_under_its_bound() -> None:
    rejections, counts = _oversized_rejections()
    key = b"\xff" * 5000  # undecodable: four characters per byte, each backslash escaped again
    envelope = message_envelope(rejections, counts, "live.views", 0, 1, key, 99)
    assert len(envelope) <= MAX_ENVELOPE_BYTES
    assert MAX_ENVELOPE_BYTES + len(deadletter_key(key)) < DEADLETTER_MAX_MESSAGE_BYTES
    doc = orjson.loads(envelope)
    assert DEADLETTER.is_valid(doc), list(DEADLETTER.iter_errors(doc))
    assert doc["rejected_events"] == 15_000
    others = doc["other_rejections"]
    assert len(others) == MAX_DETAILED_REJECTIONS - 1  # the budgets fit: the fallback is not needed
    assert sum(len(base64.b64decode(e["value_b64"])) for e in others) == OTHER_VALUES_BYTES
    assert all(e["value_length"] == 70 * 1024 for e in others)
    assert others[-1]["value_b64"] == "" and others[-1]["value_truncated"] is True


@pytest.mark.parametrize("source", [("live.orders", 3, 17), None])
def test_a_refused_row_envelope_matches_the_deadletter_schema(source) -> None:
    row = {"window_start": 1, "gmv_fen": 2**64 + 1, "room_id": 7}  # an overflowing sum, as ClickHouse saw it
    doc = orjson.loads(refused_row_envelope("db.room_windows", row, "Code: 6. boom", None, source, 5))
    assert DEADLETTER.is_valid(doc), list(DEADLETTER.iter_errors(doc))
    assert doc["reason"] == REFUSED_BY_CLICKHOUSE and doc["table"] == "db.room_windows"
    assert doc["row"] == {"window_start": 1, "gmv_fen": str(2**64 + 1), "room_id": 7}
    assert orjson.loads(base64.b64decode(doc["value_b64"])) == doc["row"]
    assert (doc["source_topic"], doc["partition"], doc["offset"]) == (source or ("db.room_windows", 0, 0))
