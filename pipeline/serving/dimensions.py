"""The dimension registry: `deploy/dimensions.toml` -> `Dimensions` -> `<db>.creators`, `mcns`, ... tables.

Contract:
- `load_dimensions(path)` parses and validates the file (tomllib) and returns `Dimensions`; it raises
  `DimensionError` (user-facing, names the entry) on a bad entry. Ids are the table keys:
  `[creator.<id>]`, `[mcn.<id>]`, `[merchant.<id>]` (integers 1..2^63-1) and `[category."<text>"]`.
- `sync_dimensions(client, settings, dims)` upserts them into ClickHouse (blocking; insert/migrate
  client); entries removed from the file are not deleted from the tables.
- Attribution (used by the boards): an event's own `mcn_id`, `merchant_id`, `category` and `source`
  win; when the event has none, the creator's registry value is used (`Creator.mcn` ...).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from pipeline.clickhouse.dimensions import upsert_dimensions
from pipeline.events.contract import CATEGORY_MAX_LEN, ID_MAX, SOURCES
from pipeline.serving.registry import RegistryError
from pipeline.settings import PROJECT_ROOT, Settings

DEFAULT_DIMENSIONS = PROJECT_ROOT / "deploy" / "dimensions.toml"
CREATOR_KINDS = ("creator", "celebrity", "brand")


class DimensionError(RegistryError):
    """The dimension registry file is missing or one of its entries is invalid (a `RegistryError`, so the
    worker stops at start on it exactly as on a bad campaign registry)."""


@dataclass(frozen=True)
class Creator:
    id: int
    nickname: str
    avatar_url: str = ""
    kind: str = "creator"
    mcn: int = 0
    merchant: int = 0
    category: str = ""
    source: str = ""


@dataclass(frozen=True)
class Mcn:
    id: int
    name: str
    region: str = ""
    signed_on: date = date(1970, 1, 1)


@dataclass(frozen=True)
class Merchant:
    id: int
    name: str
    brand: str = ""


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    name_en: str = ""


@dataclass(frozen=True)
class Dimensions:
    creators: dict[int, Creator] = field(default_factory=dict)
    mcns: dict[int, Mcn] = field(default_factory=dict)
    merchants: dict[int, Merchant] = field(default_factory=dict)
    categories: dict[str, Category] = field(default_factory=dict)

    def rows(self) -> dict[str, list[tuple]]:
        """The row tuples `pipeline.clickhouse.dimensions.upsert_dimensions` takes."""
        return {
            "creators": [
                (c.id, c.nickname, c.avatar_url, c.kind, c.mcn, c.merchant, c.category, c.source)
                for c in self.creators.values()
            ],
            "mcns": [(m.id, m.name, m.region, m.signed_on) for m in self.mcns.values()],
            "merchants": [(m.id, m.name, m.brand) for m in self.merchants.values()],
            "categories": [(c.id, c.name, c.name_en) for c in self.categories.values()],
        }


def load_dimensions(path: Path | str = DEFAULT_DIMENSIONS) -> Dimensions:
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DimensionError(f"dimension registry {path} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise DimensionError(f"dimension registry {path} is not valid TOML: {exc}") from None
    unknown = set(document) - {"creator", "mcn", "merchant", "category"}
    if unknown:
        raise DimensionError(f"dimension registry {path}: unknown sections {sorted(unknown)}")
    for section in ("creator", "mcn", "merchant", "category"):
        if not isinstance(document.get(section, {}), dict):
            raise DimensionError(f"dimension registry {path}: [{section}.<id>] entries must be tables")
    mcns = {m.id: m for m in (_mcn(k, v) for k, v in document.get("mcn", {}).items())}
    merchants = {m.id: m for m in (_merchant(k, v) for k, v in document.get("merchant", {}).items())}
    categories = {c.id: c for c in (_category(k, v) for k, v in document.get("category", {}).items())}
    creators = {c.id: c for c in (_creator(k, v) for k, v in document.get("creator", {}).items())}
    return Dimensions(creators, mcns, merchants, categories)


def sync_dimensions(client, settings: Settings, dims: Dimensions) -> dict[str, int]:
    """Upsert `dims` into ClickHouse; returns rows written per table. Blocking."""
    return upsert_dimensions(client, settings.clickhouse_database, dims.rows())


def _fail(section: str, key: str, reason: str) -> DimensionError:
    return DimensionError(f"{section} {key!r} in the dimension registry: {reason}")


def _entry(section: str, key: str, entry: Any, allowed: set[str]) -> dict:
    if not isinstance(entry, dict):
        raise _fail(section, key, "must be a table")
    unknown = set(entry) - allowed
    if unknown:
        raise _fail(section, key, f"unknown keys {sorted(unknown)}")
    return entry


def _id(section: str, key: str) -> int:
    if not key.isdigit() or not 1 <= int(key) <= ID_MAX:
        raise _fail(section, key, "id must be an integer from 1 to 2^63-1")
    return int(key)


def _text(section: str, key: str, entry: dict, name: str, required: bool = False) -> str:
    value = entry.get(name, "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise _fail(section, key, f"needs a non-empty `{name}`" if required else f"`{name}` must be text")
    return value.strip()


def _ref(section: str, key: str, entry: dict, name: str) -> int:
    value = entry.get(name, 0)
    if type(value) is not int or not 0 <= value <= ID_MAX:
        raise _fail(section, key, f"`{name}` must be an id (integer 1..2^63-1)")
    return value


def _creator(key: str, entry: Any) -> Creator:
    allowed = {"nickname", "avatar", "kind", "mcn", "merchant", "category", "source"}
    entry = _entry("creator", key, entry, allowed)
    kind = entry.get("kind", "creator")
    if kind not in CREATOR_KINDS:
        raise _fail("creator", key, f"`kind` must be one of {', '.join(CREATOR_KINDS)}")
    source = _text("creator", key, entry, "source")
    if source and source not in SOURCES:
        raise _fail("creator", key, f"`source` must be one of {', '.join(sorted(SOURCES))}")
    category = _text("creator", key, entry, "category")
    if len(category) > CATEGORY_MAX_LEN:
        raise _fail("creator", key, f"`category` is longer than {CATEGORY_MAX_LEN}")
    return Creator(
        _id("creator", key),
        _text("creator", key, entry, "nickname", True),
        _text("creator", key, entry, "avatar"),
        kind,
        _ref("creator", key, entry, "mcn"),
        _ref("creator", key, entry, "merchant"),
        category,
        source,
    )


def _mcn(key: str, entry: Any) -> Mcn:
    entry = _entry("mcn", key, entry, {"name", "region", "signed"})
    signed = entry.get("signed", date(1970, 1, 1))
    if not isinstance(signed, date) or hasattr(signed, "hour"):
        raise _fail("mcn", key, "`signed` must be a date, e.g. 2025-06-01")
    return Mcn(
        _id("mcn", key), _text("mcn", key, entry, "name", True), _text("mcn", key, entry, "region"), signed
    )


def _merchant(key: str, entry: Any) -> Merchant:
    entry = _entry("merchant", key, entry, {"name", "brand"})
    return Merchant(
        _id("merchant", key),
        _text("merchant", key, entry, "name", True),
        _text("merchant", key, entry, "brand"),
    )


def _category(key: str, entry: Any) -> Category:
    entry = _entry("category", key, entry, {"name", "name_en"})
    if not key or len(key) > CATEGORY_MAX_LEN:
        raise _fail("category", key, f"the key must be the event's category text (1..{CATEGORY_MAX_LEN})")
    name = _text("category", key, entry, "name") or key
    return Category(key, name, _text("category", key, entry, "name_en"))
