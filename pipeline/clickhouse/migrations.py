"""Numbered SQL migrations in `schemas/clickhouse/NNNN_name.sql`, applied in order and recorded.

Contract:
- A migration file holds one or more statements, each ending with `;` at the end of a line. Statements
  use `{db}` for the database and `{raw_events_ttl_days}` for the raw events TTL; nothing else in the
  file is a placeholder (ClickHouse's own `{shard}`/`{replica}` macros pass through untouched).
- Every statement is idempotent (`IF NOT EXISTS`, or `CREATE OR REPLACE VIEW` to change a plain view,
  which holds no data): ClickHouse DDL is not transactional, so a migration interrupted half-way is
  simply applied again.
- Applied versions are recorded in `<db>.schema_migrations` with the SHA-256 of the file as written
  (before rendering). Re-running is a no-op; a recorded migration whose file changed is an error,
  because the database no longer matches the file (write a new migration instead).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.clickhouse import cluster as cluster_sql
from pipeline.errors import UserFacingError
from pipeline.settings import PROJECT_ROOT

SCHEMA_DIR = PROJECT_ROOT / "schemas" / "clickhouse"
MIGRATIONS_TABLE = "schema_migrations"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# A statement ends with `;` at the end of a line; `;` elsewhere (inside strings) is left alone.
_STATEMENT_END = re.compile(r";[ \t]*(?:\n|$)")
_TTL_DAYS = re.compile(r"INTERVAL (\d+) DAY|toIntervalDay\((\d+)\)")

_LEDGER_SQL = """\
CREATE TABLE IF NOT EXISTS {db}.schema_migrations
(
    version UInt32,
    name String,
    checksum String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # the file's text, placeholders not yet rendered
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True)
class MigrationResult:
    applied: list[str]
    skipped: list[str]


def load_migrations(directory: Path = SCHEMA_DIR) -> list[Migration]:
    """All migration files of `directory`, ordered by version; raise on a duplicate version."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise UserFacingError(f"migration file name must be NNNN_name.sql, got {path.name}")
        version = int(match.group(1))
        if version in found:
            raise UserFacingError(f"two migrations share version {version:04d} in {directory}")
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()
        found[version] = Migration(version, match.group(2), text, checksum)
    return [found[v] for v in sorted(found)]


def render(sql: str, database: str, raw_events_ttl_days: int) -> str:
    """Substitute the two placeholders; str.format is not used so other braces survive."""
    return sql.replace("{db}", database).replace("{raw_events_ttl_days}", str(int(raw_events_ttl_days)))


def split_statements(sql: str) -> list[str]:
    """Statements of a file, with the comment lines that precede each kept (they document the DDL)."""
    parts = _STATEMENT_END.split(sql)
    return [p.strip() for p in parts if _strip_comments(p).strip()]


def _strip_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))


def statements_for(
    migration: Migration, database: str, raw_events_ttl_days: int, cluster: str | None = None
) -> list[str]:
    """The rendered DDL of one migration, rewritten for `cluster` when given."""
    statements = split_statements(render(migration.sql, database, raw_events_ttl_days))
    if cluster:
        statements = cluster_sql.rewrite_statements(statements, database, cluster)
    return statements


def bootstrap_statements(database: str, cluster: str | None = None) -> list[str]:
    """Create the database and the ledger table (before any migration is read from it)."""
    if cluster:
        return cluster_sql.bootstrap_statements(database, cluster, _LEDGER_SQL.replace("{db}", database))
    return [f"CREATE DATABASE IF NOT EXISTS {database}", _LEDGER_SQL.replace("{db}", database)]


def migrate(
    client,
    database: str,
    raw_events_ttl_days: int,
    *,
    cluster: str | None = None,
    migrations: list[Migration] | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = lambda line: None,
) -> MigrationResult:
    """Apply pending migrations through a clickhouse-connect `client` (the migrate profile).

    Blocking (run it from the CLI or in a thread). Reports one progress line per migration. With
    `dry_run` nothing is changed: `applied` lists what would be applied.
    """
    migrations = load_migrations() if migrations is None else migrations
    if dry_run:
        ledger_exists = client.command(f"EXISTS TABLE {database}.{MIGRATIONS_TABLE}")
        recorded = applied_versions(client, database) if int(ledger_exists) else {}
    else:
        for statement in bootstrap_statements(database, cluster):
            client.command(statement)
        recorded = applied_versions(client, database)
    result = MigrationResult(applied=[], skipped=[])
    for migration in migrations:
        known = recorded.get(migration.version)
        if known is not None:
            if known != migration.checksum:
                raise UserFacingError(
                    f"migration {migration.label} was changed after it was applied to {database} "
                    "(checksum differs); add a new migration instead of editing an applied one"
                )
            result.skipped.append(migration.label)
            progress(f"skipped {migration.label} (already applied)")
            continue
        if dry_run:
            result.applied.append(migration.label)
            progress(f"would apply {migration.label}")
            continue
        for statement in statements_for(migration, database, raw_events_ttl_days, cluster):
            client.command(statement)
        client.insert(
            f"{database}.{MIGRATIONS_TABLE}",
            [(migration.version, migration.name, migration.checksum)],
            column_names=["version", "name", "checksum"],
        )
        result.applied.append(migration.label)
        progress(f"applied {migration.label}")
    if not dry_run:
        ensure_raw_events_ttl(client, database, raw_events_ttl_days, progress, cluster=cluster)
    return result


def applied_versions(client, database: str) -> dict[int, str]:
    """version -> checksum of the migrations recorded in `database`."""
    rows = client.query(
        f"SELECT version, argMax(checksum, applied_at) FROM {database}.{MIGRATIONS_TABLE} GROUP BY version"
    ).result_rows
    return {int(version): checksum for version, checksum in rows}


def ensure_raw_events_ttl(
    client, database: str, ttl_days: int, progress: Callable[[str], None], cluster: str | None = None
) -> None:
    """Re-apply the raw events TTL when RAW_EVENTS_TTL_DAYS changed since the table was created.

    Uses materialize_ttl_after_modify=0: old parts are dropped by the TTL at their next merge instead of
    a heavy mutation rewriting every part now.
    """
    table = "raw_events_local" if cluster else "raw_events"
    rows = client.query(
        "SELECT create_table_query FROM system.tables WHERE database = {db:String} AND name = {t:String}",
        parameters={"db": database, "t": table},
    ).result_rows
    if not rows:
        return
    match = _TTL_DAYS.search(rows[0][0])
    current = next((int(g) for g in match.groups() if g), None) if match else None
    if current == int(ttl_days):
        return
    on_cluster = f" ON CLUSTER {cluster}" if cluster else ""
    client.command(
        f"ALTER TABLE {database}.{table}{on_cluster} "
        f"MODIFY TTL toDateTime(ts) + INTERVAL {int(ttl_days)} DAY",
        settings={"materialize_ttl_after_modify": 0},
    )
    progress(f"raw_events TTL changed from {current} to {int(ttl_days)} days")


def print_sql(
    database: str,
    raw_events_ttl_days: int,
    cluster: str | None = None,
    migrations: list[Migration] | None = None,
) -> str:
    """The full DDL migrate would run on an empty database, as one script (for review or a DBA)."""
    migrations = load_migrations() if migrations is None else migrations
    out = [f"-- bootstrap\n{s};" for s in bootstrap_statements(database, cluster)]
    for migration in migrations:
        out.append(f"-- ===== {migration.label} =====")
        out.extend(f"{s};" for s in statements_for(migration, database, raw_events_ttl_days, cluster))
    return "\n\n".join(out) + "\n"
