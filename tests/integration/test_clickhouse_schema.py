"""Integration tests of the ClickHouse schema on the real local engine (marker `clickhouse`).

Each test works in its own database, dropped afterwards, so tests stay isolated on the shared server.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import UTC, datetime

import pytest

from pipeline.clickhouse import migrations
from pipeline.clickhouse.campaigns import upsert_campaigns
from pipeline.clickhouse.cli import run_migrate
from pipeline.clickhouse.clients import ClickHouseUnavailable, Profile, make_client
from pipeline.errors import UserFacingError
from pipeline.rows import (
    CREATOR_WINDOW_COLUMNS,
    RAW_EVENT_COLUMNS,
    ROOM_WINDOW_COLUMNS,
    creator_window_row,
    raw_event_row,
    room_window_row,
)
from pipeline.settings import Settings

pytestmark = pytest.mark.clickhouse
# Midnight Asia/Shanghai of yesterday (16:00 UTC): recent, so the raw events TTL does not drop the rows.
T0 = (int(time.time() * 1000) // 86_400_000 - 1) * 86_400_000 + 16 * 3_600_000


def event(event_id, type_, ts, room, creator, user, amount=0):
    return {"event_id": event_id, "type": type_, "ts": ts, "room_id": room, "creator_id": creator,
            "user_id": user, "amount_fen": amount}  # fmt: skip


def insert_raw(client, db, events, token=None):
    rows = [raw_event_row((e, "live.views", 0, i)) for i, e in enumerate(events)]
    settings = {"insert_deduplication_token": token} if token else None
    client.insert(f"{db}.raw_events", rows, column_names=list(RAW_EVENT_COLUMNS), settings=settings)


def test_migrate_applies_all_then_rerun_is_a_noop(clickhouse_server, capsys):
    db = f"t_{uuid.uuid4().hex[:12]}"
    settings = Settings(clickhouse_url=clickhouse_server.url, clickhouse_database=db)
    args = argparse.Namespace(print_sql=False, dry_run=False, cluster=None)
    client = make_client(settings, Profile.MIGRATE)
    try:
        dry = migrations.migrate(client, db, 30, dry_run=True)
        assert (
            len(dry.applied) == len(migrations.load_migrations())
            and client.command(f"EXISTS DATABASE {db}") == 0
        )
        assert run_migrate(args, settings) == 0
        first = capsys.readouterr().out
        assert "applied 0001_raw_events" in first and "skipped" not in first.splitlines()[0]
        assert run_migrate(args, settings) == 0
        second = capsys.readouterr().out
        assert (
            f"migrate: applied 0, skipped {len(migrations.load_migrations())}" in second
            and "applied 0001" not in second
        )
        ledger = client.query(f"SELECT version, checksum FROM {db}.schema_migrations FINAL ORDER BY version")
        assert [v for v, _ in ledger.result_rows] == [m.version for m in migrations.load_migrations()]
        tables = set(client.query(f"SHOW TABLES FROM {db}").result_columns[0])
        assert {"raw_events", "room_window_stats", "creator_window_stats", "campaigns",
                "campaign_room_totals", "campaign_creator_totals"} <= tables  # fmt: skip
        # An applied migration edited afterwards is refused rather than silently skipped.
        edited = [migrations.Migration(1, "raw_events", "-- edited", "0" * 64)]
        with pytest.raises(UserFacingError, match="changed after it was applied"):
            migrations.migrate(client, db, 30, migrations=edited)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {db} SYNC")
        client.close()


def test_unreachable_server_is_a_user_facing_error_without_the_password():
    settings = Settings(clickhouse_url="http://127.0.0.1:1", clickhouse_password="hunter2-secret")
    args = argparse.Namespace(print_sql=False, dry_run=False, cluster=None)
    with pytest.raises(ClickHouseUnavailable) as info:
        run_migrate(args, settings)
    assert "http://127.0.0.1:1" in str(info.value) and "hunter2" not in str(info.value)


@pytest.mark.parametrize("seed", [1, 2])
def test_window_views_merge_partial_writers_by_column_maximum_in_any_order(ch, seed):
    settings, client = ch
    db = settings.clickhouse_database
    room1, room2, creator1 = 101, 102, 9_000_000_000_000_000_001  # ids beyond 2^62: UInt64 end to end
    writes = []
    for v in range(1, 7):  # absolute values growing over time, as the stream writes them
        # Room 1 is assembled from three writers (one per input topic), each owning its own columns.
        writes.append((T0, room1, creator1, 10 * v, 5 * v, 0, 0, 0, 0, 0, 0, 0))  # views partition
        writes.append((T0, room1, creator1, 0, 0, 3 * v, 2 * v, 0, 0, 0, 0, 0))  # clicks partition
        writes.append((T0, room1, creator1, 0, 0, 0, 0, v, v, 1000 * v, v // 3, 100 * (v // 3)))  # orders
        writes.append((T0, room2, creator1, v, v, 0, 0, 0, 0, 0, 0, 0))  # room 2: views only
    random.Random(seed).shuffle(writes)
    for i in range(0, len(writes), 3):  # separate inserts = separate parts, merged or not
        rows = [room_window_row(r, 60_000) for r in writes[i : i + 3]]
        client.insert(f"{db}.room_windows", rows, column_names=list(ROOM_WINDOW_COLUMNS))
        creator_rows = [creator_window_row((r[0], r[2], r[2], *r[3:]), 60_000) for r in writes[i : i + 3]]
        client.insert(f"{db}.creator_windows", creator_rows, column_names=list(CREATOR_WINDOW_COLUMNS))

    expected = [
        (room1, creator1, 60, 30, 18, 12, 6, 6, 6000, 2, 200),
        (room2, creator1, 6, 6, 0, 0, 0, 0, 0, 0, 0),
    ]
    metrics = (
        "room_id, creator_id, views, viewers, clicks, clickers, orders, buyers, gmv_fen, refunds, refund_fen"
    )

    def room_stats():
        return client.query(f"SELECT {metrics} FROM {db}.room_window_stats ORDER BY room_id").result_rows

    result = client.query(f"SELECT * FROM {db}.room_window_stats ORDER BY room_id")
    assert result.column_names == (
        "window_start", "window_end", "room_id", "creator_id", "views", "viewers", "clicks", "clickers",
        "orders", "buyers", "gmv_fen", "refunds", "refund_fen", "updated_at",
    )  # fmt: skip
    rows = [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]
    assert rows[0]["window_start"].replace(tzinfo=UTC) == datetime.fromtimestamp(T0 / 1000, UTC)
    assert (rows[0]["window_end"] - rows[0]["window_start"]).total_seconds() == 60
    assert room_stats() == expected

    # A re-write of an early (smaller) partial row, and of the final one, changes nothing.
    client.insert(
        f"{db}.room_windows",
        [
            room_window_row(writes[0], 60_000),
            room_window_row((T0, room1, creator1, 60, 30, *[0] * 7), 60_000),
        ],
        column_names=list(ROOM_WINDOW_COLUMNS),
    )
    assert room_stats() == expected
    client.command(f"OPTIMIZE TABLE {db}.room_windows FINAL")  # after merges: same answer, one stored row
    assert room_stats() == expected
    assert client.command(f"SELECT count() FROM {db}.room_windows") == 2

    creators = client.query(
        f"SELECT creator_id, count(), max(views), max(gmv_fen) FROM {db}.creator_window_stats "
        "GROUP BY creator_id"
    )
    assert creators.result_rows == [(creator1, 1, 60, 6000)]


def test_campaign_totals_count_a_user_once_across_windows_and_rooms(ch):
    settings, client = ch
    db = settings.clickhouse_database
    minute, hour = 60_000, 3_600_000
    r1, r2, c1, alice, bob, carol = 11, 12, 21, 31, 32, 33
    events = [
        event("e1", "view", T0 + 1000, r1, c1, alice),
        event("e2", "view", T0 + minute + 1000, r1, c1, alice),  # same user, next window
        event("e3", "view", T0 + 2 * hour, r2, c1, alice),  # same user, other room, other hour
        event("e4", "view", T0 + 2 * hour + 5, r2, c1, bob),
        event("e5", "order", T0 + 2 * minute, r1, c1, alice, 19_900),
        event("e6", "order", T0 + 2 * hour + minute, r2, c1, alice, 100),
        event("e7", "view", T0 - hour, r1, c1, carol),  # before the campaign
    ]
    insert_raw(client, db, events)
    windows = [  # what the stream wrote for those events (per room, then per creator)
        (T0, r1, c1, 1, 1, 0, 0, 0, 0, 0, 0, 0),
        (T0 + minute, r1, c1, 1, 1, 0, 0, 0, 0, 0, 0, 0),
        (T0 + 2 * minute, r1, c1, 0, 0, 0, 0, 1, 1, 19_900, 0, 0),
        (T0 + 2 * hour, r2, c1, 1, 1, 0, 0, 0, 0, 0, 0, 0),  # an early write, then the later value
        (T0 + 2 * hour, r2, c1, 2, 2, 0, 0, 0, 0, 0, 0, 0),
        (T0 + 2 * hour + minute, r2, c1, 0, 0, 0, 0, 1, 1, 100, 0, 0),
        (T0 - hour, r1, c1, 1, 1, 0, 0, 0, 0, 0, 0, 0),
    ]
    client.insert(
        f"{db}.room_windows",
        [room_window_row(w, minute) for w in windows],
        column_names=list(ROOM_WINDOW_COLUMNS),
    )
    creator = [(w[0], c1, c1, *w[3:]) for w in windows]  # one room per window: same values
    client.insert(
        f"{db}.creator_windows",
        [creator_window_row(w, minute) for w in creator],
        column_names=list(CREATOR_WINDOW_COLUMNS),
    )
    starts = datetime.fromtimestamp(T0 / 1000, UTC)
    ends = datetime.fromtimestamp((T0 + 24 * hour) / 1000, UTC)
    campaign = {
        "campaign_id": "d11-2024",
        "name": "双11",
        "name_en": "Singles' Day",
        "starts_at": starts,
        "ends_at": ends,
    }
    upsert_campaigns(client, db, [campaign])
    upsert_campaigns(client, db, [{**campaign, "name_en": "Double 11"}])  # re-load = upsert
    assert client.query(f"SELECT name_en FROM {db}.campaigns").result_rows == [("Double 11",)]

    room = client.query(
        "SELECT room_id, views, viewers, orders, buyers, gmv_fen, conversion, gpm "
        f"FROM {db}.campaign_room_totals WHERE campaign_id = 'd11-2024' ORDER BY room_id"
    ).result_rows
    assert room == [
        (r1, 2, 1, 1, 1, 19_900, 1.0, 19_900 * 1000 / 2),
        (r2, 2, 2, 1, 1, 100, 0.5, 100 * 1000 / 2),
    ]
    creator_total = client.query(
        "SELECT creator_id, rooms, views, viewers, orders, buyers, gmv_fen, conversion "
        f"FROM {db}.campaign_creator_totals"
    ).result_rows
    assert creator_total == [(c1, 2, 4, 2, 2, 1, 20_000, 0.5)]  # alice once, across rooms and hours


def test_raw_event_reinsert_is_harmless(ch):
    settings, client = ch
    db = settings.clickhouse_database
    events = [event(f"e{i}", "view", T0 + i, 1, 2, 100 + i % 3) for i in range(10)]
    insert_raw(client, db, events, token="batch-1")
    insert_raw(client, db, events, token="batch-1")  # a retried insert: dropped by its token
    assert client.command(f"SELECT count() FROM {db}.raw_events") == 10
    insert_raw(client, db, events[3:8])  # a replay after a crash, other batch boundaries
    assert client.command(f"SELECT count() FROM {db}.raw_events FINAL") == 10
    viewers = client.command(f"SELECT uniqExactMerge(viewers) FROM {db}.room_hourly_uniques")
    assert viewers == 3
    client.command(f"OPTIMIZE TABLE {db}.raw_events FINAL")
    assert client.command(f"SELECT count() FROM {db}.raw_events") == 10
    # Ids are UInt64 everywhere; missing optional ids (product_id of a view, merchant, mcn) are 0.
    types = client.query(
        f"SELECT name, type FROM system.columns WHERE database = '{db}' AND name IN "
        "('room_id', 'creator_id', 'user_id', 'product_id', 'merchant_id', 'mcn_id')"
    ).result_rows
    assert types and all(t == "UInt64" or t.endswith("UInt64)") for _, t in types), types
    ids = client.query(
        f"SELECT DISTINCT room_id, creator_id, product_id, merchant_id, mcn_id FROM {db}.raw_events"
    )
    assert ids.result_rows == [(1, 2, 0, 0, 0)]


def test_campaign_gpm_does_not_wrap_past_int64(ch):
    """gpm = gmv_fen * 1000 / views: with 10^16 fen of campaign GMV the Int64 product wraps (0005);
    migration 0009 takes it in Float64."""
    settings, client = ch
    db = settings.clickhouse_database
    minute, gmv = 60_000, 5 * 10**15  # two windows: 10^16 fen in all, x1000 = 10^19 > 2^63
    windows = [(T0 + i * minute, 11, 21, 1, 1, 0, 0, 2, 2, gmv, 0, 0) for i in range(2)]
    rooms = [room_window_row(w, minute) for w in windows]
    creators = [creator_window_row((w[0], 21, 21, *w[3:]), minute) for w in windows]
    client.insert(f"{db}.room_windows", rooms, column_names=list(ROOM_WINDOW_COLUMNS))
    client.insert(f"{db}.creator_windows", creators, column_names=list(CREATOR_WINDOW_COLUMNS))
    starts = datetime.fromtimestamp(T0 / 1000, UTC)
    ends = datetime.fromtimestamp((T0 + 3_600_000) / 1000, UTC)
    upsert_campaigns(client, db, [{"campaign_id": "big", "name": "大", "name_en": "Big", "starts_at": starts,
                                   "ends_at": ends}])  # fmt: skip
    for view in ("campaign_room_totals", "campaign_creator_totals"):
        ((total, gpm),) = client.query(
            f"SELECT gmv_fen, gpm FROM {db}.{view} WHERE campaign_id = 'big'"
        ).result_rows
        assert total == 2 * gmv
        assert gpm == pytest.approx(2 * gmv * 1000 / 2), view
