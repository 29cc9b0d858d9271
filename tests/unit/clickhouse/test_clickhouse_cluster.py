"""Pure tests of the migration files and their cluster rewriting (no server)."""

from __future__ import annotations

import re

import pytest

from pipeline.clickhouse import cluster, migrations


def test_migrations_are_numbered_checksummed_and_use_placeholders():
    found = migrations.load_migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    for m in found:
        assert "{db}." in m.sql and "livecommerce." not in m.sql
        assert len(m.checksum) == 64
        for statement in migrations.split_statements(m.sql):
            # re-running a half-applied migration is safe
            assert "IF NOT EXISTS" in statement or "CREATE OR REPLACE VIEW" in statement
            if "CREATE TABLE" in statement:
                assert "ORDER BY" in statement and "-- " in statement.split("CREATE")[0]  # explained


def test_render_substitutes_only_our_placeholders():
    sql = "CREATE TABLE {db}.t TTL x + INTERVAL {raw_events_ttl_days} DAY ENGINE = R('{shard}', '{replica}')"
    assert (
        migrations.render(sql, "lc", 7)
        == "CREATE TABLE lc.t TTL x + INTERVAL 7 DAY ENGINE = R('{shard}', '{replica}')"
    )


def test_sharded_table_becomes_replicated_local_plus_distributed():
    statement = (
        "-- cluster: shard_by cityHash64(room_id)\nCREATE TABLE IF NOT EXISTS lc.room_windows\n(a UInt8)\n"
        "ENGINE = ReplacingMergeTree(version)\nORDER BY a"
    )
    local, dist = cluster.rewrite_statement(statement, "lc", "prod")
    assert "CREATE TABLE IF NOT EXISTS lc.room_windows_local ON CLUSTER prod" in local
    assert (
        "ENGINE = ReplicatedReplacingMergeTree("
        "'/clickhouse/tables/{shard}/lc/room_windows_local', '{replica}', version)" in local
    )
    assert dist == (
        "CREATE TABLE IF NOT EXISTS lc.room_windows ON CLUSTER prod AS lc.room_windows_local\n"
        "ENGINE = Distributed(prod, lc, room_windows_local, cityHash64(room_id))"
    )


def test_engine_without_arguments_and_replicate_everywhere():
    statement = (
        "-- cluster: replicate_everywhere\nCREATE TABLE IF NOT EXISTS lc.campaigns\n(a UInt8)\n"
        "ENGINE = ReplacingMergeTree\nORDER BY a"
    )
    (only,) = cluster.rewrite_statement(statement, "lc", "prod")
    assert "lc.campaigns ON CLUSTER prod" in only
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/lc/campaigns', '{replica}')" in only


def test_materialized_view_reads_and_writes_local_tables_views_keep_distributed_names():
    mv = (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS lc.mv TO lc.hourly AS\nSELECT a FROM lc.raw_events GROUP BY a"
    )
    assert cluster.rewrite_statement(mv, "lc", "c1") == [
        "CREATE MATERIALIZED VIEW IF NOT EXISTS lc.mv ON CLUSTER c1 TO lc.hourly_local AS\n"
        "SELECT a FROM lc.raw_events_local GROUP BY a"
    ]
    replaced = "CREATE OR REPLACE VIEW lc.v AS\nSELECT 1"
    assert cluster.rewrite_statement(replaced, "lc", "c1") == [
        "CREATE OR REPLACE VIEW lc.v ON CLUSTER c1 AS\nSELECT 1"
    ]
    view = "CREATE VIEW IF NOT EXISTS lc.v AS\nSELECT * FROM lc.room_windows FINAL"
    assert cluster.rewrite_statement(view, "lc", "c1") == [
        "CREATE VIEW IF NOT EXISTS lc.v ON CLUSTER c1 AS\nSELECT * FROM lc.room_windows FINAL"
    ]


def test_whole_schema_rewrites_every_statement_onto_the_cluster():
    sql = migrations.print_sql("lc", 30, cluster="prod")
    statements = [s for s in re.split(r";\n", sql) if "CREATE" in s]
    assert statements and all("ON CLUSTER prod" in s for s in statements)
    assert "ENGINE = ReplacingMergeTree" not in sql and "ENGINE = AggregatingMergeTree" not in sql
    for table in ("raw_events", "room_windows", "creator_windows", "room_hourly_uniques"):
        assert f"Distributed(prod, lc, {table}_local," in sql
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/all/lc/schema_migrations'" in sql
    single = migrations.print_sql("lc", 30)
    assert "ON CLUSTER" not in single and "Replicated" not in single


def test_unannotated_table_and_bad_cluster_name_are_refused():
    with pytest.raises(ValueError, match="annotation"):
        cluster.rewrite_statement(
            "CREATE TABLE IF NOT EXISTS lc.t (a UInt8) ENGINE = MergeTree ORDER BY a", "lc", "c"
        )
    with pytest.raises(ValueError, match="cluster name"):
        cluster.rewrite_statements([], "lc", "prod; DROP")
