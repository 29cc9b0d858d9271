"""`livecommerce collector`: the HTTP collector until SIGTERM / Ctrl-C (graceful: uploads in flight
get their answer, open batches are produced).

It runs on uvloop when that is importable (a pinned dependency; about 10% more requests per core, see
load_tests/RESULTS.md), else on asyncio's default loop; COLLECTOR_EVENT_LOOP=asyncio forces the
default (for comparisons), =uvloop insists on uvloop."""

from __future__ import annotations

import argparse
import asyncio

from pipeline.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collector",
        help="run the HTTP collector: clients POST events to /v1/events, it writes per-room batches to Kafka",
        description=__doc__,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from pipeline.collector.app import build_app
    from pipeline.collector.limits import check_startup

    check_startup(settings)
    app = build_app(settings)
    print(
        f"collector: listening on http://{settings.collector_host}:{settings.collector_port}/v1/events "
        f"({'app keys required' if settings.collector_app_keys else 'anonymous uploads, loopback only'})",
        flush=True,
    )
    web.run_app(
        app,
        host=settings.collector_host,
        port=settings.collector_port,
        access_log=None,
        print=None,
        shutdown_timeout=settings.collector_produce_timeout_s + 5,
        handle_signals=True,
        loop=event_loop(settings.collector_event_loop),
    )
    return 0


def event_loop(choice: str) -> asyncio.AbstractEventLoop | None:
    """uvloop's loop for `auto` (when installed) or `uvloop`; None (aiohttp's default) otherwise."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise
        return None
    return uvloop.new_event_loop()
