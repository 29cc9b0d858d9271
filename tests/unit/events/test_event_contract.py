"""decode_message and validate_event: every reason code, batches, keys, sizes and the count invariant."""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.events import contract as c
from pipeline.events.decode import (
    MAX_DETAILED_REJECTIONS,
    DecodedMessage,
    Rejection,
    allowed_types_for_topic,
    decode_message,
    parse_key,
)
from pipeline.settings import Topics

NOW = 1_731_290_000_000  # 2024-11-11 09:53:20 CST
SKEW = 300_000
ROOM = 7301234567890123456
KEY = str(ROOM).encode()


def view(**changes: Any) -> dict[str, Any]:
    ev = {
        "event_id": "v-1",
        "type": "view",
        "ts": NOW - 1000,
        "room_id": ROOM,
        "creator_id": 42,
        "user_id": 9,
    }
    ev.update(changes)
    return {k: v for k, v in ev.items() if v is not _DROP}


def order(**changes: Any) -> dict[str, Any]:
    base = view(event_id="o-1", type="order", order_id="4921", product_id=5, amount_fen=19900)
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()


def decode(value: Any, key: bytes | None = KEY, types: frozenset[str] = c.EVENT_TYPES) -> DecodedMessage:
    return decode_message(value, key, types, NOW, SKEW)


def only_reason(out: DecodedMessage) -> str:
    assert out.events == []
    assert len(out.rejections) == 1
    assert out.rejections[0].message
    return out.rejections[0].reason


# -- valid input ------------------------------------------------------------------------------------------


def test_single_valid_event_is_the_orjson_dict() -> None:
    out = decode(orjson.dumps(view(source="live_feed", merchant_id=7, category="美妆")))
    assert out.rejections == []
    assert out.events == [view(source="live_feed", merchant_id=7, category="美妆")]


def test_amount_and_quantity_at_their_ceilings_are_valid() -> None:
    out = decode(orjson.dumps(order(amount_fen=c.AMOUNT_FEN_MAX, quantity=c.QUANTITY_MAX)))
    assert out.rejections == [] and out.events[0]["amount_fen"] == c.AMOUNT_FEN_MAX
    assert decode(orjson.dumps(order(type="refund", amount_fen=c.AMOUNT_FEN_MAX))).rejections == []


def test_order_gets_quantity_1_when_absent_or_null_and_keeps_a_given_one() -> None:
    assert decode(orjson.dumps(order())).events[0]["quantity"] == 1
    assert decode(orjson.dumps(order(quantity=None))).events[0]["quantity"] == 1
    assert decode(orjson.dumps(order(quantity=3))).events[0]["quantity"] == 3


def test_rejected_order_is_not_modified() -> None:
    out = decode(orjson.dumps([order(), order(source="wechat")]))
    assert out.events[0]["quantity"] == 1
    assert "quantity" not in out.rejections[0].event
    assert "quantity" not in orjson.loads(out.rejections[0].raw)


def test_unknown_fields_and_null_optionals_are_accepted() -> None:
    ev = view(mcn_id=None, source=None, category=None, merchant_id=None, extra={"x": [1.5, True]})
    assert decode(orjson.dumps(ev)).events == [ev]


def test_single_event_without_key_skips_the_room_check_unless_a_key_is_required() -> None:
    assert len(decode(orjson.dumps(view(room_id=5)), key=None).events) == 1
    assert len(decode(orjson.dumps(view(room_id=5)), key=b"").events) == 1
    # What the pipeline passes: a key-less event would land on any partition and split its room's row.
    for key in (None, b""):
        value = orjson.dumps(view(room_id=5))
        out = decode_message(value, key, c.EVENT_TYPES, NOW, SKEW, require_key=True)
        assert only_reason(out) == c.BAD_KEY
        assert out.rejections[0].raw == value and "key is missing" in out.rejections[0].message
    assert decode_message(orjson.dumps(view()), KEY, c.EVENT_TYPES, NOW, SKEW, require_key=True).events


def test_batch_keeps_order_and_rejects_bad_elements_alone() -> None:
    items = [view(event_id="a"), view(event_id="b", user_id=0), 7, view(event_id="c")]
    out = decode(orjson.dumps(items))
    assert [e["event_id"] for e in out.events] == ["a", "c"]
    assert [(r.batch_index, r.reason) for r in out.rejections] == [(1, c.OUT_OF_RANGE), (2, c.NOT_OBJECT)]
    assert out.rejections[0].raw == orjson.dumps(items[1])  # element re-serialized
    assert out.rejections[0].event == items[1]
    assert (out.rejections[1].raw, out.rejections[1].event) == (b"7", None)


@pytest.mark.parametrize(
    ("topic", "types"),
    [("live.views", {"view"}), ("live.clicks", {"click"}), ("live.orders", {"order", "refund"})],
)
def test_allowed_types_for_topic(topic: str, types: set[str]) -> None:
    assert allowed_types_for_topic(topic, Topics()) == types


def test_allowed_types_follow_configured_topic_names_and_reject_others() -> None:
    topics = Topics(views="campaign.views")
    assert allowed_types_for_topic("campaign.views", topics) == {"view"}
    with pytest.raises(ValueError, match=r"live\.deadletter"):
        allowed_types_for_topic(topics.deadletter, topics)


# -- whole-message reasons ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, b"", b"null", b" null\n", bytearray(b"null")])
def test_empty_value(value: Any) -> None:
    out = decode(value)
    assert only_reason(out) == c.EMPTY_VALUE
    assert out.rejections[0].raw == (bytes(value) if value else b"")
    assert out.rejections[0].batch_index is None


def test_message_too_large_is_checked_before_parsing() -> None:
    big = b"[" + b" " * c.MAX_MESSAGE_BYTES + b"]"
    out = decode(big)
    assert only_reason(out) == c.MESSAGE_TOO_LARGE
    assert out.rejections[0].raw == big


def test_message_of_exactly_1_mib_is_parsed() -> None:
    body = orjson.dumps([view(event_id=f"v-{i}") for i in range(3)])
    padded = body + b" " * (c.MAX_MESSAGE_BYTES - len(body))
    assert len(decode(padded).events) == 3


@pytest.mark.parametrize("value", [b"\xff", b'{"event_id":"\xe7\xbe"}', "美妆".encode("gbk")])
def test_not_utf8(value: bytes) -> None:
    out = decode(value)
    assert only_reason(out) == c.NOT_UTF8
    assert out.rejections[0].raw == value


@pytest.mark.parametrize("value", [b"{", b"{'a': 1}", b"NaN", b"[1,]", b'"\\ud800"', b"[" * 2000, b"1e400"])
def test_not_json(value: bytes) -> None:
    assert only_reason(decode(value)) == c.NOT_JSON


def test_value_that_is_not_bytes_is_rejected_not_raised() -> None:
    assert only_reason(decode("{}")) == c.NOT_JSON  # type: ignore[arg-type]
    assert only_reason(decode(12)) == c.NOT_JSON  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [b"42", b'"view"', b"true", b"1.5"])
def test_not_object_at_top_level(value: bytes) -> None:
    assert only_reason(decode(value)) == c.NOT_OBJECT


def test_empty_batch() -> None:
    out = decode(b" [ ] ")
    assert only_reason(out) == c.EMPTY_BATCH
    assert out.rejections[0].raw == b" [ ] "


@pytest.mark.parametrize("key", [None, b""])
def test_batch_without_key_is_rejected_whole(key: bytes | None) -> None:
    value = orjson.dumps([view(), view(event_id="v-2")])
    out = decode(value, key=key)
    assert only_reason(out) == c.BAD_KEY
    assert out.rejections[0].raw == value  # the whole message, replayable with a fixed key


@pytest.mark.parametrize(
    "key", [b"0042", b"0", b"-5", b"+5", b"5 ", b"room-5", b"\xd9\xa5", str(c.ID_MAX + 1).encode(), b"1" * 20]
)
def test_unusable_key_rejects_single_events_and_batches(key: bytes) -> None:
    assert only_reason(decode(orjson.dumps(view(room_id=5)), key=key)) == c.BAD_KEY
    assert only_reason(decode(orjson.dumps([view(room_id=5)]), key=key)) == c.BAD_KEY


# -- bounded cost of bad input -------------------------------------------------------------------------


def test_junk_batch_keeps_the_first_rejections_in_detail_and_counts_every_one() -> None:
    items: list[Any] = [view(event_id="ok-1"), *range(500), {}, view(event_id="ok-2"), *[{"type": 1}] * 300]
    out = decode(orjson.dumps(items))
    assert [ev["event_id"] for ev in out.events] == ["ok-1", "ok-2"]
    assert len(out.rejections) == MAX_DETAILED_REJECTIONS
    assert [r.batch_index for r in out.rejections] == list(range(1, MAX_DETAILED_REJECTIONS + 1))
    assert out.rejected_by_reason == {c.NOT_OBJECT: 500, c.MISSING_FIELD: 1, c.WRONG_TYPE: 300}
    assert len(out.events) + out.rejected == len(items)


def test_counted_rejections_have_the_reason_a_detailed_one_would_have() -> None:
    bad = [view(event_id=f"v-{i}", user_id=0) for i in range(MAX_DETAILED_REJECTIONS)]
    tail = [order(amount_fen=0), view(source="tv"), view(room_id=5), view(ts=NOW + SKEW + 1), order()]
    out = decode(orjson.dumps([*bad, *tail]))
    assert out.rejected_by_reason == {
        c.OUT_OF_RANGE: MAX_DETAILED_REJECTIONS + 1,
        c.INVALID_VALUE: 1,
        c.KEY_MISMATCH: 1,
        c.TS_IN_FUTURE: 1,
    }
    assert [ev["quantity"] for ev in out.events] == [c.DEFAULT_QUANTITY]  # valid past the detail limit


def test_a_1_mib_array_of_zeros_is_one_rejection() -> None:
    value = b"[" + b",".join([b"0"] * (c.MAX_MESSAGE_BYTES // 2 - 1)) + b"]"
    assert len(value) <= c.MAX_MESSAGE_BYTES
    out = decode(value)
    assert only_reason(out) == c.TOO_MANY_EVENTS
    assert out.rejected == 1 and out.rejections[0].raw == value


def test_batch_of_max_events_is_decoded_element_by_element() -> None:
    out = decode(orjson.dumps([0] * c.MAX_BATCH_EVENTS))
    assert out.rejected_by_reason == {c.NOT_OBJECT: c.MAX_BATCH_EVENTS}
    assert only_reason(decode(orjson.dumps([0] * (c.MAX_BATCH_EVENTS + 1)))) == c.TOO_MANY_EVENTS


def test_no_all_valid_batch_reaches_the_element_cap() -> None:
    smallest = {"type": "view", "event_id": "a", "ts": 0, "room_id": 1, "creator_id": 1, "user_id": 1}
    assert c.validate_event(dict(smallest), c.VIEW_TYPES, 1, NOW, SKEW) is None
    per_element = len(orjson.dumps(smallest)) + 1  # and its comma
    assert c.MAX_MESSAGE_BYTES // per_element < c.MAX_BATCH_EVENTS


def test_parse_key() -> None:
    assert parse_key(None) is None and parse_key(b"") is None
    assert parse_key(b"7") == 7 and parse_key(str(c.ID_MAX).encode()) == c.ID_MAX
    assert parse_key(b"07") == -1 and parse_key(b"x") == -1


# -- per-event reasons ------------------------------------------------------------------------------------


def test_single_event_over_64_kib() -> None:
    ev = view(padding="x" * c.MAX_EVENT_BYTES)
    out = decode(orjson.dumps(ev))
    assert only_reason(out) == c.EVENT_TOO_LARGE
    assert out.rejections[0].batch_index is None


def test_single_event_of_exactly_64_kib_is_accepted() -> None:
    raw = orjson.dumps(view(padding=""))
    raw = orjson.dumps(view(padding="x" * (c.MAX_EVENT_BYTES - len(raw))))
    assert len(raw) == c.MAX_EVENT_BYTES
    assert len(decode(raw).events) == 1


def test_batch_element_over_64_kib_by_its_reserialized_size() -> None:
    small = [view(event_id=f"v-{i}") for i in range(200)]
    big = view(event_id="big", padding="x" * c.MAX_EVENT_BYTES)
    out = decode(orjson.dumps([*small[:130], big, *small[130:]]))
    assert len(out.events) == 200
    assert [(r.batch_index, r.reason) for r in out.rejections] == [(130, c.EVENT_TOO_LARGE)]


def test_batch_element_whose_floats_grow_when_reserialized_is_measured_after() -> None:
    # "9e15" is 4 bytes in the message but 18 once orjson writes the float back: the element's
    # re-serialized size is what counts, so this message under 64 KiB holds an oversized element.
    value = b"[" + orjson.dumps(view())[:-1] + b',"pad":[' + b",".join([b"9e15"] * 5000) + b"]}]"
    assert len(value) < c.MAX_EVENT_BYTES
    assert only_reason(decode(value)) == c.EVENT_TOO_LARGE


EVENT_CASES = [
    (view(user_id=_DROP), c.MISSING_FIELD),
    (view(type=_DROP), c.MISSING_FIELD),
    (order(order_id=_DROP), c.MISSING_FIELD),
    (order(type="refund", amount_fen=_DROP), c.MISSING_FIELD),
    (view(type="click"), c.MISSING_FIELD),  # click needs product_id
    (view(ts=None), c.WRONG_TYPE),
    (view(ts="2024-11-11T09:53:20+08:00"), c.WRONG_TYPE),
    (view(room_id=str(ROOM)), c.WRONG_TYPE),
    (view(user_id=True), c.WRONG_TYPE),
    (view(creator_id=1.0), c.WRONG_TYPE),
    (view(type=["view"]), c.WRONG_TYPE),
    (view(event_id=17), c.WRONG_TYPE),
    (view(mcn_id=False), c.WRONG_TYPE),
    (view(category=5), c.WRONG_TYPE),
    (view(source=1), c.WRONG_TYPE),
    (order(amount_fen=199.5), c.WRONG_TYPE),
    (order(amount_fen=100.0), c.WRONG_TYPE),
    (order(quantity="2"), c.WRONG_TYPE),
    (order(order_id=4921), c.WRONG_TYPE),
    (order(amount_fen=-100), c.OUT_OF_RANGE),
    (order(amount_fen=0), c.OUT_OF_RANGE),
    (order(quantity=0), c.OUT_OF_RANGE),
    (order(amount_fen=c.AMOUNT_FEN_MAX + 1), c.OUT_OF_RANGE),
    (order(amount_fen=c.ID_MAX), c.OUT_OF_RANGE),  # two of these overflowed the Int64 GMV column
    (order(type="refund", amount_fen=c.AMOUNT_FEN_MAX + 1), c.OUT_OF_RANGE),
    (order(quantity=c.QUANTITY_MAX + 1), c.OUT_OF_RANGE),
    (order(quantity=2**32), c.OUT_OF_RANGE),  # over raw_events.quantity UInt32
    (view(user_id=0), c.OUT_OF_RANGE),
    (view(user_id=c.ID_MAX + 1), c.OUT_OF_RANGE),
    (view(merchant_id=-1), c.OUT_OF_RANGE),
    (view(ts=-1), c.OUT_OF_RANGE),
    (view(event_id=""), c.OUT_OF_RANGE),
    (view(event_id="e" * 129), c.OUT_OF_RANGE),
    (order(order_id=""), c.OUT_OF_RANGE),
    (order(order_id="o" * 129), c.OUT_OF_RANGE),
    (view(category="类" * 65), c.OUT_OF_RANGE),
    (view(source="wechat"), c.INVALID_VALUE),
    (view(source="Live_Feed"), c.INVALID_VALUE),
    (view(type="purchase"), c.UNKNOWN_EVENT_TYPE),
    (view(type="View"), c.UNKNOWN_EVENT_TYPE),
    (view(room_id=ROOM + 1), c.KEY_MISMATCH),
    (view(ts=NOW + SKEW + 1), c.TS_IN_FUTURE),
    (view(ts=NOW * 1000), c.TS_IN_FUTURE),
]


@pytest.mark.parametrize(("ev", "reason"), EVENT_CASES)
def test_event_reason(ev: dict[str, Any], reason: str) -> None:
    raw = orjson.dumps(ev)
    out = decode(raw)
    assert only_reason(out) == reason, out.rejections[0].message
    assert out.rejections[0].raw == raw
    assert out.rejections[0].event == ev
    # The same event inside a batch: same reason, with its index.
    out = decode(orjson.dumps([view(event_id="ok"), ev]))
    assert [(r.batch_index, r.reason) for r in out.rejections] == [(1, reason)]
    assert len(out.events) == 1


def test_integers_beyond_64_bits_are_out_of_range() -> None:
    # orjson returns a float for them; the message still says "too large", not "wrong type".
    raw = orjson.dumps(view())[:-1] + b',"mcn_id":18446744073709551616}'
    out = decode(raw)
    assert only_reason(out) == c.OUT_OF_RANGE
    assert "18446744073709551616" in out.rejections[0].message


def test_ts_exactly_at_the_skew_limit_is_accepted() -> None:
    assert len(decode(orjson.dumps(view(ts=NOW + SKEW))).events) == 1


def test_type_on_the_wrong_topic() -> None:
    orders = allowed_types_for_topic("live.orders", Topics())
    assert only_reason(decode(orjson.dumps(view()), types=orders)) == c.WRONG_TOPIC
    views = allowed_types_for_topic("live.views", Topics())
    out = decode(orjson.dumps(order()), types=views)
    assert only_reason(out) == c.WRONG_TOPIC
    assert "view" in out.rejections[0].message


def test_messages_say_what_to_fix() -> None:
    (r,) = decode(orjson.dumps(order(amount_fen=199.5))).rejections
    assert "amount_fen" in r.message and "199.5" in r.message and "fen" in r.message
    (r,) = decode(orjson.dumps(view(user_id=_DROP))).rejections
    assert "user_id" in r.message
    (r,) = decode(orjson.dumps(view(event_id="x" * 500, source="s" * 500))).rejections
    assert len(r.message) < 300  # bad values are truncated, not echoed whole


WHOLE_MESSAGE_REASONS_TESTED_ABOVE = {
    c.EMPTY_VALUE,
    c.MESSAGE_TOO_LARGE,
    c.NOT_UTF8,
    c.NOT_JSON,
    c.NOT_OBJECT,
    c.EMPTY_BATCH,
    c.BAD_KEY,
    c.TOO_MANY_EVENTS,
    c.EVENT_TOO_LARGE,
    c.WRONG_TOPIC,
}


def test_every_reason_code_is_exercised_here() -> None:
    assert {reason for _, reason in EVENT_CASES} | WHOLE_MESSAGE_REASONS_TESTED_ABOVE == c.REASONS


# -- properties ---------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**64), 2**64),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(st.integers(-2, 2**64), st.booleans(), st.none(), st.text(max_size=3), st.floats())
events = st.builds(
    lambda base, edits, drops: {**{k: v for k, v in base.items() if k not in drops}, **edits},
    st.sampled_from([view(), order(), order(type="refund"), view(type="click", product_id=3)]),
    st.dictionaries(
        st.sampled_from([*c.COMMON_REQUIRED, "amount_fen", "source", "x"]), field_values, max_size=2
    ),
    st.sets(st.sampled_from(c.COMMON_REQUIRED), max_size=1),
)


def _counted(rejections: list[Rejection]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in rejections:
        counts[r.reason] = counts.get(r.reason, 0) + 1
    return counts


def _dumps(obj: Any) -> bytes:
    """stdlib JSON: unlike orjson it can write integers beyond 64 bits, which producers may send."""
    return json.dumps(obj).encode()


def _expected_count(value: bytes, key: bytes | None) -> int:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return 1
    usable_key = parse_key(key) not in (None, -1)
    if (
        isinstance(obj, list)
        and obj
        and usable_key
        and len(value) <= c.MAX_MESSAGE_BYTES
        and len(obj) <= c.MAX_BATCH_EVENTS
    ):
        return len(obj)
    return 1


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.binary(max_size=64), json_values.map(_dumps), events.map(_dumps)))
def test_any_bytes_decode_without_raising_and_every_event_is_accounted_for(value: bytes) -> None:
    out = decode(value)
    assert len(out.events) + out.rejected == _expected_count(value, KEY)
    assert all(r.reason in c.REASONS and r.message for r in out.rejections)
    assert _counted(out.rejections) == out.rejected_by_reason  # few enough to all be detailed


@settings(max_examples=300, deadline=None)
@given(
    items=st.lists(st.one_of(events, json_values), max_size=8), key=st.sampled_from([KEY, None, b"07", b"1"])
)
def test_batches_account_for_every_element(items: list[Any], key: bytes | None) -> None:
    value = _dumps(items)
    out = decode(value, key=key)
    assert len(out.events) + out.rejected == _expected_count(value, key)
    assert _counted(out.rejections) == out.rejected_by_reason
    indexes = [r.batch_index for r in out.rejections if r.batch_index is not None]
    assert indexes == sorted(set(indexes))
    for r in out.rejections:
        if r.batch_index is not None:
            assert orjson.loads(r.raw) == orjson.loads(value)[r.batch_index]


@settings(max_examples=400, deadline=None)
@given(
    ev=events,
    key_room=st.sampled_from([None, ROOM, 5]),
    types=st.sampled_from([c.EVENT_TYPES, c.ORDER_TYPES]),
)
def test_fast_check_and_explanation_agree(
    ev: dict[str, Any], key_room: int | None, types: frozenset[str]
) -> None:
    before = copy.deepcopy(ev)
    explained = c.explain_event(ev, types, key_room, NOW, SKEW)
    assert ev == before  # explaining never modifies
    assert (c.validate_event(ev, types, key_room, NOW, SKEW) is None) == (explained is None)
