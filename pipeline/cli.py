"""The `livecommerce` command. Each sub-package registers its own sub-commands; this module only
parses arguments, loads the settings once and turns user-facing errors into a message and exit code."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline import app_cli, demo
from pipeline.clickhouse import cli as clickhouse_cli
from pipeline.collector import cli as collector_cli
from pipeline.errors import UserFacingError
from pipeline.local import cli as local_cli
from pipeline.serving import campaigns_cli, dimensions_cli
from pipeline.settings import Settings, SettingsError
from pipeline.traffic import cli as generate_cli
from pipeline.traffic import phones


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="livecommerce",
        description="Live-commerce metrics pipeline: local services, the worker, migrations and tools.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each command module owns its parser; heavy imports (Faust, chdb) stay inside the commands.
    for module in (
        local_cli,
        app_cli,
        clickhouse_cli,
        campaigns_cli,
        dimensions_cli,
        generate_cli,
        demo,
        collector_cli,
        phones,
    ):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"livecommerce: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args, settings) or 0)
    except UserFacingError as exc:
        print(f"livecommerce {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
