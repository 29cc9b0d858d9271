"""clickhouse-connect client factory with one settings profile per use: insert, migrate, query.

Contract:
- `make_client(settings, profile)` connects (one round trip) and returns a sync clickhouse-connect
  `Client`; it raises `ClickHouseUnavailable` (a `UserFacingError`) naming the URL without credentials
  when the server cannot be reached. The client blocks: async callers use it through
  `asyncio.to_thread` (see `pipeline.sink.clickhouse_writer`).
- The password comes from `settings.clickhouse_password`, is passed to the driver only, and never
  appears in a message, a log line or a repr. `https://` in CLICKHOUSE_URL turns TLS on.
- Tables are always named with their database (`db.table`), so clients are not bound to a database
  (migrate must connect before the database exists).
"""

from __future__ import annotations

import enum
import logging
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from pipeline.errors import UserFacingError
from pipeline.settings import Settings, redact_url

log = logging.getLogger(__name__)


class Profile(enum.Enum):
    INSERT = "insert"
    MIGRATE = "migrate"
    QUERY = "query"
    HEALTH = "health"


# Why each value: inserts are retried by the BatchingSink (not by the driver) with the same
# insert_deduplication_token, so ClickHouse drops a retried block that had in fact landed, also in the
# materialized view targets. DDL may wait for merges/replicas; reads are bounded so a BI query cannot
# hog a shared server.
PROFILE_SETTINGS: dict[Profile, dict[str, Any]] = {
    Profile.INSERT: {
        "insert_deduplicate": 1,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        "async_insert": 0,
    },
    Profile.MIGRATE: {
        "alter_sync": 2,
        "distributed_ddl_task_timeout": 300,
    },
    Profile.QUERY: {
        "max_execution_time": 60,
        "max_result_rows": 1_000_000,
        "result_overflow_mode": "throw",
    },
    Profile.HEALTH: {"max_execution_time": 2},
}

# Driver options per profile: inserts and reads fail fast (the caller retries); DDL may take minutes.
_DRIVER_OPTIONS: dict[Profile, dict[str, Any]] = {
    # A batch inserts in well under a second; 10 s bounds how long a half-open connection to a
    # restarting server can hold the sink (and a worker's shutdown) before the retry reconnects.
    Profile.INSERT: {"connect_timeout": 3, "send_receive_timeout": 10, "query_retries": 0},
    Profile.MIGRATE: {"connect_timeout": 5, "send_receive_timeout": 600, "query_retries": 2},
    Profile.QUERY: {"connect_timeout": 5, "send_receive_timeout": 120, "query_retries": 2},
    # The health check must answer quickly or report "unreachable"; it never retries.
    Profile.HEALTH: {"connect_timeout": 2, "send_receive_timeout": 3, "query_retries": 0},
}


class ClickHouseUnavailable(UserFacingError):
    """ClickHouse could not be reached or refused the connection."""


def describe(settings: Settings) -> str:
    """Where we connect, safe for logs: URL without user-info, and the user name (never the password)."""
    return f"{redact_url(settings.clickhouse_url)} as user {settings.clickhouse_user!r}"


def connection_args(settings: Settings) -> dict[str, Any]:
    """The keyword arguments for `clickhouse_connect.get_client` derived from settings (no profile)."""
    parts = urlsplit(settings.clickhouse_url)
    secure = parts.scheme == "https"
    return {
        "host": parts.hostname,
        "port": parts.port or (8443 if secure else 8123),
        "username": settings.clickhouse_user,
        "password": settings.clickhouse_password,
        "secure": secure,
        "proxy_path": parts.path.rstrip("/"),
        # A session would serialise every query of a client; none of our uses needs temporary tables.
        "autogenerate_session_id": False,
        **({"ca_cert": settings.clickhouse_ca_file} if settings.clickhouse_ca_file else {}),
    }


def make_client(settings: Settings, profile: Profile) -> Client:
    """A connected client for `profile`; raises `ClickHouseUnavailable` if the server is unreachable."""
    args = connection_args(settings)
    try:
        client = clickhouse_connect.get_client(
            **args, settings=dict(PROFILE_SETTINGS[profile]), **_DRIVER_OPTIONS[profile]
        )
    except Exception as exc:  # driver raises OperationalError, DatabaseError or urllib3 errors
        raise ClickHouseUnavailable(
            f"cannot reach ClickHouse at {describe(settings)}: {_safe_reason(exc, settings)}"
        ) from None
    log.debug("connected to ClickHouse at %s (%s profile)", describe(settings), profile.value)
    return client


def _safe_reason(exc: Exception, settings: Settings) -> str:
    """The first line of the driver's error, with the password scrubbed in case the driver echoed it."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if settings.clickhouse_password:
        text = text.replace(settings.clickhouse_password, "***")
    return text[:300]
