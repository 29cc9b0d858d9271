"""`livecommerce dimensions load|list`: the dimension registry (deploy/dimensions.toml) and ClickHouse."""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.settings import Settings


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dimensions",
        help="load or show the dimension registry: creators, MCNs, merchants, categories",
        description="Names for the ids events carry, loaded into <db>.creators, mcns, merchants and "
        "categories (an upsert by id).",
    )
    sub = parser.add_subparsers(dest="dimensions_command", required=True, metavar="ACTION")
    load = sub.add_parser("load", help="validate the registry file and upsert it into ClickHouse")
    show = sub.add_parser("list", help="validate the registry file and print a summary, without connecting")
    for action in (load, show):
        action.add_argument(
            "--file", type=Path, default=None, help="registry file (default: deploy/dimensions.toml)"
        )
    load.set_defaults(func=run_load)
    show.set_defaults(func=run_list)


def _path(args: argparse.Namespace) -> Path:
    from pipeline.serving.dimensions import DEFAULT_DIMENSIONS

    return args.file or DEFAULT_DIMENSIONS


def run_load(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.clickhouse.clients import Profile, make_client
    from pipeline.serving.dimensions import load_dimensions, sync_dimensions

    dims = load_dimensions(_path(args))
    client = make_client(settings, Profile.INSERT)
    try:
        written = sync_dimensions(client, settings, dims)
    finally:
        client.close()
    counts = ", ".join(f"{n} {table}" for table, n in written.items())
    print(f"dimensions: loaded {counts} from {_path(args)} into {settings.clickhouse_database}")
    return 0


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from pipeline.serving.dimensions import load_dimensions

    dims = load_dimensions(_path(args))
    kinds: dict[str, int] = {}
    for c in dims.creators.values():
        kinds[c.kind] = kinds.get(c.kind, 0) + 1
    print(f"creators   {len(dims.creators):5}  " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    print(f"mcns       {len(dims.mcns):5}  " + ", ".join(sorted({m.region for m in dims.mcns.values()})))
    print(f"merchants  {len(dims.merchants):5}")
    print(f"categories {len(dims.categories):5}  " + ", ".join(dims.categories))
    return 0
