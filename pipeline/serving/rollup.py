"""Leaderboard snapshots: sums per key over a campaign's sealed windows, so requests stay fast.

Contract:
- `roll(client, settings, campaign_id, starts_s, ends_s, kind, watermark_ms=None)` brings the snapshot of
  one (campaign, kind) up to date and returns the new `sealed_until` (epoch s) or None when nothing
  changed. Blocking (ClickHouse); run it from a worker timer via `asyncio.to_thread`, on one worker.
- A snapshot is always correct for the windows it claims ([starts, sealed_until)): windows are sealed
  only SEAL_MARGIN_S after event time moved past them (window + allowed lateness), and a sealed window
  re-written later (replay, lagging partition: its `updated_at` is not older than the roll) triggers a
  rebuild from the campaign's start at the next roll (until then, at most one roll interval, the board
  misses that re-write). Readers add the unsealed tail themselves (`leaderboard.py`): a missing snapshot
  only costs speed.
- Sums start from `*_window_stats` (max per window and key), never from raw window rows.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from pipeline.settings import Settings

log = logging.getLogger(__name__)
SEAL_STEP_S = 600  # snapshots advance in 10-minute steps: the tail a request aggregates is 10-25 minutes
SEAL_MARGIN_S = 60  # extra distance from the watermark for the stream's final write of a window
KINDS = ("room", "creator")


def sources(settings: Settings, kind: str) -> tuple[str, str, str, str]:
    """(window_stats view, raw window table, key column, creator expression) of `kind`."""
    db = settings.clickhouse_database
    if kind == "room":
        return f"{db}.room_window_stats", f"{db}.room_windows", "room_id", "creator_id"
    if kind == "creator":
        return f"{db}.creator_window_stats", f"{db}.creator_windows", "creator_id", "toUInt64(0)"
    raise ValueError(f"kind must be room or creator, got {kind!r}")


def current_snapshot(
    client, settings: Settings, campaign_id: str, kind: str
) -> tuple[int, int, float] | None:
    """(snapshot_id, sealed_until_s, rolled_at_s) the ledger points at, or None."""
    rows = client.query(
        f"SELECT snapshot_id, toUnixTimestamp(sealed_until), toFloat64(rolled_at) "
        f"FROM {settings.clickhouse_database}.leaderboard_snapshot_ledger FINAL "
        "WHERE campaign_id = {c:String} AND kind = {k:String}",
        parameters={"c": campaign_id, "k": kind},
    ).result_rows
    return (int(rows[0][0]), int(rows[0][1]), float(rows[0][2])) if rows else None


def seal_point(settings: Settings, latest_end_s: int, ends_s: int, watermark_ms: int | None) -> int:
    """The end (epoch s, a SEAL_STEP_S multiple) of the windows that can no longer change."""
    lag_s = (settings.allowed_lateness_ms + settings.window_ms) // 1000 + SEAL_MARGIN_S
    safe = min(latest_end_s, int(time.time())) - lag_s
    if watermark_ms is not None:
        safe = min(safe, watermark_ms // 1000 - settings.window_ms // 1000 - SEAL_MARGIN_S)
    return min(safe - safe % SEAL_STEP_S, ends_s)


def roll(
    client,
    settings: Settings,
    campaign_id: str,
    starts_s: int,
    ends_s: int,
    kind: str,
    watermark_ms: int | None = None,
) -> int | None:
    view, raw, key, creator = sources(settings, kind)
    db = settings.clickhouse_database
    bounds = {"s": starts_s, "e": ends_s, "c": campaign_id, "k": kind}
    latest = client.query(
        f"SELECT toUnixTimestamp(max(window_end)), count() FROM {raw} "
        "WHERE window_start >= toDateTime({s:UInt32}, 'UTC')"
        " AND window_start < toDateTime({e:UInt32}, 'UTC')",
        parameters=bounds,
    ).result_rows[0]
    if not latest[1]:
        return None
    sealed = seal_point(settings, int(latest[0]), ends_s, watermark_ms)
    snapshot = current_snapshot(client, settings, campaign_id, kind)
    base_id, base_until = 0, starts_s
    if snapshot is not None:
        base_id, base_until, rolled_at = snapshot
        rewritten = client.query(
            f"SELECT count() FROM {raw} WHERE window_start >= toDateTime({{s:UInt32}}, 'UTC') "
            "AND window_start < toDateTime({u:UInt32}, 'UTC')"
            " AND updated_at >= fromUnixTimestamp64Milli({r:Int64})",
            parameters={**bounds, "u": base_until, "r": int(rolled_at * 1000)},
        ).result_rows[0][0]
        if rewritten:
            log.info("leaderboard snapshot %s/%s: sealed windows re-written, rebuilding", campaign_id, kind)
            base_id, base_until = 0, starts_s
        elif sealed <= base_until:
            return None
    if sealed <= base_until:
        return None
    rolled_at_ms = int(client.query("SELECT toUnixTimestamp64Milli(now64(3))").result_rows[0][0])
    snapshot_id = max(rolled_at_ms, (snapshot[0] + 1) if snapshot else 0)
    client.command(
        f"INSERT INTO {db}.leaderboard_snapshots "
        "SELECT {c:String}, {k:String}, {sid:UInt64}, id, max(cid), sum(v), sum(o), sum(g) FROM ("
        " SELECT id, creator_id AS cid, views AS v, orders AS o, gmv_fen AS g"
        f" FROM {db}.leaderboard_snapshots"
        "  WHERE campaign_id = {c:String} AND kind = {k:String} AND snapshot_id = {base:UInt64}"
        f" UNION ALL SELECT {key} AS id, {creator} AS cid, views AS v, orders AS o, gmv_fen AS g"
        f" FROM {view} WHERE window_start >= toDateTime({{f:UInt32}}, 'UTC')"
        "  AND window_start < toDateTime({u:UInt32}, 'UTC')"
        ") GROUP BY id",
        parameters={**bounds, "sid": snapshot_id, "base": base_id, "f": base_until, "u": sealed},
    )
    client.insert(
        f"{db}.leaderboard_snapshot_ledger",
        [(campaign_id, kind, snapshot_id, sealed, datetime.fromtimestamp(rolled_at_ms / 1000, UTC))],
        column_names=["campaign_id", "kind", "snapshot_id", "sealed_until", "rolled_at"],
    )
    client.command(
        f"DELETE FROM {db}.leaderboard_snapshots "
        "WHERE campaign_id = {c:String} AND kind = {k:String} AND snapshot_id < {sid:UInt64}",
        parameters={**bounds, "sid": snapshot_id},
    )
    return sealed
