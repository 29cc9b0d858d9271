"""破千万 / 破亿 moments: a room or creator crossing a GMV threshold during a live campaign.

Contract: `MilestoneWatcher(settings, producer_send)`; `await check()` from a worker timer (on ONE worker:
Faust's `on_leader=True`). `producer_send(topic, key: bytes, value: bytes)` is an async callable that
returns once the broker acknowledged the message. Each (campaign, kind, id, threshold) is published to
`settings.topics.milestones` once, keyed by the room / creator id, as JSON:
  {"milestone_id", "campaign_id", "kind", "id", "threshold_fen", "gmv_fen", "detected_at"}.
Once across restarts: the milestone is recorded in `<db>.milestones` (published=0) BEFORE it is sent and
marked published=1 after the acknowledgement; the first check after a start re-sends rows still at 0.
So nothing is lost; a crash between the acknowledgement and the mark re-sends that one message, which
carries the same deterministic `milestone_id` for consumers to drop (at-least-once, duplicate-detectable).
Thresholds: `settings.milestones_fen` (env MILESTONES_FEN, default 1,000万 and 1亿 CNY in fen).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import orjson

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.serving import leaderboard as queries
from pipeline.serving.api import _read_campaigns
from pipeline.settings import Settings

log = logging.getLogger(__name__)
COLUMNS = ["campaign_id", "kind", "id", "threshold_fen", "gmv_fen", "detected_at", "published"]
Send = Callable[[str, bytes, bytes], Awaitable[object]]


def thresholds(settings: Settings) -> tuple[int, ...]:
    return tuple(sorted(settings.milestones_fen))


def milestone_id(campaign_id: str, kind: str, key: int, threshold: int) -> str:
    return f"{campaign_id}:{kind}:{key}:{threshold}"


def message(row: tuple) -> tuple[bytes, bytes]:
    """(key, value) of the Kafka message for a milestones-table row in COLUMNS order."""
    campaign_id, kind, key, threshold, gmv, detected_at, _ = row
    body = {
        "milestone_id": milestone_id(campaign_id, kind, key, threshold),
        "campaign_id": campaign_id,
        "kind": kind,
        "id": key,
        "threshold_fen": threshold,
        "gmv_fen": gmv,
        "detected_at": int(detected_at.timestamp() * 1000),
    }
    return str(key).encode(), orjson.dumps(body)


def find_new(client, settings: Settings, now_ms: int) -> list[tuple]:
    """Blocking: milestone rows (COLUMNS order, published=0) crossed but not yet recorded."""
    levels = thresholds(settings)
    db = settings.clickhouse_database
    found = []
    for c in _read_campaigns(client, settings).values():
        if c.status(now_ms) != "live":
            continue
        known = {
            (kind, int(key), int(t))
            for kind, key, t in client.query(
                f"SELECT kind, id, threshold_fen FROM {db}.milestones FINAL WHERE campaign_id = {{c:String}}",
                parameters={"c": c.id},
            ).result_rows
        }
        detected = datetime.fromtimestamp(now_ms / 1000, UTC)
        for kind in ("room", "creator"):
            for key, gmv in queries.keys_over(client, settings, c, kind, levels[0]):
                for level in levels:
                    if gmv >= level and (kind, key, level) not in known:
                        found.append((c.id, kind, key, level, gmv, detected, 0))
    return found


def unpublished(client, settings: Settings) -> list[tuple]:
    """Blocking: recorded rows whose message may not have been acknowledged (published still 0)."""
    return [
        tuple(row)
        for row in client.query(
            f"SELECT {', '.join(COLUMNS)} FROM {settings.clickhouse_database}.milestones FINAL "
            "WHERE published = 0 ORDER BY detected_at, campaign_id, kind, id, threshold_fen"
        ).result_rows
    ]


def record(client, settings: Settings, rows: list[tuple], published: int) -> None:
    if rows:
        rows = [(*row[:6], published) for row in rows]
        client.insert(f"{settings.clickhouse_database}.milestones", rows, column_names=COLUMNS)


class MilestoneWatcher:
    def __init__(self, settings: Settings, producer_send: Send):
        self.settings = settings
        self.send = producer_send
        self._client = None
        self._resumed = False

    async def _call(self, fn, *args):
        if self._client is None:
            self._client = await asyncio.to_thread(make_client, self.settings, Profile.INSERT)
        return await asyncio.to_thread(fn, self._client, self.settings, *args)

    async def check(self, now_ms: int | None = None) -> int:
        """Publish milestones crossed since the last check; returns how many were published."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        pending = [] if self._resumed else await self._call(unpublished)
        self._resumed = True
        new = await self._call(find_new, now_ms)
        await self._call(record, new, 0)  # recorded first: a crash after this re-sends, never loses
        for row in pending + new:
            key, value = message(row)
            await self.send(self.settings.topics.milestones, key, value)
            await self._call(record, [row], 1)
            log.info("milestone %s published", milestone_id(*row[:4]))
        return len(pending) + len(new)
