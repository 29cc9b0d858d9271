"""The leaderboard API, snapshots and milestones on the real ClickHouse engine (marker `clickhouse`).

Each test gets its own migrated database with one live campaign `tc` (yesterday 00:00 to tomorrow 00:00
in Shanghai) and writes window rows / raw events directly: "known events" with known answers.
The settings have no allowed lateness, so a board's cut-off (`as_of`) is the newest window's end and
every written window counts; tests/integration/test_boards.py covers the cut-off with lateness.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import orjson
import pytest

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.rows import CREATOR_WINDOW_COLUMNS, RAW_EVENT_COLUMNS, ROOM_WINDOW_COLUMNS, raw_event_row
from pipeline.serving import rollup
from pipeline.serving.api import ServingApi
from pipeline.serving.milestones import MilestoneWatcher
from pipeline.serving.registry import Campaign, sync_campaigns
from pipeline.settings import Settings

pytestmark = pytest.mark.clickhouse
DAY_S = 86_400
START_S = (int(time.time()) + 8 * 3600) // DAY_S * DAY_S - 8 * 3600 - DAY_S  # yesterday 00:00 Shanghai
T0 = START_S + 3600  # first window of the test data: yesterday 01:00 Shanghai


@pytest.fixture
def env(clickhouse_server):
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(clickhouse_url=clickhouse_server.url, clickhouse_database=db, allowed_lateness_ms=0)
    client = make_client(settings, Profile.MIGRATE)
    migrations.migrate(client, db, 30)
    campaign = Campaign("tc", "测试", "Test", datetime.fromtimestamp(START_S, UTC),
                        datetime.fromtimestamp(START_S + 3 * DAY_S, UTC))  # fmt: skip
    sync_campaigns(client, settings, [campaign])
    yield settings, client, campaign
    client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
    client.close()


def windows(client, settings, kind, rows):
    """rows: (minute, key, gmv_fen, orders, views); room rows use creator = key // 10."""
    db = settings.clickhouse_database
    out = []
    for minute, key, gmv, orders, views in rows:
        ws = T0 + minute * 60
        metrics = (views, 0, 0, 0, orders, 0, gmv, 0, 0)
        out.append(
            (ws, ws + 60, key, key // 10, *metrics) if kind == "room" else (ws, ws + 60, key, *metrics)
        )
    table, columns = (
        ("room_windows", ROOM_WINDOW_COLUMNS)
        if kind == "room"
        else ("creator_windows", CREATOR_WINDOW_COLUMNS)
    )
    client.insert(f"{db}.{table}", out, column_names=list(columns))


def views_of(client, settings, rows):
    """rows: (minute, room, creator, user): view + order events feeding the hourly uniques."""
    events = []
    for i, (minute, room, creator, user) in enumerate(rows):
        ts = (T0 + minute * 60) * 1000 + 5
        for kind in ("view", "order"):
            events.append({"event_id": f"e{i}{kind}", "type": kind, "ts": ts, "room_id": room,
                           "creator_id": creator, "user_id": user, "amount_fen": 100})  # fmt: skip
    rows = [raw_event_row((e, "live.views", 0, i)) for i, e in enumerate(events)]
    client.insert(f"{settings.clickhouse_database}.raw_events", rows, column_names=list(RAW_EVENT_COLUMNS))


async def board(settings, by="creator", limit="50"):
    status, body = await ServingApi(settings).handle(
        ServingApi(settings).leaderboard("tc", {"by": by, "limit": limit})
    )
    assert status == 200, body
    return body


async def test_ranking_sums_each_window_once_and_orders_by_gmv_then_id(env):
    settings, client, _ = env
    # creator 7 written three times for minute 0 (growing absolute values): counts once, at its maximum.
    windows(client, settings, "creator", [(0, 7, 100, 1, 10), (0, 7, 300, 2, 20), (0, 7, 500, 3, 30),
                                          (1, 7, 500, 2, 30), (0, 9, 1000, 1, 10), (0, 8, 1000, 4, 40),
                                          (2, 5, 10, 1, 5)])  # fmt: skip
    body = await board(settings)
    assert body["by"] == "creator" and body["campaign"]["id"] == "tc" and body["campaign"]["status"] == "live"
    assert [(r["rank"], r["id"], r["gmv_fen"]) for r in body["rows"]] == [
        (1, 7, 1000), (2, 8, 1000), (3, 9, 1000), (4, 5, 10)]  # fmt: skip
    top = body["rows"][0]
    assert top["orders"] == 5 and top["views"] == 60 and top["gpm"] == 1000 * 1000 // 60
    assert set(top) >= {
        "rank",
        "id",
        "gmv_fen",
        "orders",
        "buyers",
        "viewers",
        "conversion",
        "gpm",
        "rank_change",
    }
    assert body["totals"] == {"gmv_fen": 3010, "orders": 11, "views": 115, "keys": 4}
    # newest window ends at minute 3: complete up to there minus the allowed lateness
    assert body["as_of"] == (T0 + 180) * 1000 - settings.allowed_lateness_ms
    assert [r["id"] for r in (await board(settings, limit="2"))["rows"]] == [7, 8]


async def test_rank_change_compares_with_the_board_one_window_earlier(env):
    settings, client, _ = env
    windows(client, settings, "room", [(0, 11, 500, 1, 1), (0, 12, 300, 1, 1), (1, 13, 900, 1, 1)])
    rows = (await board(settings, by="room"))["rows"]
    # one minute ago: 11 first, 12 second; now 13 (new) leads, 11 and 12 each fall one place
    assert [(r["id"], r["rank_change"], r["creator_id"]) for r in rows] == [
        (13, None, 1),
        (11, -1, 1),
        (12, -1, 1),
    ]


async def test_viewers_and_buyers_are_distinct_over_the_whole_campaign(env):
    settings, client, _ = env
    windows(client, settings, "creator", [(0, 3, 100, 1, 1), (1, 3, 100, 1, 1), (70, 3, 100, 1, 1)])
    # user 1 in three windows and two hours, user 2 once: 2 viewers and 2 buyers, not 4
    views_of(client, settings, [(0, 31, 3, 1), (1, 31, 3, 1), (70, 32, 3, 1), (70, 31, 3, 2)])
    (row,) = (await board(settings))["rows"]
    assert (row["viewers"], row["buyers"], row["conversion"]) == (2, 2, 1.0)
    (room_row,) = [r for r in (await board(settings, by="room"))["rows"] if r["id"] == 31] or [None]
    assert room_row is None  # no room windows were written: rooms come from room windows only


async def test_snapshot_gives_the_same_board_and_is_rebuilt_after_a_late_rewrite(env):
    settings, client, c = env
    rows = [(m, k, (k * 37 + m * 11) % 500 + 1, 1, 10) for m in range(0, 40, 3) for k in range(1, 30)]
    windows(client, settings, "creator", rows)
    windows(client, settings, "creator", [(60, 4, 5, 1, 1)])  # the newest window, well after the rest
    before = await board(settings)
    sealed = rollup.roll(client, settings, "tc", c.starts_ms // 1000, c.ends_ms // 1000, "creator")
    assert sealed is not None and sealed <= T0 + 60 * 60
    assert await board(settings) == before
    windows(client, settings, "creator", [(3, 1, 10_000, 1, 10)])  # a sealed window re-written, larger
    rollup.roll(
        client, settings, "tc", c.starts_ms // 1000, c.ends_ms // 1000, "creator"
    )  # detects, rebuilds
    changed = await board(settings)
    assert changed["rows"][0]["id"] == 1 and changed["rows"][0]["gmv_fen"] > before["rows"][0]["gmv_fen"]
    client.command(f"DELETE FROM {settings.clickhouse_database}.leaderboard_snapshot_ledger WHERE 1")
    recomputed = await board(settings)  # no snapshot at all: the same board, computed from windows
    assert (recomputed["rows"], recomputed["totals"]) == (changed["rows"], changed["totals"])


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda api: api.leaderboard("tc", {"by": "shop"}), 400),
        (lambda api: api.leaderboard("tc", {"limit": "501"}), 400),
        (lambda api: api.leaderboard("tc", {"limit": "0"}), 400),
        (lambda api: api.leaderboard("tc", {"limit": "1; DROP TABLE x"}), 400),
        (lambda api: api.leaderboard("nope", {}), 404),
        (lambda api: api.leaderboard("tc' OR 1=1 --", {}), 404),
        (lambda api: api.key_series("tc", "rooms", "abc", {}), 400),
        (lambda api: api.key_series("tc", "rooms", "424242", {}), 404),
        (lambda api: api.gmv_series("tc", {"minutes": "-3"}), 400),
        (lambda api: api.milestones("missing", {}), 404),
    ],
)
async def test_bad_parameters_are_400_and_unknown_ids_404(env, call, status):
    api = ServingApi(env[0])
    got, body = await api.handle(call(api))
    assert got == status and "error" in body


MALFORMED_INTEGERS = ["²", "٣", "1²", "9" * 5000, "1" + "0" * 30, "-1", "-0", "", " 5", "5 ", "+5", "1e3",
                      "0x10", "5.0", "1_0", "\x00", "５"]  # fmt: skip


@pytest.mark.parametrize("raw", MALFORMED_INTEGERS)
async def test_every_malformed_integer_parameter_is_400(env, raw):
    # str.isdigit() accepts '²' and int() refuses 5,000 digits: both once answered 503.
    api = ServingApi(env[0])
    calls = [
        api.leaderboard("tc", {"limit": raw}),
        api.milestones("tc", {"limit": raw}),
        api.gmv_series("tc", {"minutes": raw}),
        api.key_series("tc", "rooms", "21", {"minutes": raw}),
        api.key_series("tc", "creators", raw, {}),
    ]
    for call in calls:
        got, body = await api.handle(call)
        assert got == 400 and "must be an integer" in body["error"], (raw, body)


async def test_integer_bounds_and_leading_zeros(env):
    api = ServingApi(env[0])
    assert (await api.handle(api.leaderboard("tc", {"limit": "500"})))[0] == 200
    assert (await api.handle(api.leaderboard("tc", {"limit": "050"})))[0] == 200
    assert (await api.handle(api.leaderboard("tc", {"limit": "0500"})))[0] == 400  # longer than 500
    assert (await api.handle(api.key_series("tc", "rooms", str(2**63 - 1), {})))[0] == 404
    assert (await api.handle(api.key_series("tc", "rooms", str(2**63), {})))[0] == 400


async def test_campaign_list_and_series(env):
    settings, client, _ = env
    windows(client, settings, "room", [(0, 21, 100, 1, 5), (1, 21, 200, 2, 5), (1, 22, 50, 1, 5)])
    api = ServingApi(settings)
    status, body = await api.handle(api.campaigns())
    assert status == 200 and [(c["id"], c["status"]) for c in body["campaigns"]] == [("tc", "live")]
    status, body = await api.handle(api.key_series("tc", "rooms", "21", {}))
    assert status == 200 and [p["gmv_fen"] for p in body["series"]] == [100, 200]
    assert body["series"][0]["window_start"] == T0 * 1000
    status, body = await api.handle(api.gmv_series("tc", {"minutes": "5"}))
    assert [p["gmv_fen"] for p in body["series"]] == [100, 250]


async def test_milestones_are_published_once_also_across_restarts(env):
    settings, client, _ = env
    windows(client, settings, "creator", [(0, 1, 6_000_000_000, 1, 1), (1, 1, 5_000_000_000, 1, 1),
                                          (0, 2, 999_999_999, 1, 1)])  # fmt: skip
    windows(client, settings, "room", [(0, 10, 1_000_000_000, 1, 1)])
    sent = []

    async def send(topic, key, value):
        sent.append((topic, key, orjson.loads(value)))

    assert await MilestoneWatcher(settings, send).check() == 3
    got = {(m["kind"], m["id"], m["threshold_fen"]) for _, _, m in sent}
    assert got == {("creator", 1, 1_000_000_000), ("creator", 1, 10_000_000_000), ("room", 10, 1_000_000_000)}
    assert all(topic == settings.topics.milestones and key == str(m["id"]).encode() for topic, key, m in sent)
    assert await MilestoneWatcher(settings, send).check() == 0  # a restarted worker publishes nothing again
    # a crash after recording but before publishing: the next start re-sends exactly that one
    client.insert(f"{settings.clickhouse_database}.milestones",
                  [("tc", "room", 99, 1_000_000_000, 1_000_000_000, datetime.now(UTC), 0)],
                  column_names=["campaign_id", "kind", "id", "threshold_fen", "gmv_fen", "detected_at",
                                "published"])  # fmt: skip
    sent.clear()
    assert (
        await MilestoneWatcher(settings, send).check() == 1
        and sent[0][2]["milestone_id"] == "tc:room:99:1000000000"
    )
    api = ServingApi(settings)
    status, body = await api.handle(api.milestones("tc", {}))
    assert status == 200 and len(body["milestones"]) == 4
