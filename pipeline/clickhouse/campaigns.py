"""Load the campaign registry into `<db>.campaigns` as an upsert.

Contract: `upsert_campaigns(client, database, campaigns)` inserts one row per campaign (mapping with
campaign_id, name, starts_at, ends_at as aware datetimes or epoch seconds, optional name_en, timezone,
filters (dict or JSON text)) and then collapses older versions with OPTIMIZE ... FINAL, so plain reads of
the table show one row per campaign. Blocking; the table is tiny, so the OPTIMIZE is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

COLUMNS = ("campaign_id", "name", "name_en", "starts_at", "ends_at", "timezone", "filters")


def campaign_row(campaign: Mapping[str, Any]) -> tuple:
    filters = campaign.get("filters") or {}
    if not isinstance(filters, str):
        filters = orjson.dumps(filters).decode()
    return (
        str(campaign["campaign_id"]),
        str(campaign["name"]),
        str(campaign.get("name_en") or ""),
        campaign["starts_at"],
        campaign["ends_at"],
        str(campaign.get("timezone") or "Asia/Shanghai"),
        filters,
    )


def upsert_campaigns(client, database: str, campaigns: Iterable[Mapping[str, Any]]) -> int:
    rows = [campaign_row(c) for c in campaigns]
    if rows:
        client.insert(f"{database}.campaigns", rows, column_names=list(COLUMNS))
        client.command(f"OPTIMIZE TABLE {database}.campaigns FINAL")
    return len(rows)
