"""`livecommerce reconcile` on the real local engine (marker `clickhouse`)."""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import pytest

from pipeline.clickhouse.cli import parse_time, run_reconcile
from pipeline.clickhouse.reconcile import align
from pipeline.rows import (
    CREATOR_WINDOW_COLUMNS,
    RAW_EVENT_COLUMNS,
    ROOM_WINDOW_COLUMNS,
    creator_window_row,
    raw_event_row,
    room_window_row,
)

pytestmark = pytest.mark.clickhouse
W = 60_000
T0 = (int(time.time() * 1000) // W - 120) * W


def events() -> list[dict]:
    out = []
    for i in range(300):
        kind = ("view", "view", "click", "order", "refund")[i % 5]
        amount = 100 + i if kind in ("order", "refund") else 0
        room, user = 100 + i % 3, 1000 + i % 17  # rooms 100, 102 hosted by creator 200, room 101 by 201
        out.append({"event_id": f"e{i}", "type": kind, "ts": T0 + i * 997, "room_id": room,
                    "creator_id": 200 + room % 2, "user_id": user, "amount_fen": amount})  # fmt: skip
    return out


def aggregate(evs: list[dict], key: str) -> dict:
    """The stream's windows, computed naively (test oracle)."""
    acc = defaultdict(
        lambda: {"n": defaultdict(int), "u": defaultdict(set), "gmv": 0, "ref": 0, "creator": 0}
    )
    for e in evs:
        a = acc[(e["ts"] - e["ts"] % W, e[key])]
        a["n"][e["type"]] += 1
        a["u"][e["type"]].add(e["user_id"])
        a["creator"] = e["creator_id"]
        a["gmv"] += e["amount_fen"] if e["type"] == "order" else 0
        a["ref"] += e["amount_fen"] if e["type"] == "refund" else 0
    return acc


def metrics(a: dict) -> tuple:
    n, u = a["n"], a["u"]
    return (n["view"], len(u["view"]), n["click"], len(u["click"]), n["order"], len(u["order"]), a["gmv"],
            n["refund"], a["ref"])  # fmt: skip


def load(client, db, evs):
    rows = [raw_event_row((e, "live.orders", 0, i)) for i, e in enumerate(evs)]
    client.insert(f"{db}.raw_events", rows, column_names=list(RAW_EVENT_COLUMNS))
    client.insert(f"{db}.raw_events", rows[:40], column_names=list(RAW_EVENT_COLUMNS))  # a replay
    rooms = [
        room_window_row((ws, room, a["creator"], *metrics(a)), W)
        for (ws, room), a in aggregate(evs, "room_id").items()
    ]
    client.insert(f"{db}.room_windows", rooms, column_names=list(ROOM_WINDOW_COLUMNS))
    creators = [
        creator_window_row((ws, c, c, *metrics(a)), W) for (ws, c), a in aggregate(evs, "creator_id").items()
    ]
    client.insert(f"{db}.creator_windows", creators, column_names=list(CREATOR_WINDOW_COLUMNS))
    return len(rooms) + len(creators)


def test_consistent_data_has_no_differences(ch, capsys):
    settings, client = ch
    n = load(client, settings.clickhouse_database, events())
    args = argparse.Namespace(from_=T0, to=T0 + 3600_000, limit=50)
    assert run_reconcile(args, settings) == 0
    assert capsys.readouterr().out.strip() == f"no differences in {n} windows"


def test_a_wrong_window_row_is_reported_and_exits_non_zero(ch, capsys):
    settings, client = ch
    db = settings.clickhouse_database
    load(client, db, events())
    # An orders-partition row with a too large GMV (the maximum wins), and a window row the raw events
    # do not support.
    bad = (T0, 100, 200, 0, 0, 0, 0, 1, 1, 999_999, 0, 0)  # room 100 is hosted by creator 200
    ghost = (T0 + 5 * W, 999_999_999_999, 200, 1, 1, 0, 0, 0, 0, 0, 0, 0)
    client.insert(
        f"{db}.room_windows",
        [room_window_row(bad, W), room_window_row(ghost, W)],
        column_names=list(ROOM_WINDOW_COLUMNS),
    )
    args = argparse.Namespace(from_=T0 + 1, to=T0 + 3600_000, limit=50)  # widened to whole windows
    assert run_reconcile(args, settings) == 1
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert ["room", "100", "gmv_fen"] in [cells[1:4] for cells in lines]
    assert any(cells[3] == "gmv_fen" and cells[-1] == "999999" for cells in lines if len(cells) == 6)
    assert any(cells[2:4] == ["999999999999", "row"] for cells in lines if len(cells) == 6)
    assert "differences in" in out.splitlines()[-1]


def test_time_arguments_and_alignment():
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2024-11-11T00:00:00+08:00") == parse_time("2024-11-10T16:00:00Z") == 1_731_254_400_000
    assert parse_time("2024-11-10T16:00:00") == 1_731_254_400_000  # naive = UTC
    assert align(61_000, 119_000, 60_000) == (60_000, 120_000)
