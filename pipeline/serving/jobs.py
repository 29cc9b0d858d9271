"""The serving side's worker jobs: load the registry at start, roll leaderboard snapshots on a timer.

Contract (all coroutines; ClickHouse work runs in a thread, never on the event loop):
- `on_worker_start(settings, path=DEFAULT_REGISTRY, dimensions_path=DEFAULT_DIMENSIONS)` loads
  `deploy/campaigns.toml` into `<db>.campaigns` and `deploy/dimensions.toml` into the dimension tables
  (raises `RegistryError` / `DimensionError` on a bad file, so a broken registry stops the worker at
  start, loudly).
- `roll_snapshots(settings, watermark_ms=None)` brings the leaderboard snapshots of live campaigns (and of
  campaigns ended less than a day ago, so their boards end fully sealed) up to date. Run it on ONE worker
  (`@app.timer(ROLL_INTERVAL_S, on_leader=True)`); concurrent rolls are harmless but wasted work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from pipeline.clickhouse.clients import Profile, make_client
from pipeline.serving import rollup
from pipeline.serving.api import _read_campaigns
from pipeline.serving.dimensions import DEFAULT_DIMENSIONS, load_dimensions, sync_dimensions
from pipeline.serving.registry import DEFAULT_REGISTRY, load_campaigns, sync_campaigns
from pipeline.settings import Settings

log = logging.getLogger(__name__)
ROLL_INTERVAL_S = 10.0
ENDED_GRACE_MS = 24 * 3600 * 1000


def _load(settings: Settings, path: Path) -> int:
    campaigns = load_campaigns(settings, path)
    client = make_client(settings, Profile.INSERT)
    try:
        return sync_campaigns(client, settings, campaigns)
    finally:
        client.close()


def _load_dimensions(settings: Settings, path: Path) -> dict[str, int]:
    dims = load_dimensions(path)
    client = make_client(settings, Profile.INSERT)
    try:
        return sync_dimensions(client, settings, dims)
    finally:
        client.close()


async def on_worker_start(
    settings: Settings, path: Path = DEFAULT_REGISTRY, dimensions_path: Path = DEFAULT_DIMENSIONS
) -> int:
    count = await asyncio.to_thread(_load, settings, path)
    log.info("campaign registry %s: %d campaigns loaded", path, count)
    written = await asyncio.to_thread(_load_dimensions, settings, dimensions_path)
    log.info("dimension registry %s: %s", dimensions_path, written)
    return count


def roll_all(settings: Settings, watermark_ms: int | None = None, now_ms: int | None = None) -> int:
    """Blocking: roll every (live or recently ended campaign, kind); returns how many snapshots moved."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    client = make_client(settings, Profile.INSERT)
    moved = 0
    try:
        for c in _read_campaigns(client, settings).values():
            if c.starts_ms > now_ms or c.ends_ms + ENDED_GRACE_MS < now_ms:
                continue
            for kind in rollup.KINDS:
                sealed = rollup.roll(client, settings, c.id, c.starts_ms // 1000, c.ends_ms // 1000, kind,
                                     watermark_ms)  # fmt: skip
                moved += sealed is not None
    finally:
        client.close()
    return moved


async def roll_snapshots(settings: Settings, watermark_ms: int | None = None) -> int:
    return await asyncio.to_thread(roll_all, settings, watermark_ms)
