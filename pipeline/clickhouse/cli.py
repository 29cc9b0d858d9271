"""`livecommerce migrate` and `livecommerce reconcile`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from pipeline.clickhouse import migrations
from pipeline.clickhouse.clients import Profile, make_client
from pipeline.clickhouse.cluster import check_cluster_name
from pipeline.clickhouse.reconcile import format_report, reconcile
from pipeline.errors import UserFacingError
from pipeline.settings import Settings


def register(subparsers) -> None:
    mig = subparsers.add_parser(
        "migrate",
        help="create or upgrade the ClickHouse schema (schemas/clickhouse/NNNN_*.sql)",
        description="Apply pending migrations in order and record them in <db>.schema_migrations; "
        "re-running is a no-op.",
    )
    mig.add_argument(
        "--print-sql", action="store_true", help="print the full DDL and exit, without connecting"
    )
    mig.add_argument("--dry-run", action="store_true", help="connect and list what would be applied")
    mig.add_argument(
        "--cluster",
        metavar="NAME",
        help="cluster variant: Replicated engines + Distributed tables ON CLUSTER",
    )
    mig.set_defaults(func=run_migrate)

    rec = subparsers.add_parser(
        "reconcile",
        help="recompute window aggregates from raw_events and compare with the window tables",
        description="Exit 0 when every window row matches its recomputation from raw_events, 1 otherwise.",
    )
    rec.add_argument(
        "--from", dest="from_", required=True, type=parse_time, metavar="T1", help="ISO time or epoch ms"
    )
    rec.add_argument(
        "--to", required=True, type=parse_time, metavar="T2", help="ISO time or epoch ms (exclusive)"
    )
    rec.add_argument("--limit", type=int, default=200, help="print at most this many differences")
    rec.set_defaults(func=run_reconcile)


def parse_time(text: str) -> int:
    """Epoch milliseconds from an integer or an ISO 8601 time (naive means UTC)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or epoch milliseconds: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def run_migrate(args: argparse.Namespace, settings: Settings) -> int:
    cluster = args.cluster
    if cluster:
        try:
            check_cluster_name(cluster)
        except ValueError as exc:
            raise UserFacingError(str(exc)) from None
    ttl_days = settings.raw_events_ttl_days
    if args.print_sql:
        print(migrations.print_sql(settings.clickhouse_database, ttl_days, cluster), end="")
        return 0
    client = make_client(settings, Profile.MIGRATE)
    try:
        result = migrations.migrate(
            client,
            settings.clickhouse_database,
            ttl_days,
            cluster=cluster,
            dry_run=args.dry_run,
            progress=lambda line: print(f"migrate: {line}", flush=True),
        )
    finally:
        client.close()
    verb = "would apply" if args.dry_run else "applied"
    db = settings.clickhouse_database
    print(f"migrate: {verb} {len(result.applied)}, skipped {len(result.skipped)} in {db}")
    return 0


def run_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    if args.to <= args.from_:
        raise UserFacingError("--to must be after --from")
    client = make_client(settings, Profile.QUERY)
    try:
        report = reconcile(client, settings.clickhouse_database, settings.window_ms, args.from_, args.to)
    finally:
        client.close()
    print(format_report(report, limit=args.limit))
    return 1 if report.differences else 0
