"""Boards beyond rooms and creators, names for every board, and the one cut-off a board is read at.

Contract (blocking; callers use asyncio.to_thread; values reach SQL only as bound parameters):
- `cutoff_s(settings, as_of_ms, starts_s)` -> the cut-off (epoch s) every figure of one answer is read
  at: `as_of` floored to a whole window and minute. Sums take windows / events before it, distinct
  users the minute states before it, so no row can show buyers > orders while data arrives.
- `names(client, settings, by, ids)` -> {id: {"name", ...}} from the dimension registry; an id the
  registry does not know is named by its id.
- `kind_filter(by, kind)` -> SQL condition on `creator_id` for `kind` (creator | celebrity | brand).
  Creators missing from the registry count as `creator` (an ordinary 达人).
- `dimension_board(client, settings, c, by, cut_s, limit, track=None, room=None, new_since=None,
  creator=None)` for by = mcn | merchant | category | source (of one room / creator when given): rows
  ranked by gmv_fen desc, then id asc, with totals.
- `key_summary(client, settings, c, kind, key_id, cut_s)` -> the drill-down of one room or creator up to
  the cut-off: name, funnel (views -> clickers -> buyers, with the metric table's rates) and source mix;
  None when the key has no window in the campaign.
  Attribution: the event's own mcn_id / merchant_id / category / source, else its creator's registry
  value. GMV, orders, buyers from `raw_events FINAL` order rows (exact; replays collapse); viewers and
  clickers from `room_minute_uniques` (uniqCombined64: within 1%).
"""

from __future__ import annotations

import math
from datetime import date

from pipeline.serving.registry import Campaign
from pipeline.settings import Settings

DIMENSIONS = ("mcn", "merchant", "category", "source")
SOURCE_NAMES = {"live_feed": "直播推荐 Live feed", "short_video": "短视频 Short video",
                "search": "搜索 Search", "mall": "商城 Mall", "follow": "关注 Follow", "other": "其他 Other",
                "unknown": "未知 Unknown"}  # fmt: skip
# Which traffic field (全域) a source belongs to: the content field against the centre field.
SOURCE_FIELD = {"live_feed": "content", "short_video": "content", "search": "centre", "mall": "centre",
                "follow": "content", "other": "other", "unknown": "other"}  # fmt: skip
# event column, registry column, "absent" literal, SQL type of the key
_DIM = {
    "mcn": ("mcn_id", "mcn_id", "0", "UInt64"),
    "merchant": ("merchant_id", "merchant_id", "0", "UInt64"),
    "category": ("category", "category", "''", "String"),
    "source": ("source", "source", "''", "String"),
}


def cutoff_s(settings: Settings, as_of_ms: int | None, starts_s: int) -> int:
    if as_of_ms is None:
        return starts_s
    step = math.lcm(max(1, settings.window_ms // 1000), 60)
    as_of_s = as_of_ms // 1000
    return max(starts_s, as_of_s - as_of_s % step)


def kind_filter(settings: Settings, kind: str | None, column: str = "creator_id") -> str:
    """A condition on `column` (a creator id) keeping creators of `kind`; '1' for None."""
    if kind is None:
        return "1"
    creators = f"(SELECT creator_id FROM {settings.clickhouse_database}.creators FINAL WHERE kind"
    if kind == "creator":
        return f"{column} NOT IN {creators} != 'creator')"
    return f"{column} IN {creators} = {{kind:String}})"


def _key(by: str) -> str:
    """The attributed key of one event row `e` joined with its creator `r` (registry fallback)."""
    event_col, reg_col, absent, _ = _DIM[by]
    if by == "source":
        return "if(e.source != '', e.source, if(r.source != '', r.source, 'unknown'))"
    return f"if(e.{event_col} != {absent}, e.{event_col}, r.{reg_col})"


def _track(settings: Settings, by: str, track: str | None) -> str:
    if by != "mcn" or track in (None, "all"):
        return "1"
    db = settings.clickhouse_database
    if track == "new":
        return f"key IN (SELECT mcn_id FROM {db}.mcns FINAL WHERE signed_on >= {{new_since:Date}})"
    return f"key IN (SELECT mcn_id FROM {db}.mcns FINAL WHERE region = {{region:String}})"


def dimension_board(
    client,
    settings: Settings,
    c: Campaign,
    by: str,
    cut_s: int,
    limit: int,
    track: str | None = None,
    room: int | None = None,
    new_since: date | None = None,
    creator: int | None = None,
) -> dict:
    db = settings.clickhouse_database
    key, ktype = _key(by), _DIM[by][3]
    absent = "'unknown'" if by == "source" else _DIM[by][2]
    where_room = "AND room_id = {room:UInt64}" if room is not None else ""
    where_room += " AND creator_id = {creator:UInt64}" if creator is not None else ""
    region = (track or "")[len("region:") :]
    params = {"f": c.starts_ms // 1000, "cut": cut_s, "room": room or 0, "creator": creator or 0,
              "new_since": new_since or date(1970, 1, 1), "region": region}  # fmt: skip
    registry = f"(SELECT creator_id, mcn_id, merchant_id, category, source FROM {db}.creators FINAL) AS r"
    keep = f"key != {absent} AND {_track(settings, by, track)}" if by != "source" else "1"
    orders = client.query(
        f"SELECT key, sum(amount_fen), count(), uniqExact(user_id) FROM ("
        f" SELECT CAST({key} AS {ktype}) AS key, e.amount_fen AS amount_fen, e.user_id AS user_id FROM ("
        "  SELECT creator_id, mcn_id, merchant_id, category, source, amount_fen, user_id"
        f"  FROM {db}.raw_events FINAL WHERE type = 'order' AND ts >= toDateTime64({{f:UInt32}}, 3, 'UTC')"
        f"   AND ts < toDateTime64({{cut:UInt32}}, 3, 'UTC') {where_room}) AS e"
        f" LEFT JOIN {registry} ON r.creator_id = e.creator_id) WHERE {keep} GROUP BY key",
        parameters=params,
    ).result_rows
    people = client.query(
        f"SELECT key, uniqCombined64Merge(viewers), uniqCombined64Merge(clickers) FROM ("
        f" SELECT CAST({key} AS {ktype}) AS key, e.viewers AS viewers, e.clickers AS clickers FROM ("
        f"  SELECT creator_id, mcn_id, merchant_id, category, source, viewers, clickers"
        f"  FROM {db}.room_minute_uniques WHERE minute >= toDateTime({{f:UInt32}}, 'UTC')"
        f"   AND minute < toDateTime({{cut:UInt32}}, 'UTC') {where_room}) AS e"
        f" LEFT JOIN {registry} ON r.creator_id = e.creator_id) WHERE {keep} GROUP BY key",
        parameters=params,
    ).result_rows
    facts: dict = {}
    for k, gmv, n, buyers in orders:
        facts[k] = [int(gmv), int(n), int(buyers), 0, 0]
    for k, viewers, clickers in people:
        facts.setdefault(k, [0, 0, 0, 0, 0])[3:] = [int(viewers), int(clickers)]
    ranked = sorted(facts.items(), key=lambda kv: (-kv[1][0], kv[0]))
    total = [sum(v[i] for v in facts.values()) for i in range(2)]
    shown = ranked[:limit]
    named = names(client, settings, by, [k for k, _ in shown])
    rows = []
    for rank, (k, (gmv, n, buyers, viewers, clickers)) in enumerate(shown, start=1):
        row = {"rank": rank, "id": k, **named[k], "gmv_fen": gmv, "orders": n, "buyers": buyers,
               "viewers": viewers, "clickers": clickers, **rates(gmv, buyers, viewers, clickers)}  # fmt: skip
        if by == "source":
            row["field"] = SOURCE_FIELD.get(k, "other")
            row["gmv_share"] = round(gmv / total[0], 6) if total[0] else 0.0
            row["orders_share"] = round(n / total[1], 6) if total[1] else 0.0
        rows.append(row)
    if by == "source":
        all_viewers = sum(v[3] for v in facts.values())
        for row in rows:  # a user may come in by two entries: viewer shares are of the sum over entries
            row["viewers_share"] = round(row["viewers"] / all_viewers, 6) if all_viewers else 0.0
    totals = {"gmv_fen": total[0], "orders": total[1], "keys": len(facts)}
    return {"totals": totals, "rows": rows}


def rates(gmv: int, buyers: int, viewers: int, clickers: int | None = None) -> dict:
    """The metric table's rates (domain definitions; money floored to whole fen)."""
    out = {
        "conversion": round(buyers / viewers, 6) if viewers else 0.0,
        "uv_value_fen": gmv // viewers if viewers else 0,
        "spend_per_buyer_fen": gmv // buyers if buyers else 0,
    }
    if clickers is not None:
        out["click_through"] = round(clickers / viewers, 6) if viewers else 0.0
        out["click_conversion"] = round(buyers / clickers, 6) if clickers else 0.0
    return out


def names(client, settings: Settings, by: str, ids: list) -> dict:
    """id -> display fields from the registry; unknown ids are named by their id."""
    db = settings.clickhouse_database
    out: dict = {k: {"name": str(k)} for k in ids}
    if not ids:
        return out
    if by == "source":
        return {k: {"name": SOURCE_NAMES.get(k, str(k))} for k in ids}
    if by in ("creator", "room"):
        return out  # rooms and creators: see creator_names (they need the creator id of a room)
    queries = {
        "mcn": ("SELECT mcn_id, name, region, toString(signed_on) FROM {db}.mcns FINAL"
                " WHERE mcn_id IN {{ids:Array(UInt64)}}", ("name", "region", "signed_on")),
        "merchant": ("SELECT merchant_id, name, brand FROM {db}.merchants FINAL"
                     " WHERE merchant_id IN {{ids:Array(UInt64)}}", ("name", "brand")),
        "category": ("SELECT category, name, name_en FROM {db}.categories FINAL"
                     " WHERE category IN {{ids:Array(String)}}", ("name", "name_en")),
    }  # fmt: skip
    sql, fields = queries[by]
    for key, *values in client.query(sql.format(db=db), parameters={"ids": ids}).result_rows:
        out[key] = dict(zip(fields, values, strict=True))
    return out


def creator_names(client, settings: Settings, ids: list[int]) -> dict[int, dict]:
    """creator id -> {nickname, avatar_url, kind, mcn_id} for the registered ones."""
    if not ids:
        return {}
    rows = client.query(
        "SELECT creator_id, nickname, avatar_url, kind, mcn_id"
        f" FROM {settings.clickhouse_database}.creators FINAL WHERE creator_id IN {{ids:Array(UInt64)}}",
        parameters={"ids": ids},
    ).result_rows
    return {
        int(k): {"nickname": n, "avatar_url": a, "kind": kind, "mcn_id": int(m)} for k, n, a, kind, m in rows
    }


def key_summary(client, settings: Settings, c: Campaign, kind: str, key_id: int, cut_s: int) -> dict | None:
    db = settings.clickhouse_database
    view, key = (f"{db}.room_window_stats", "room_id") if kind == "room" else (f"{db}.creator_window_stats",
                                                                               "creator_id")  # fmt: skip
    params = {"f": c.starts_ms // 1000, "cut": cut_s, "e": c.ends_ms // 1000, "id": key_id}
    ((n, views, clicks, orders, gmv, refund_fen),) = client.query(
        "SELECT count(), sumIf(views, window_start < toDateTime({cut:UInt32}, 'UTC')),"
        " sumIf(clicks, window_start < toDateTime({cut:UInt32}, 'UTC')),"
        " sumIf(orders, window_start < toDateTime({cut:UInt32}, 'UTC')),"
        " sumIf(gmv_fen, window_start < toDateTime({cut:UInt32}, 'UTC')),"
        " sumIf(refund_fen, window_start < toDateTime({cut:UInt32}, 'UTC'))"
        f" FROM {view} WHERE window_start >= toDateTime({{f:UInt32}}, 'UTC')"
        f" AND window_start < toDateTime({{e:UInt32}}, 'UTC') AND {key} = {{id:UInt64}}",
        parameters=params,
    ).result_rows
    if not n:
        return None
    ((viewers, clickers, buyers, creator),) = client.query(
        "SELECT uniqCombined64Merge(viewers), uniqCombined64Merge(clickers), uniqExactMerge(buyers),"
        f" max(creator_id) FROM {db}.room_minute_uniques WHERE minute >= toDateTime({{f:UInt32}}, 'UTC')"
        f" AND minute < toDateTime({{cut:UInt32}}, 'UTC') AND {key} = {{id:UInt64}}",
        parameters=params,
    ).result_rows
    creator_id = key_id if kind == "creator" else int(creator)
    who = creator_names(client, settings, [creator_id]).get(creator_id) if creator_id else None
    name = str(key_id) if who is None else who["nickname"] + ("" if kind == "creator" else "的直播间")
    gmv, views, viewers, clickers, buyers = int(gmv), int(views), int(viewers), int(clickers), int(buyers)
    funnel = {"views": views, "viewers": viewers, "clicks": int(clicks), "clickers": clickers,
              "orders": int(orders), "buyers": buyers, "gmv_fen": gmv, "refund_fen": int(refund_fen),
              **rates(gmv, buyers, viewers, clickers), "gpm": gmv * 1000 // views if views else 0,
              "refund_rate": round(int(refund_fen) / gmv, 6) if gmv else 0.0}  # fmt: skip
    scope = {"room": key_id} if kind == "room" else {"creator": key_id}
    sources = dimension_board(client, settings, c, "source", cut_s, 20, **scope)
    out = {"id": key_id, "name": name, "kind": who["kind"] if who else "creator",
           "avatar_url": who["avatar_url"] if who else "", "funnel": funnel,
           "sources": sources["rows"]}  # fmt: skip
    if kind == "room":
        out["creator_id"] = creator_id
        out["creator_name"] = who["nickname"] if who else str(creator_id)
    return out
