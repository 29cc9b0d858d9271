"""The pure traffic model: determinism, traffic shape, batches, bad input, and the v1 event contract.

The contract check here is deliberately local (not `pipeline.events`): the generator must follow the
published contract on its own, so a bug on either side shows up as a disagreement.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import orjson
import pytest
from contract_checks import ALLOWED, check_message

from pipeline.cli import main
from pipeline.traffic.cli import _start_ts
from pipeline.traffic.generator import Message, TrafficConfig, TrafficModel
from pipeline.traffic.invalid import INVALID_KINDS


def generate(n: int = 50_000, clock: Any = None, **options: Any) -> tuple[TrafficModel, list[Message]]:
    model = TrafficModel(TrafficConfig(**options), clock=clock)
    return model, list(model.messages(n))


def valid_events(messages: list[Message]) -> list[dict[str, Any]]:
    return [ev for m in messages if not m.invalid for ev in m.events]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    def triples(seed: int) -> list[tuple[str, bytes, bytes]]:
        return [(m.topic, m.key, m.value) for m in generate(20_000, seed=seed)[1]]

    first = triples(7)
    assert first == triples(7)
    assert first != triples(8)


def test_wall_clock_changes_only_ts() -> None:
    _, simulated = generate(5_000)
    _, live = generate(5_000, clock=lambda: 1_800_000_000_000)
    assert [(m.topic, m.key, len(m.events)) for m in simulated] == [
        (m.topic, m.key, len(m.events)) for m in live
    ]
    strip = [{k: v for k, v in ev.items() if k != "ts"} for ev in valid_events(live)]
    assert strip == [{k: v for k, v in ev.items() if k != "ts"} for ev in valid_events(simulated)]
    assert all(1_800_000_000_000 - 3_000 <= ev["ts"] <= 1_800_000_000_000 for ev in valid_events(live))


def test_every_valid_event_follows_the_contract_and_counts_match() -> None:
    model, messages = generate(invalid_share=0.0)
    for msg in messages:
        assert check_message(msg) == [], msg
    events = valid_events(messages)
    distinct = {ev["event_id"]: ev for ev in events}
    by_type = collections.Counter(ev["type"] for ev in distinct.values())
    assert dict(by_type) == {k: v for k, v in model.counts.by_type.items() if v}
    assert len(events) - len(distinct) == model.counts.duplicates == sum(m.duplicates for m in messages)
    assert model.counts.records == 50_000
    assert model.counts.messages == len(messages)
    gmv = sum(ev["amount_fen"] for ev in distinct.values() if ev["type"] == "order")
    assert gmv == model.counts.gmv_fen


def test_funnel_rates_and_repeat_visitors() -> None:
    # 500 records/s: 100 simulated seconds, long enough for most clicks and orders of the views to follow
    _, messages = generate(rate=500)
    distinct = {ev["event_id"]: ev for ev in valid_events(messages)}.values()
    users = collections.defaultdict(set)
    count = collections.Counter()
    for ev in distinct:
        users[ev["type"]].add(ev["user_id"])
        count[ev["type"]] += 1
    assert 0.10 <= count["click"] / count["view"] <= 0.20
    assert 0.02 <= count["order"] / count["view"] <= 0.05
    assert 0.10 <= len(users["click"]) / len(users["view"]) <= 0.25
    assert 0.015 <= len(users["order"]) / len(users["view"]) <= 0.06
    assert len(users["view"]) < 0.95 * count["view"]  # regulars come back: viewers < views
    amounts = sorted(ev["amount_fen"] for ev in distinct if ev["type"] == "order")
    assert amounts[0] >= 990 and amounts[-1] >= 100_000  # from 9.90 CNY to over 1,000 CNY
    assert 3_000 <= amounts[len(amounts) // 2] <= 30_000  # median a few tens of CNY


def test_room_share_is_skewed_and_hot_room_share_is_honoured() -> None:
    def top_share(**options: Any) -> float:
        model, messages = generate(**options)
        per_room = collections.Counter()
        for m in messages:
            per_room[m.key] += 1 if m.invalid else len(m.events)
        return per_room.most_common(1)[0][1] / model.counts.records

    assert 0.10 <= top_share() <= 0.35  # Zipf 1.1 over 2,000 rooms: the head room alone is ~17%
    assert top_share(zipf_s=0.0) < 0.01
    assert 0.47 <= top_share(hot_room_share=0.5) <= 0.53


def test_rooms_have_one_creator_and_creators_several_rooms() -> None:
    model, messages = generate(10_000)
    creators = {}
    for ev in valid_events(messages):
        assert creators.setdefault(ev["room_id"], ev["creator_id"]) == ev["creator_id"]
        assert model.room_creator[ev["room_id"]] == ev["creator_id"]
    rooms_per_creator = collections.Counter(model.room_creator.values())
    assert len(rooms_per_creator) == 500 and rooms_per_creator.most_common(1)[0][1] >= 20


@pytest.mark.parametrize("batch_size", [1, 100])
def test_batch_shape(batch_size: int) -> None:
    _, messages = generate(20_000, batch_size=batch_size, invalid_share=0.0)
    sizes = []
    for m in messages:
        value = orjson.loads(m.value)
        if batch_size == 1:
            assert type(value) is dict and [value] == m.events
        else:
            assert type(value) is list and value == m.events and 1 <= len(value) <= batch_size
        assert {ev["room_id"] for ev in m.events} == {int(m.key)}
        assert {ev["type"] for ev in m.events} <= ALLOWED[m.topic]
        sizes.append(len(m.events))
    if batch_size > 1:
        assert max(sizes) == batch_size  # the head room fills batches before they linger out
        assert sum(sizes) / len(sizes) > 2


def test_invalid_messages_are_separate_and_of_every_kind() -> None:
    model, messages = generate(invalid_share=0.02)
    invalid = [m for m in messages if m.invalid]
    assert 0.016 <= len(invalid) / model.counts.records <= 0.024
    assert len(invalid) == model.counts.invalid
    assert collections.Counter(m.kind for m in invalid) == {
        k: v for k, v in model.counts.invalid_by_kind.items() if v
    }
    assert {m.kind for m in invalid} == set(INVALID_KINDS)
    for m in invalid:
        assert m.events == [] and check_message(m) != [], m
    assert all(m.kind is None and check_message(m) == [] for m in messages if not m.invalid)


def test_duplicates_reuse_event_id_and_content() -> None:
    model, messages = generate(duplicate_share=0.05, invalid_share=0.0)
    first: dict[str, bytes] = {}
    repeats = 0
    for ev in valid_events(messages):
        data = orjson.dumps(ev)
        if ev["event_id"] in first:
            assert first[ev["event_id"]] == data
            repeats += 1
        first[ev["event_id"]] = data
    assert repeats == model.counts.duplicates
    assert 0.04 <= repeats / model.counts.records <= 0.06


def test_refunds_follow_their_orders() -> None:
    _, messages = generate(rate=500, refund_rate=0.5)
    orders: dict[str, dict[str, Any]] = {}
    refunds = 0
    for ev in valid_events(messages):
        if ev["type"] == "order":
            orders.setdefault(ev["order_id"], ev)
        elif ev["type"] == "refund":
            order = orders[ev["order_id"]]  # KeyError: a refund sent before its order
            assert 0 < ev["amount_fen"] <= order["amount_fen"]
            assert ev["ts"] > order["ts"] and ev["user_id"] == order["user_id"]
            refunds += 1
    assert refunds > 50


def test_event_time_is_jittered_but_bounded() -> None:
    _, messages = generate(10_000, start_ts_ms=1_731_254_400_000, rate=1000)
    ts = [ev["ts"] for ev in valid_events(messages)]
    assert min(ts) >= 1_731_254_400_000 - 3_000 - 3_000  # jitter, plus a retry's delay
    assert max(ts) <= 1_731_254_400_000 + 10_000
    assert sum(b < a for a, b in itertools.pairwise(ts)) > len(ts) // 10  # out of order


def test_config_rejects_impossible_values() -> None:
    for bad in (
        {"creators": 10, "rooms": 5},
        {"batch_size": 0},
        {"hot_room_share": 1.0},
        {"order_rate": 0.5},
    ):
        with pytest.raises(ValueError):
            TrafficConfig(**bad)


def test_start_ts_accepts_epoch_ms_and_iso() -> None:
    assert _start_ts("1731254400000") == 1_731_254_400_000
    assert _start_ts("2024-11-11T00:00:00+08:00") == 1_731_254_400_000
    assert _start_ts("2024-11-10T16:00:00") == 1_731_254_400_000  # naive means UTC


def test_dry_run_prints_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--dry-run", "--events", "3000", "--start-ts", "1731254400000"]) == 0
    out = capsys.readouterr().out
    assert "generate summary: dry run" in out and "records    3,000" in out
