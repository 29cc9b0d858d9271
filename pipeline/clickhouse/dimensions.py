"""Load the dimension registry (creators, MCNs, merchants, categories) into ClickHouse as an upsert.

Contract: `upsert_dimensions(client, database, tables)` takes `{table: [row tuple, ...]}` for the tables
in `COLUMNS` (rows in that column order), inserts them and collapses older versions with
OPTIMIZE ... FINAL, so plain reads show one row per id. Blocking; the tables are small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COLUMNS: dict[str, tuple[str, ...]] = {
    "creators": (
        "creator_id",
        "nickname",
        "avatar_url",
        "kind",
        "mcn_id",
        "merchant_id",
        "category",
        "source",
    ),
    "mcns": ("mcn_id", "name", "region", "signed_on"),
    "merchants": ("merchant_id", "name", "brand"),
    "categories": ("category", "name", "name_en"),
}


def upsert_dimensions(client, database: str, tables: Mapping[str, Sequence[tuple]]) -> dict[str, int]:
    written = {}
    for table, rows in tables.items():
        columns = COLUMNS[table]  # KeyError for an unknown table: a programming error
        if rows:
            client.insert(f"{database}.{table}", list(rows), column_names=list(columns))
            client.command(f"OPTIMIZE TABLE {database}.{table} FINAL")
        written[table] = len(rows)
    return written
