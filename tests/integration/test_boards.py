"""Boards by creator, room, agency (MCN) track, merchant, category and traffic source, with names, on the
real ClickHouse engine (marker `clickhouse`): known events with exact sums, and the one cut-off.

Each test gets its own migrated database, the campaign `tc` (yesterday 00:00 to tomorrow 00:00 in
Shanghai) and a small dimension registry. Events go into raw_events (feeding the minute states) and the
window rows the stream would write for them go into the window tables.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.rows import CREATOR_WINDOW_COLUMNS, RAW_EVENT_COLUMNS, ROOM_WINDOW_COLUMNS, raw_event_row
from pipeline.serving.api import ServingApi
from pipeline.serving.dimensions import load_dimensions, sync_dimensions
from pipeline.serving.registry import Campaign, sync_campaigns
from pipeline.settings import Settings

pytestmark = pytest.mark.clickhouse
DAY_S = 86_400
START_S = (int(time.time()) + 8 * 3600) // DAY_S * DAY_S - 8 * 3600 - DAY_S  # yesterday 00:00 Shanghai
T0 = START_S + 3600
RECENT = (datetime.fromtimestamp(START_S, UTC) - timedelta(days=40)).date()  # signed 40 days before the start
REGISTRY = f"""
[creator.1]
nickname = "甲姐好物"
kind = "creator"
mcn = 11
category = "服饰内衣"
[creator.2]
nickname = "乙明星"
kind = "celebrity"
mcn = 12
[creator.3]
nickname = "丙品牌直播间"
kind = "brand"
merchant = 501
category = "家居日用"
source = "mall"
[mcn.11]
name = "东方传媒"
region = "华东"
signed = 2015-01-01
[mcn.12]
name = "南方新锐"
region = "华南"
signed = {RECENT.isoformat()}
[merchant.501]
name = "丙旗舰店"
brand = "丙"
[merchant.502]
name = "百货铺"
[category."美妆个护"]
name = "美妆"
name_en = "Beauty"
"""
# (minute, type, room, creator, user, extra fields). Creator 4 is unknown to the registry.
EVENTS = [
    (0, "view", 11, 1, 101, {"source": "live_feed", "mcn_id": 11}),
    (0, "view", 11, 1, 102, {"source": "live_feed"}),
    (1, "view", 11, 1, 103, {"source": "live_feed"}),
    (0, "click", 11, 1, 101, {"product_id": 9, "merchant_id": 502}),
    (1, "click", 11, 1, 102, {"product_id": 9, "merchant_id": 502}),
    (
        1,
        "order",
        11,
        1,
        101,
        {"amount_fen": 1000, "mcn_id": 11, "merchant_id": 502, "category": "美妆个护", "source": "live_feed"},
    ),
    (2, "order", 11, 1, 102, {"amount_fen": 2000, "merchant_id": 502, "source": "follow"}),
    (0, "view", 21, 2, 104, {"source": "search"}),
    (
        1,
        "order",
        21,
        2,
        104,
        {"amount_fen": 5000, "mcn_id": 13, "merchant_id": 502, "category": "美妆个护", "source": "search"},
    ),
    (0, "view", 31, 3, 105, {}),
    (2, "order", 31, 3, 105, {"amount_fen": 700}),
    (0, "view", 41, 4, 106, {}),
    (2, "order", 41, 4, 106, {"amount_fen": 300, "category": "数码家电", "source": "short_video"}),
]


def feed(client, settings, events, replay=(), t0=T0):
    """Insert events (plus `replay`: indexes inserted a second time, as after a crash) and their windows;
    minutes count from `t0` (epoch s)."""
    db = settings.clickhouse_database
    docs = []
    for i, (minute, kind, room, creator, user, extra) in enumerate(events):
        ev = {
            "event_id": f"e{i}",
            "type": kind,
            "ts": (t0 + minute * 60) * 1000 + 7,
            "room_id": room,
            "creator_id": creator,
            "user_id": user,
            **extra,
        }
        if kind == "order":
            ev.setdefault("product_id", 9)
            ev["order_id"] = f"o{i}"
        docs.append(ev)
    rows = [raw_event_row((e, "t", 0, i)) for i, e in enumerate(docs)]
    rows += [rows[i] for i in replay]
    client.insert(f"{db}.raw_events", rows, column_names=list(RAW_EVENT_COLUMNS))
    for table, columns, key in (
        ("room_windows", ROOM_WINDOW_COLUMNS, "room_id"),
        ("creator_windows", CREATOR_WINDOW_COLUMNS, "creator_id"),
    ):
        agg = defaultdict(
            lambda: {
                "views": 0,
                "viewers": set(),
                "clicks": 0,
                "clickers": set(),
                "orders": 0,
                "buyers": set(),
                "gmv": 0,
                "creator": 0,
            }
        )
        for ev in docs:
            a = agg[(ev["ts"] // 60_000 * 60, ev[key])]
            a["creator"] = ev["creator_id"]
            plural = {"view": "views", "click": "clicks", "order": "orders"}[ev["type"]]
            a[plural] += 1
            a[{"views": "viewers", "clicks": "clickers", "orders": "buyers"}[plural]].add(ev["user_id"])
            a["gmv"] += ev.get("amount_fen", 0) if ev["type"] == "order" else 0
        out = []
        for (ws, k), a in agg.items():
            metrics = (
                a["views"],
                len(a["viewers"]),
                a["clicks"],
                len(a["clickers"]),
                a["orders"],
                len(a["buyers"]),
                a["gmv"],
                0,
                0,
            )
            out.append(
                (ws, ws + 60, k, a["creator"], *metrics) if key == "room_id" else (ws, ws + 60, k, *metrics)
            )
        client.insert(f"{db}.{table}", out, column_names=list(columns))


@pytest.fixture
def env(clickhouse_server, tmp_path):
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(
        clickhouse_url=clickhouse_server.url, clickhouse_database=db, allowed_lateness_ms=0, new_mcn_months=3
    )
    client = make_client(settings, Profile.MIGRATE)
    migrations.migrate(client, db, 30)
    sync_campaigns(client, settings, [Campaign.from_epoch("tc", START_S, START_S + 3 * DAY_S, "测试")])
    path = tmp_path / "dimensions.toml"
    path.write_text(REGISTRY, encoding="utf-8")
    sync_dimensions(client, settings, load_dimensions(path))
    yield settings, client
    client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
    client.close()


async def board(settings, **query):
    api = ServingApi(settings)
    status, body = await api.handle(api.leaderboard("tc", query))
    assert status == 200, body
    return body


def summary(body, *fields):
    return [tuple(r[f] for f in ("id", "name", *fields)) for r in body["rows"]]


async def test_creator_and_room_boards_have_names_kinds_and_exact_sums(env):
    settings, client = env
    feed(client, settings, EVENTS, replay=(5, 8))
    body = await board(settings, by="creator")
    assert summary(body, "gmv_fen", "orders", "buyers", "viewers", "kind") == [
        (2, "乙明星", 5000, 1, 1, 1, "celebrity"),
        (1, "甲姐好物", 3000, 2, 2, 3, "creator"),
        (3, "丙品牌直播间", 700, 1, 1, 1, "brand"),
        (4, "4", 300, 1, 1, 1, "creator"),  # unknown to the registry: ranks, named by its id
    ]
    top = body["rows"][1]
    assert (
        top["conversion"] == round(2 / 3, 6)
        and top["spend_per_buyer_fen"] == 1500
        and top["uv_value_fen"] == 1000
    )
    assert body["totals"] == {"gmv_fen": 9000, "orders": 5, "views": 6, "keys": 4}
    assert [r["id"] for r in (await board(settings, by="creator", kind="celebrity"))["rows"]] == [2]
    assert [r["id"] for r in (await board(settings, by="creator", kind="brand"))["rows"]] == [3]
    plain = await board(settings, by="creator", kind="creator")
    assert [r["id"] for r in plain["rows"]] == [1, 4] and plain["totals"]["gmv_fen"] == 3300
    rooms = await board(settings, by="room")
    assert summary(rooms, "creator_id", "creator_name", "gmv_fen") == [
        (21, "乙明星的直播间", 2, "乙明星", 5000),
        (11, "甲姐好物的直播间", 1, "甲姐好物", 3000),
        (31, "丙品牌直播间的直播间", 3, "丙品牌直播间", 700),
        (41, "41", 4, "4", 300),
    ]
    assert [r["id"] for r in (await board(settings, by="room", kind="celebrity"))["rows"]] == [21]


async def test_agency_boards_by_track_with_registry_fallback(env):
    settings, client = env
    feed(client, settings, EVENTS, replay=(5, 8))
    # mcn 11: creator 1's orders (one carries mcn 11, one falls back to the registry); 13: the event's own
    # mcn (unknown id); 12: creator 2's views (no mcn on the event -> registry 12) but no order of its own.
    body = await board(settings, by="mcn")
    assert summary(body, "gmv_fen", "orders", "buyers", "viewers") == [
        (13, "13", 5000, 1, 1, 0),
        (11, "东方传媒", 3000, 2, 2, 3),
        (12, "南方新锐", 0, 0, 0, 1),
    ]
    assert body["totals"] == {"gmv_fen": 8000, "orders": 3, "keys": 3}
    assert body["rows"][1]["region"] == "华东" and body["rows"][1]["conversion"] == round(2 / 3, 6)
    assert summary(await board(settings, by="mcn", track="all"), "gmv_fen") == summary(body, "gmv_fen")
    assert [r["id"] for r in (await board(settings, by="mcn", track="region:华东"))["rows"]] == [11]
    assert [r["id"] for r in (await board(settings, by="mcn", track="region:西北"))["rows"]] == []
    new = await board(settings, by="mcn", track="new")  # signed within NEW_MCN_MONTHS (3) of the start
    assert [r["id"] for r in new["rows"]] == [12] and new["track"] == "new"


async def test_merchant_category_and_source_boards(env):
    settings, client = env
    feed(client, settings, EVENTS, replay=(5, 8))
    merchants = await board(settings, by="merchant")
    # 502 from the events; 501 is the brand creator's shop (its order has no merchant); creator 4's none
    assert summary(merchants, "gmv_fen", "orders", "buyers", "clickers") == [
        (502, "百货铺", 8000, 3, 3, 2),
        (501, "丙旗舰店", 700, 1, 1, 0),
    ]
    assert merchants["rows"][0]["click_conversion"] == 1.5 and merchants["rows"][1]["brand"] == "丙"
    categories = await board(settings, by="category")
    assert summary(categories, "gmv_fen", "orders") == [
        ("美妆个护", "美妆", 6000, 2),
        ("服饰内衣", "服饰内衣", 2000, 1),
        ("家居日用", "家居日用", 700, 1),
        ("数码家电", "数码家电", 300, 1),
    ]
    sources = await board(settings, by="source")
    assert summary(sources, "gmv_fen", "orders", "viewers", "field") == [
        ("search", "搜索 Search", 5000, 1, 1, "centre"),
        ("follow", "关注 Follow", 2000, 1, 0, "content"),
        ("live_feed", "直播推荐 Live feed", 1000, 1, 3, "content"),
        ("mall", "商城 Mall", 700, 1, 1, "centre"),
        ("short_video", "短视频 Short video", 300, 1, 0, "content"),
        ("unknown", "未知 Unknown", 0, 0, 1, "other"),
    ]
    assert [r["gmv_share"] for r in sources["rows"]] == [
        round(x / 9000, 6) for x in (5000, 2000, 1000, 700, 300, 0)
    ]
    assert sources["rows"][2]["viewers_share"] == 0.5 and sources["totals"]["gmv_fen"] == 9000
    room = await board(settings, by="source", room="11")  # 全域 of one room
    assert summary(room, "gmv_fen", "viewers", "gmv_share") == [
        ("follow", "关注 Follow", 2000, 0, round(2 / 3, 6)),
        ("live_feed", "直播推荐 Live feed", 1000, 3, round(1 / 3, 6)),
        ("unknown", "未知 Unknown", 0, 0, 0.0),
    ]  # clicks: no source
    assert room["room"] == 11


@pytest.mark.parametrize(
    "query",
    [
        {"by": "creator", "track": "new"},
        {"by": "mcn", "kind": "brand"},
        {"by": "mcn", "track": "region:"},
        {"by": "mcn", "track": "east"},
        {"by": "creator", "kind": "star"},
        {"by": "source", "room": "abc"},
        {"by": "creator", "room": "11"},
        {"by": "source", "room": "0"},
    ],
)
async def test_malformed_board_parameters_are_400(env, query):
    api = ServingApi(env[0])
    status, body = await api.handle(api.leaderboard("tc", query))
    assert status == 400 and "error" in body


async def test_every_figure_is_read_at_the_cut_off(env, clickhouse_server):
    settings, client = env
    lagging = Settings(clickhouse_url=clickhouse_server.url, clickhouse_database=settings.clickhouse_database)
    # the default 120 s lateness: the newest window ends at minute 3, so figures stop at minute 1
    feed(client, settings, EVENTS)
    body = await board(lagging, by="creator")
    assert body["as_of"] == (T0 + 60) * 1000
    assert summary(body, "gmv_fen", "orders", "buyers", "viewers") == [
        (1, "甲姐好物", 0, 0, 0, 2),
        (2, "乙明星", 0, 0, 0, 1),
        (3, "丙品牌直播间", 0, 0, 0, 1),
        (4, "4", 0, 0, 0, 1),
    ]
    assert body["live_totals"] == {"gmv_fen": 9000, "orders": 5}  # the running total does not wait
    # raw events (hence buyers) of a new minute arrive before its windows: the board does not move
    late = [(3, "order", 11, 1, 109, {"amount_fen": 10}), (9, "view", 11, 1, 109, {})]
    db = settings.clickhouse_database
    rows = [
        raw_event_row(
            (
                {
                    "event_id": f"x{i}",
                    "type": k,
                    "ts": (T0 + m * 60) * 1000,
                    "room_id": r,
                    "creator_id": c,
                    "user_id": u,
                    "product_id": 9,
                    "order_id": f"x{i}",
                    **x,
                },
                "t",
                0,
                i,
            )
        )
        for i, (m, k, r, c, u, x) in enumerate(late)
    ]
    client.insert(f"{db}.raw_events", rows, column_names=list(RAW_EVENT_COLUMNS))
    again = await board(lagging, by="creator")
    assert (again["rows"], again["as_of"]) == (body["rows"], body["as_of"])
    mcn = await board(lagging, by="mcn")
    assert mcn["as_of"] == body["as_of"]
    assert [(r["id"], r["orders"], r["viewers"]) for r in mcn["rows"]] == [(11, 0, 2), (12, 0, 1)]


async def test_drill_down_summary_of_a_room_and_a_creator(env):
    settings, client = env
    feed(client, settings, EVENTS, replay=(5, 8))
    api = ServingApi(settings)
    status, room = await api.handle(api.key_summary("tc", "rooms", "11"))
    assert status == 200 and room["name"] == "甲姐好物的直播间" and room["creator_id"] == 1
    funnel = room["funnel"]
    assert (funnel["views"], funnel["viewers"], funnel["clickers"], funnel["buyers"], funnel["gmv_fen"]) == (
        3,
        3,
        2,
        2,
        3000,
    )
    assert funnel["click_through"] == round(2 / 3, 6) and funnel["click_conversion"] == 1.0
    assert funnel["conversion"] == round(2 / 3, 6) and funnel["gpm"] == 1_000_000
    assert [(s["id"], s["gmv_fen"]) for s in room["sources"]] == [
        ("follow", 2000),
        ("live_feed", 1000),
        ("unknown", 0),
    ]
    status, creator = await api.handle(api.key_summary("tc", "creators", "3"))
    assert status == 200 and creator["name"] == "丙品牌直播间" and creator["kind"] == "brand"
    assert [(s["id"], s["gmv_fen"], s["viewers"]) for s in creator["sources"]] == [("mall", 700, 1)]
    status, body = await api.handle(api.key_summary("tc", "rooms", "999"))
    assert status == 404 and "error" in body
