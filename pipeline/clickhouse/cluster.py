"""Rewrite the single-node migration DDL into its cluster variant (pure string code, no server).

The single-node files stay the one source of truth; each CREATE TABLE carries an annotation comment
saying how it is laid out on a cluster:

- `-- cluster: shard_by EXPR` -> a Replicated* table `<name>_local` on every node (data of one shard,
  replicated between its replicas) plus a Distributed table `<name>` over it, sharded by EXPR. Keys that
  must collapse together (window rows of one room, events of one room) land on the same shard, so
  FINAL and ReplacingMergeTree stay correct per shard.
- `-- cluster: replicate_everywhere` -> one Replicated* table `<name>` whose ZooKeeper path has no
  `{shard}`, so every node holds the whole (small) table.

Materialized views are attached to the local tables (`FROM x_local`, `TO y_local`): each node rolls up
the rows inserted into its own shard. Plain views keep reading the Distributed names. Every statement
gets `ON CLUSTER <name>`. `{shard}` and `{replica}` are the servers' own macros.
"""

from __future__ import annotations

import re

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_ANNOTATION = re.compile(r"^\s*--\s*cluster:\s*(shard_by|replicate_everywhere)\s*(.*)$", re.MULTILINE)
_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\.(\w+)")
_CREATE_MV = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+)")
_CREATE_VIEW = re.compile(r"CREATE VIEW IF NOT EXISTS (\w+)\.(\w+)")
_REPLACE_VIEW = re.compile(r"CREATE OR REPLACE VIEW (\w+)\.(\w+)")
_CREATE_DB = re.compile(r"CREATE DATABASE IF NOT EXISTS (\w+)")
_ENGINE = re.compile(r"ENGINE\s*=\s*(\w*MergeTree)(?:\(([^)]*)\))?")
LOCAL_SUFFIX = "_local"


def check_cluster_name(cluster: str) -> str:
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"cluster name must be letters, digits or '_', got {cluster!r}")
    return cluster


def rewrite_statements(statements: list[str], database: str, cluster: str) -> list[str]:
    """The cluster variant of rendered single-node statements (one may become two)."""
    check_cluster_name(cluster)
    out: list[str] = []
    for statement in statements:
        out.extend(rewrite_statement(statement, database, cluster))
    return out


def rewrite_statement(statement: str, database: str, cluster: str) -> list[str]:
    on = f" ON CLUSTER {cluster}"
    if match := _CREATE_TABLE.search(statement):
        return _rewrite_table(statement, match, database, cluster)
    if match := _CREATE_MV.search(statement):
        head = statement[: match.end()] + on
        body = statement[match.end() :]
        # The view is triggered by inserts into the local shard table and writes to the local target.
        body = re.sub(rf"\bTO {database}\.(\w+)", rf"TO {database}.\1{LOCAL_SUFFIX}", body, count=1)
        body = re.sub(rf"\bFROM {database}\.(\w+)", rf"FROM {database}.\1{LOCAL_SUFFIX}", body)
        return [head + body]
    for pattern in (_CREATE_VIEW, _REPLACE_VIEW, _CREATE_DB):
        if match := pattern.search(statement):
            return [statement[: match.end()] + on + statement[match.end() :]]
    raise ValueError(f"no cluster rewrite rule for statement: {statement[:80]!r}")


def _rewrite_table(statement: str, match: re.Match, database: str, cluster: str) -> list[str]:
    annotation = _ANNOTATION.search(statement)
    if annotation is None:
        raise ValueError(f"CREATE TABLE {match.group(2)} lacks a '-- cluster:' annotation")
    table = match.group(2)
    mode, shard_key = annotation.group(1), annotation.group(2).strip()
    if mode == "replicate_everywhere":
        path = f"/clickhouse/tables/all/{database}/{table}"
        replicated = _replicate_engine(statement, path)
        return [_add_on_cluster(replicated, match, table, cluster)]
    if not shard_key:
        raise ValueError(f"'-- cluster: shard_by' of {table} needs a sharding expression")
    local = f"{table}{LOCAL_SUFFIX}"
    path = f"/clickhouse/tables/{{shard}}/{database}/{local}"
    local_sql = _add_on_cluster(_replicate_engine(statement, path), match, local, cluster)
    distributed = (
        f"CREATE TABLE IF NOT EXISTS {database}.{table} ON CLUSTER {cluster} AS {database}.{local}\n"
        f"ENGINE = Distributed({cluster}, {database}, {local}, {shard_key})"
    )
    return [local_sql, distributed]


def _add_on_cluster(statement: str, match: re.Match, table: str, cluster: str) -> str:
    head = f"CREATE TABLE IF NOT EXISTS {match.group(1)}.{table} ON CLUSTER {cluster}"
    return statement[: match.start()] + head + statement[match.end() :]


def _replicate_engine(statement: str, zk_path: str) -> str:
    engine = _ENGINE.search(statement)
    if engine is None:
        raise ValueError(f"no *MergeTree engine to replicate in: {statement[:80]!r}")
    args = [f"'{zk_path}'", "'{replica}'"]
    if engine.group(2) and engine.group(2).strip():
        args.append(engine.group(2).strip())
    replacement = f"ENGINE = Replicated{engine.group(1)}({', '.join(args)})"
    return statement[: engine.start()] + replacement + statement[engine.end() :]


def bootstrap_statements(database: str, cluster: str, ledger_sql: str) -> list[str]:
    """Database on every node; the migrations ledger replicated to all nodes (one shared history)."""
    check_cluster_name(cluster)
    ledger = "-- cluster: replicate_everywhere\n" + ledger_sql
    return [
        f"CREATE DATABASE IF NOT EXISTS {database} ON CLUSTER {cluster}",
        *rewrite_statement(ledger, database, cluster),
    ]
