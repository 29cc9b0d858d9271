"""`livecommerce worker`: run the Faust worker (agents, timers and the web server)."""

from __future__ import annotations

import argparse
import logging

from pipeline.settings import Settings, redact_url

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    worker = sub.add_parser(
        "worker",
        help="run the stream worker (consumes the input topics, serves /health and /metrics)",
        description=(
            "Run one Faust worker. It consumes the input topics, validates and de-duplicates events, "
            "publishes dead letters and late events, and serves /health and /metrics on WEB_HOST:WEB_PORT. "
            "Stop it with Ctrl-C or SIGTERM; it finishes in-flight work and commits before exiting."
        ),
    )
    worker.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    # Imported late: Faust is heavy and `livecommerce --help` should not pay for it.
    import asyncio

    from pipeline.app import run_worker as run
    from pipeline.topics import ensure_topics

    asyncio.run(ensure_topics(settings))
    log.info(
        "worker %s: kafka=%s clickhouse=%s web=http://%s:%d",
        settings.app_id,
        settings.kafka_bootstrap_servers,
        redact_url(settings.clickhouse_url),
        settings.web_host,
        settings.web_port,
    )
    run(settings)
    return 0
