"""The read-only JSON API: parameter checks, campaign lookup and response shapes.

Contract: every method of `ServingApi` is a coroutine returning `(http_status, json_body)`; it never
blocks the event loop (ClickHouse calls go through `asyncio.to_thread` on one read-only `Profile.QUERY`
client). Bad parameters -> 400 `{"error": ...}`, unknown campaign or key -> 404, ClickHouse unreachable
-> 503. Path and query text is validated into ints / known words first and reaches SQL only as bound
parameters.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.serving import boards, rollup
from pipeline.serving import leaderboard as queries
from pipeline.serving.dimensions import CREATOR_KINDS
from pipeline.serving.registry import ID_RE, Campaign
from pipeline.settings import Settings

log = logging.getLogger(__name__)
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
DEFAULT_MINUTES, MAX_MINUTES = 60, 1440
MAX_ID = 2**63 - 1
CAMPAIGN_CACHE_S = 5.0
KIND_BY_PATH = {"rooms": "room", "creators": "creator"}
DIGITS_RE = re.compile(r"[0-9]+")
BOARDS = ("creator", "room", *boards.DIMENSIONS)


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_int(raw: str | None, minimum: int, maximum: int) -> int | None:
    """`raw` as an int in [minimum, maximum], or None. Only ASCII digits, at most as many as `maximum`
    has (str.isdigit() also accepts '²' or Arabic-Indic digits, and int() of thousands of digits raises
    or costs CPU: both once answered 503)."""
    if raw is None or len(raw) > len(str(maximum)) or not DIGITS_RE.fullmatch(raw):
        return None
    value = int(raw)
    return value if minimum <= value <= maximum else None


def int_param(query: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    """An absent parameter gives `default`; any other value must be an integer from 1 to `maximum`
    (an empty one is refused too)."""
    if name not in query:
        return default
    value = parse_int(query[name], 1, maximum)
    if value is None:
        raise BadRequest(400, f"{name} must be an integer from 1 to {maximum}")
    return value


def key_param(raw: str) -> int:
    value = parse_int(raw, 1, MAX_ID)
    if value is None:
        raise BadRequest(400, "id must be an integer from 1 to 2^63-1")
    return value


def campaign_json(c: Campaign, now_ms: int) -> dict:
    return {
        "id": c.id,
        "name": c.name,
        "name_en": c.name_en,
        "starts_at": c.starts_ms,
        "ends_at": c.ends_ms,
        "timezone": c.timezone,
        "status": c.status(now_ms),
    }


class ServingApi:
    """Answers the API routes; `watermark_ms(kind)` (optional) gives the event time up to which the
    stream has confirmed writing the `kind` ("room" or "creator") windows."""

    def __init__(self, settings: Settings, watermark_ms: Callable[[str], int | None] | None = None):
        self.settings = settings
        self.watermark_ms = watermark_ms or (lambda kind: None)
        self._client = None
        self._campaigns: tuple[float, dict[str, Campaign]] = (0.0, {})

    async def _run(self, fn, *args):
        if self._client is None:
            self._client = await asyncio.to_thread(make_client, self.settings, Profile.QUERY)
        return await asyncio.to_thread(fn, self._client, self.settings, *args)

    async def _all_campaigns(self) -> dict[str, Campaign]:
        fetched_at, cached = self._campaigns
        if time.monotonic() - fetched_at < CAMPAIGN_CACHE_S:
            return cached
        rows = await self._run(_read_campaigns)
        self._campaigns = (time.monotonic(), rows)
        return rows

    async def _campaign(self, campaign_id: str) -> Campaign:
        found = (await self._all_campaigns()).get(campaign_id) if ID_RE.match(campaign_id) else None
        if found is None:
            raise BadRequest(404, f"unknown campaign {campaign_id[:64]!r}")
        return found

    async def handle(self, coro) -> tuple[int, dict]:
        """Run one API coroutine and turn its failures into (status, error body)."""
        try:
            return 200, await coro
        except BadRequest as exc:
            return exc.status, {"error": str(exc)}
        except Exception as exc:  # ClickHouse down or a query failing: the page shows "connection lost"
            log.warning("API request failed: %s: %s", type(exc).__name__, str(exc)[:300])
            self._client = None if "connect" in str(exc).lower() else self._client
            return 503, {"error": "data store unavailable"}

    async def campaigns(self) -> dict:
        now_ms = int(time.time() * 1000)
        items = sorted((await self._all_campaigns()).values(), key=lambda c: (c.starts_ms, c.id))
        return {"now": now_ms, "campaigns": [campaign_json(c, now_ms) for c in items]}

    async def leaderboard(self, campaign_id: str, query: Mapping[str, str]) -> dict:
        by, track, kind, room = board_params(query)
        limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        c = await self._campaign(campaign_id)
        if by in ("creator", "room"):
            board = await self._run(queries.leaderboard, c, by, limit, self.watermark_ms(by), kind)
        else:
            board = await self._run(_dimension_board, c, by, limit, self.watermark_ms("room"), track, room)
        extra = {k: v for k, v in (("track", track), ("kind", kind), ("room", room)) if v is not None}
        return {"campaign": campaign_json(c, int(time.time() * 1000)), "by": by, **extra, **board}

    async def key_series(self, campaign_id: str, kind_path: str, raw_id: str, query) -> dict:
        kind = KIND_BY_PATH[kind_path]
        key_id = key_param(raw_id)
        minutes = int_param(query, "minutes", DEFAULT_MINUTES, MAX_MINUTES)
        c = await self._campaign(campaign_id)
        series = await self._run(queries.key_series, c, kind, key_id, minutes)
        if series is None:
            raise BadRequest(404, f"{kind} {key_id} has no data in campaign {c.id}")
        return {"campaign": c.id, "by": kind, "id": key_id, "window_ms": self.settings.window_ms,
                "series": series}  # fmt: skip

    async def key_summary(self, campaign_id: str, kind_path: str, raw_id: str) -> dict:
        """The drill-down of one room or creator: funnel and source mix at the board's cut-off."""
        kind = KIND_BY_PATH[kind_path]
        key_id = key_param(raw_id)
        c = await self._campaign(campaign_id)
        body = await self._run(_key_summary, c, kind, key_id, self.watermark_ms(kind))
        if body is None:
            raise BadRequest(404, f"{kind} {key_id} has no data in campaign {c.id}")
        return {"campaign": c.id, "by": kind, **body}

    async def gmv_series(self, campaign_id: str, query) -> dict:
        minutes = int_param(query, "minutes", DEFAULT_MINUTES, MAX_MINUTES)
        c = await self._campaign(campaign_id)
        series = await self._run(queries.gmv_series, c, minutes)
        return {"campaign": c.id, "window_ms": self.settings.window_ms, "series": series}

    async def milestones(self, campaign_id: str, query) -> dict:
        limit = int_param(query, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        c = await self._campaign(campaign_id)
        return {"campaign": c.id, "milestones": await self._run(_read_milestones, c.id, limit)}


def board_params(query: Mapping[str, str]) -> tuple[str, str | None, str | None, int | None]:
    """(by, track, kind, room) of a leaderboard request; BadRequest(400) for a malformed or misplaced one."""
    by = query.get("by", "creator")
    if by not in BOARDS:
        raise BadRequest(400, f"by must be one of {', '.join(BOARDS)}")
    track, kind, raw_room = query.get("track"), query.get("kind"), query.get("room")
    if track is not None:
        if by != "mcn":
            raise BadRequest(400, "track applies to by=mcn only")
        region = track[len("region:") :] if track.startswith("region:") else None
        if track not in ("all", "new") and not (region and len(region) <= 64 and region.strip() == region):
            raise BadRequest(400, "track must be all, new or region:<name>")
    if kind is not None:
        if by not in ("creator", "room"):
            raise BadRequest(400, "kind applies to by=creator or by=room only")
        if kind not in CREATOR_KINDS:
            raise BadRequest(400, f"kind must be one of {', '.join(CREATOR_KINDS)}")
    room = None
    if raw_room is not None:
        if by not in boards.DIMENSIONS:
            raise BadRequest(400, "room applies to by=mcn, merchant, category or source only")
        room = key_param(raw_room)
    return by, track, kind, room


def _cut(client, settings: Settings, c: Campaign, kind: str, watermark_ms) -> tuple[int | None, int]:
    """(as_of ms or None, cut-off s) from the stored windows of `kind`, as the leaderboard computes it."""
    _, raw, _, _ = rollup.sources(settings, kind)
    latest_end, n = client.query(
        f"SELECT toUnixTimestamp(max(window_end)), count() FROM {raw} WHERE window_start >="
        " toDateTime({f:UInt32}, 'UTC') AND window_start < toDateTime({e:UInt32}, 'UTC')",
        parameters={"f": c.starts_ms // 1000, "e": c.ends_ms // 1000},
    ).result_rows[0]
    as_of = queries.as_of_ms(settings, c, int(latest_end) if n else None, watermark_ms)
    return as_of, boards.cutoff_s(settings, as_of, c.starts_ms // 1000)


def _key_summary(client, settings: Settings, c: Campaign, kind: str, key_id: int, watermark_ms):
    as_of, cut = _cut(client, settings, c, kind, watermark_ms)
    body = boards.key_summary(client, settings, c, kind, key_id, cut)
    return None if body is None else {"as_of": cut * 1000 if as_of is not None else None, **body}


def _dimension_board(client, settings: Settings, c: Campaign, by, limit, watermark_ms, track, room) -> dict:
    """A board over mcn / merchant / category / source, read at the same cut-off as the room board."""
    as_of, cut = _cut(client, settings, c, "room", watermark_ms)
    new_since = None
    if track == "new":
        start = datetime.fromtimestamp(c.starts_ms / 1000, ZoneInfo(c.timezone)).date()
        new_since = _months_before(start, settings.new_mcn_months)
    board = boards.dimension_board(client, settings, c, by, cut, limit, track, room, new_since)
    return {"as_of": cut * 1000 if as_of is not None else None, **board}


def _months_before(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _read_campaigns(client, settings: Settings) -> dict[str, Campaign]:
    rows = client.query(
        "SELECT campaign_id, name, name_en, toUnixTimestamp(starts_at), toUnixTimestamp(ends_at), timezone"
        f" FROM {settings.clickhouse_database}.campaigns FINAL"
    ).result_rows
    return {
        cid: Campaign(cid, name, name_en, datetime.fromtimestamp(s, UTC), datetime.fromtimestamp(e, UTC), tz)
        for cid, name, name_en, s, e, tz in rows
    }


def _read_milestones(client, settings: Settings, campaign_id: str, limit: int) -> list[dict]:
    rows = client.query(
        "SELECT kind, id, threshold_fen, gmv_fen, toUnixTimestamp64Milli(detected_at)"
        f" FROM {settings.clickhouse_database}.milestones FINAL WHERE campaign_id = {{c:String}}"
        " ORDER BY detected_at DESC, kind, id, threshold_fen LIMIT {n:UInt32}",
        parameters={"c": campaign_id, "n": limit},
    ).result_rows
    names = ("kind", "id", "threshold_fen", "gmv_fen", "detected_at")
    return [dict(zip(names, (k, int(i), int(t), int(g), int(d)), strict=True)) for k, i, t, g, d in rows]
