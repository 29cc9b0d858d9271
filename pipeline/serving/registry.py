"""The campaign registry: `deploy/campaigns.toml` -> `Campaign` values -> `<db>.campaigns`.

Contract:
- `load_campaigns(settings, path, now=None)` parses and validates the file (tomllib) and returns the
  campaigns sorted by start; it raises `RegistryError` (user-facing, names the campaign) on a bad entry.
  `dynamic = "today"` (the `demo` campaign) becomes today 00:00 to tomorrow 00:00 in the campaign's zone,
  evaluated at `now` (default: the current time) - so a worker running past midnight keeps yesterday's
  demo until the registry is loaded again.
- `sync_campaigns(client, settings, campaigns)` upserts them into ClickHouse (blocking; insert/migrate
  client). Campaigns removed from the file are not deleted from the table.
- `Campaign.status(now_ms)` is `upcoming`, `live` or `ended` for the half-open range [starts, ends).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.clickhouse.campaigns import upsert_campaigns
from pipeline.errors import UserFacingError
from pipeline.settings import PROJECT_ROOT, Settings

DEFAULT_REGISTRY = PROJECT_ROOT / "deploy" / "campaigns.toml"
DEFAULT_TIMEZONE = "Asia/Shanghai"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class RegistryError(UserFacingError):
    """The registry file is missing or one of its campaigns is invalid."""


@dataclass(frozen=True)
class Campaign:
    id: str
    name: str
    name_en: str
    starts_at: datetime  # aware, UTC
    ends_at: datetime  # aware, UTC, exclusive
    timezone: str = DEFAULT_TIMEZONE
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def starts_ms(self) -> int:
        return int(self.starts_at.timestamp() * 1000)

    @property
    def ends_ms(self) -> int:
        return int(self.ends_at.timestamp() * 1000)

    @classmethod
    def from_epoch(cls, cid: str, starts_s: int, ends_s: int, name: str = "", name_en: str = "") -> Campaign:
        return cls(
            cid,
            name or cid,
            name_en,
            datetime.fromtimestamp(starts_s, UTC),
            datetime.fromtimestamp(ends_s, UTC),
        )

    def status(self, now_ms: int) -> str:
        if now_ms < self.starts_ms:
            return "upcoming"
        return "live" if now_ms < self.ends_ms else "ended"

    def as_row(self) -> dict[str, Any]:
        """The mapping `pipeline.clickhouse.campaigns.upsert_campaigns` takes (epoch seconds bounds)."""
        return {
            "campaign_id": self.id,
            "name": self.name,
            "name_en": self.name_en,
            "starts_at": self.starts_ms // 1000,
            "ends_at": self.ends_ms // 1000,
            "timezone": self.timezone,
            "filters": self.filters,
        }


def load_campaigns(settings: Settings, path: Path | str = DEFAULT_REGISTRY, now: datetime | None = None):
    """Parse and validate the registry; return `list[Campaign]` sorted by start, then id."""
    del settings  # part of the signature so future settings (e.g. a default zone) need no new callers
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"campaign registry {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"campaign registry {path} is not valid TOML: {exc}") from None
    entries = document.get("campaign")
    if not isinstance(entries, dict) or not entries:
        raise RegistryError(f"campaign registry {path} has no [campaign.<id>] tables")
    now = now or datetime.now(UTC)
    campaigns = [_campaign(cid, entry, now) for cid, entry in entries.items()]
    return sorted(campaigns, key=lambda c: (c.starts_at, c.id))


def sync_campaigns(client, settings: Settings, campaigns: list[Campaign]) -> int:
    """Upsert `campaigns` into `<db>.campaigns`; returns how many rows were written. Blocking."""
    return upsert_campaigns(client, settings.clickhouse_database, [c.as_row() for c in campaigns])


def _campaign(cid: str, entry: Any, now: datetime) -> Campaign:
    def fail(reason: str) -> RegistryError:
        return RegistryError(f"campaign {cid!r} in the registry: {reason}")

    if not ID_RE.match(cid):
        raise fail("id must be lowercase letters, digits or '-' (at most 64)")
    if not isinstance(entry, dict):
        raise fail("must be a table")
    unknown = set(entry) - {"name", "name_en", "starts", "ends", "timezone", "filters", "dynamic"}
    if unknown:
        raise fail(f"unknown keys {sorted(unknown)}")
    name, name_en = entry.get("name"), entry.get("name_en", "")
    if not isinstance(name, str) or not name.strip() or not isinstance(name_en, str):
        raise fail("needs a non-empty `name` (and `name_en` must be text)")
    zone_name = entry.get("timezone", DEFAULT_TIMEZONE)
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise fail(f"unknown timezone {zone_name!r}") from None
    filters = entry.get("filters", {})
    if not isinstance(filters, dict):
        raise fail("`filters` must be a table")
    if "dynamic" in entry:
        if entry["dynamic"] != "today" or "starts" in entry or "ends" in entry:
            raise fail('`dynamic` must be "today", without starts/ends')
        today = now.astimezone(zone).date()
        starts, ends = _local(today, zone), _local(today + timedelta(days=1), zone)
    else:
        starts, ends = _bound(entry.get("starts"), zone, fail), _bound(entry.get("ends"), zone, fail)
    if starts >= ends:
        raise fail("`starts` must be before `ends`")
    if starts.timestamp() % 3600 or ends.timestamp() % 3600:
        raise fail("bounds must be whole hours (distinct users are kept per hour)")
    return Campaign(cid, name.strip(), name_en.strip(), starts, ends, zone_name, dict(filters))


def _local(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _bound(value: Any, zone: ZoneInfo, fail) -> datetime:
    """A TOML local date-time (or date = its midnight) in `zone`, as an aware UTC datetime."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise fail("write local times without an offset; the zone comes from `timezone`")
        return value.replace(tzinfo=zone).astimezone(UTC)
    if isinstance(value, date):
        return _local(value, zone)
    raise fail("needs `starts` and `ends` as local date-times, e.g. 2026-11-11T00:00:00")
