"""`livecommerce campaigns load|list`: the campaign registry (deploy/campaigns.toml) and ClickHouse."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "campaigns",
        help="load or show the campaign registry (deploy/campaigns.toml)",
        description="The campaign registry: a versioned TOML file loaded into <db>.campaigns (an upsert).",
    )
    sub = parser.add_subparsers(dest="campaigns_command", required=True, metavar="ACTION")
    load = sub.add_parser("load", help="validate the registry file and upsert it into ClickHouse")
    show = sub.add_parser("list", help="validate the registry file and print it, without connecting")
    for action in (load, show):
        action.add_argument(
            "--file", type=Path, default=None, help="registry file (default: deploy/campaigns.toml)"
        )
    load.set_defaults(func=run_load)
    show.set_defaults(func=run_list)


def _path(args: argparse.Namespace) -> Path:
    from pipeline.serving.registry import DEFAULT_REGISTRY

    return args.file or DEFAULT_REGISTRY


def run_load(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.clickhouse.clients import Profile, make_client
    from pipeline.serving.registry import load_campaigns, sync_campaigns

    campaigns = load_campaigns(settings, _path(args))
    client = make_client(settings, Profile.INSERT)
    try:
        count = sync_campaigns(client, settings, campaigns)
    finally:
        client.close()
    print(
        f"campaigns: loaded {count} campaigns from {_path(args)} "
        f"into {settings.clickhouse_database}.campaigns"
    )
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.serving.registry import load_campaigns

    now_ms = int(time.time() * 1000)
    for c in load_campaigns(settings, _path(args)):
        local = f"{c.starts_at.astimezone(_zone(c.timezone)):%Y-%m-%d %H:%M} .. " \
                f"{c.ends_at.astimezone(_zone(c.timezone)):%Y-%m-%d %H:%M}"  # fmt: skip
        print(f"{c.id:18} {c.status(now_ms):8} {local} {c.timezone}  {c.name} / {c.name_en}")
    return 0


def _zone(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)
