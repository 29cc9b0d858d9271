"""Leaderboard, series and totals queries over one campaign (blocking; callers use asyncio.to_thread).

Contract (all money integer fen; every value reaches SQL as a bound parameter, identifiers come from
code only):
- `leaderboard(client, settings, c, kind, limit, watermark_ms, creator_kind=None)` -> dict with `as_of`
  (ms: the cut-off every figure is read at, or None), `updated_at` (ms of the newest write, or None),
  `totals`, `live_totals` (GMV and orders past the cut-off too) and `rows` ranked by gmv_fen desc, id
  asc, named from the registry. Additive sums = current snapshot (rollup.py) + the unsealed windows
  before the cut-off, each window counted once (max per window and key first). viewers / buyers merge
  the minute states before the cut-off of the top ids only, so a user in many windows counts once and
  buyers never run ahead of orders. rank_change = rank on the board one window before the cut-off
  minus the rank now: positive = moved up; None = not on that earlier board.
- `key_series(...)` -> the per-window rows of one room or creator (None if it has no window there).
- `gmv_series(...)` -> per-window GMV and orders of the whole campaign over its last `minutes`.
- `keys_over(...)` -> [(id, gmv_fen)] of the keys whose campaign GMV is at least `min_gmv_fen`.
"""

from __future__ import annotations

from pipeline.serving import boards
from pipeline.serving.registry import Campaign
from pipeline.serving.rollup import current_snapshot, sources
from pipeline.settings import Settings

_RANGE = "window_start >= toDateTime({f:UInt32}, 'UTC') AND window_start < toDateTime({e:UInt32}, 'UTC')"


def _union(settings: Settings, kind: str) -> str:
    """Per-key sums over snapshot + tail; `prev_*` leave out windows from {latest} on."""
    view, _, key, creator = sources(settings, kind)
    return (
        "SELECT id, max(cid) AS creator_id, sum(g) AS gmv, sum(o) AS orders, sum(v) AS views,"
        " sum(pg) AS prev_gmv, max(p) AS prev_seen FROM ("
        " SELECT id, creator_id AS cid, gmv_fen AS g, orders AS o, views AS v, gmv_fen AS pg, 1 AS p"
        f" FROM {settings.clickhouse_database}.leaderboard_snapshots"
        "  WHERE campaign_id = {c:String} AND kind = {k:String} AND snapshot_id = {sid:UInt64}"
        f" UNION ALL SELECT {key} AS id, {creator} AS cid, gmv_fen AS g, orders AS o, views AS v,"
        "  if(window_start < toDateTime({latest:UInt32}, 'UTC'), gmv_fen, 0) AS pg,"
        "  toUInt8(window_start < toDateTime({latest:UInt32}, 'UTC')) AS p"
        f" FROM {view} WHERE {_RANGE}"
        ") GROUP BY id"
    )


def _tail(client, settings: Settings, c: Campaign, kind: str) -> dict:
    """Snapshot id and the bounds/newest-window facts of the unsealed tail."""
    _, raw, _, _ = sources(settings, kind)
    snap = current_snapshot(client, settings, c.id, kind)
    sid, tail_from = (snap[0], snap[1]) if snap else (0, c.starts_ms // 1000)
    params = {"c": c.id, "k": kind, "sid": sid, "f": tail_from, "e": c.ends_ms // 1000}
    latest_start, latest_end, updated, n = client.query(
        "SELECT toUnixTimestamp(max(window_start)), toUnixTimestamp(max(window_end)),"
        f" toUnixTimestamp64Milli(max(updated_at)), count() FROM {raw} WHERE {_RANGE}",
        parameters=params,
    ).result_rows[0]
    params["latest"] = int(latest_start) if n else c.ends_ms // 1000
    return {
        "params": params,
        "latest_end": int(latest_end) if n else None,
        "updated": int(updated) if n else None,
    }


def as_of_ms(
    settings: Settings, c: Campaign, latest_end_s: int | None, watermark_ms: int | None
) -> int | None:
    """Event time the stored data is complete to: the newest stored window's end minus the allowed
    lateness (the watermark rule applied to what the board reads), and never past the stream's
    watermark when known; within the campaign. `watermark_ms` is the written watermark of the board's
    own stage on this worker (StreamRuntime.watermark_ms); the stored-window bound covers partitions
    other workers own, whose progress this worker cannot see."""
    value = latest_end_s * 1000 - settings.allowed_lateness_ms if latest_end_s is not None else None
    if watermark_ms is not None:
        value = watermark_ms if value is None else min(value, watermark_ms)
    if value is None:
        return None
    return max(c.starts_ms, min(value, c.ends_ms))


def leaderboard(
    client, settings: Settings, c: Campaign, kind: str, limit: int, watermark_ms=None, creator_kind=None
) -> dict:
    tail = _tail(client, settings, c, kind)
    params = tail["params"]
    # One cut-off for every figure (window sums, distinct users, rank_change): the minute boundary the
    # data is complete to. Never inside the snapshot (its sealed windows are final anyway).
    cut = max(boards.cutoff_s(settings, as_of_ms(settings, c, tail["latest_end"], watermark_ms),
                              c.starts_ms // 1000), params["f"])  # fmt: skip
    window_s = settings.window_ms // 1000
    params = {**params, "e": cut, "latest": max(params["f"], cut - window_s), "kind": creator_kind or ""}
    keep = boards.kind_filter(settings, creator_kind, "id" if kind == "creator" else "creator_id")
    ranked = client.query(
        "SELECT id, creator_id, gmv, orders, views, prev_rank, prev_seen, total_gmv, total_orders,"
        " total_views, keys FROM (SELECT *,"
        " row_number() OVER (ORDER BY prev_gmv DESC, prev_seen DESC, id ASC) AS prev_rank,"
        " sum(gmv) OVER () AS total_gmv, sum(orders) OVER () AS total_orders,"
        " sum(views) OVER () AS total_views,"
        f" count() OVER () AS keys FROM ({_union(settings, kind)}) WHERE {keep})"
        " ORDER BY gmv DESC, id ASC LIMIT {n:UInt32}",
        parameters={**params, "n": limit},
    ).result_rows
    uniques = _uniques(client, settings, c, kind, [int(r[0]) for r in ranked], cut)
    creators = boards.creator_names(
        client, settings, sorted({int(r[0]) if kind == "creator" else int(r[1]) for r in ranked})
    )
    rows = []
    for rank, (key, creator, gmv, orders, views, prev_rank, prev_seen, *_) in enumerate(ranked, start=1):
        viewers, buyers = uniques.get(int(key), (0, 0))
        who = creators.get(int(key) if kind == "creator" else int(creator))
        row = {
            "rank": rank,
            "id": int(key),
            "name": (who["nickname"] if kind == "creator" else f"{who['nickname']}的直播间")
            if who
            else str(int(key)),
            "gmv_fen": int(gmv),
            "orders": int(orders),
            "buyers": buyers,
            "viewers": viewers,
            "views": int(views),
            **boards.rates(int(gmv), buyers, viewers),
            "gpm": int(gmv) * 1000 // int(views) if views else 0,
            "rank_change": int(prev_rank) - rank if prev_seen else None,
            "kind": who["kind"] if who else "creator",
            "avatar_url": who["avatar_url"] if who else "",
        }
        if kind == "room":
            row["creator_id"] = int(creator)
            row["creator_name"] = who["nickname"] if who else str(int(creator))
        rows.append(row)
    first = ranked[0] if ranked else None
    return {
        "as_of": cut * 1000 if tail["latest_end"] is not None else None,
        "updated_at": tail["updated"],
        "totals": {
            "gmv_fen": int(first[7]) if first else 0,
            "orders": int(first[8]) if first else 0,
            "views": int(first[9]) if first else 0,
            "keys": int(first[10]) if first else 0,
        },
        "live_totals": _live_totals(client, settings, c, kind, cut, keep, params),
        "rows": rows,
    }


def _live_totals(client, settings: Settings, c: Campaign, kind: str, cut: int, keep: str, params) -> dict:
    """The campaign's GMV and orders including the windows after the cut-off (second-level freshness,
    for a running total; the rows and `totals` stop at `as_of`)."""
    view, _, key, creator = sources(settings, kind)
    ((gmv, orders),) = client.query(
        f"SELECT sum(gmv_fen), sum(orders) FROM (SELECT {key} AS id, {creator} AS creator_id, gmv_fen,"
        f" orders FROM {view} WHERE {_RANGE}) WHERE {keep}",
        parameters={**params, "f": params["f"], "e": c.ends_ms // 1000},
    ).result_rows
    ((snap_gmv, snap_orders),) = client.query(
        "SELECT sum(gmv_fen), sum(orders) FROM (SELECT id, creator_id, gmv_fen, orders"
        f" FROM {settings.clickhouse_database}.leaderboard_snapshots"
        " WHERE campaign_id = {c:String} AND kind = {k:String} AND snapshot_id = {sid:UInt64})"
        f" WHERE {keep}",
        parameters=params,
    ).result_rows
    return {"gmv_fen": int(gmv or 0) + int(snap_gmv or 0), "orders": int(orders or 0) + int(snap_orders or 0)}


def _uniques(
    client, settings: Settings, c: Campaign, kind: str, ids: list[int], cut: int | None = None
) -> dict[int, tuple[int, int]]:
    """id -> (viewers, buyers) over the campaign up to `cut` (minute states: buyers exact, viewers within
    1%). Campaigns with no minute states (data stored before migration 0008) use the hourly exact states
    of the whole campaign instead."""
    if not ids:
        return {}
    _, _, key, _ = sources(settings, kind)
    db = settings.clickhouse_database
    bounds = {"f": c.starts_ms // 1000, "e": c.ends_ms // 1000 if cut is None else cut, "ids": ids}
    rows = client.query(
        f"SELECT {key}, uniqCombined64Merge(viewers), uniqExactMerge(buyers) FROM {db}.room_minute_uniques"
        " WHERE minute >= toDateTime({f:UInt32}, 'UTC') AND minute < toDateTime({e:UInt32}, 'UTC')"
        f" AND {key} IN {{ids:Array(UInt64)}} GROUP BY {key}",
        parameters=bounds,
    ).result_rows
    if rows:
        return {int(k): (int(v), int(b)) for k, v, b in rows}
    rows = client.query(
        f"SELECT {key}, uniqExactMerge(viewers), uniqExactMerge(buyers)"
        f" FROM {db}.room_hourly_uniques"
        " WHERE hour >= toStartOfHour(toDateTime({f:UInt32}, 'UTC')) AND hour < toDateTime({e:UInt32}, 'UTC')"
        f" AND {key} IN {{ids:Array(UInt64)}} GROUP BY {key}",
        parameters={**bounds, "e": c.ends_ms // 1000},
    ).result_rows
    return {int(k): (int(v), int(b)) for k, v, b in rows}


def key_series(client, settings: Settings, c: Campaign, kind: str, key_id: int, minutes: int) -> list | None:
    """The last `minutes` windows (up to the newest one) of one key, oldest first; None if it has none."""
    view, _, key, _ = sources(settings, kind)
    rows = client.query(
        "SELECT toUnixTimestamp(window_start) AS ws, gmv_fen, orders, views, viewers, buyers"
        f" FROM {view} WHERE {_RANGE} AND {key} = {{id:UInt64}} ORDER BY ws DESC LIMIT {{n:UInt32}}",
        parameters={"f": c.starts_ms // 1000, "e": c.ends_ms // 1000, "id": key_id, "n": minutes},
    ).result_rows
    if not rows:
        return None
    names = ("window_start", "gmv_fen", "orders", "views", "viewers", "buyers")
    return [dict(zip(names, (int(ws) * 1000, *map(int, rest)), strict=True)) for ws, *rest in reversed(rows)]


def gmv_series(client, settings: Settings, c: Campaign, minutes: int) -> list[dict]:
    """Campaign GMV and orders per window for the last `minutes` windows that have data."""
    view, raw, _, _ = sources(settings, "room")
    bounds = {"f": c.starts_ms // 1000, "e": c.ends_ms // 1000}
    newest = client.query(
        f"SELECT toUnixTimestamp(window_start) FROM {raw} WHERE {_RANGE} ORDER BY window_start DESC LIMIT 1",
        parameters=bounds,
    ).result_rows
    if not newest:
        return []
    latest = newest[0][0]
    start = max(bounds["f"], int(latest) - (minutes - 1) * (settings.window_ms // 1000))
    rows = client.query(
        f"SELECT toUnixTimestamp(window_start) AS ws, sum(gmv_fen), sum(orders) FROM {view} WHERE {_RANGE}"
        " GROUP BY ws ORDER BY ws",
        parameters={**bounds, "f": start},
    ).result_rows
    return [{"window_start": int(ws) * 1000, "gmv_fen": int(g), "orders": int(o)} for ws, g, o in rows]


def keys_over(client, settings: Settings, c: Campaign, kind: str, min_gmv_fen: int) -> list[tuple[int, int]]:
    tail = _tail(client, settings, c, kind)
    rows = client.query(
        f"SELECT id, gmv FROM ({_union(settings, kind)}) WHERE gmv >= {{m:Int64}} ORDER BY id",
        parameters={**tail["params"], "m": min_gmv_fen},
    ).result_rows
    return [(int(k), int(g)) for k, g in rows]
