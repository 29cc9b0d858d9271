"""The one typed settings object, read once from environment variables.

Every variable is documented in the README's configuration table; keep the two in step.
A bad value fails at start with a `SettingsError` that names the variable. Secrets
(`CLICKHOUSE_PASSWORD`) are held in a field excluded from `repr` so they never reach a log.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Topics:
    views: str = "live.views"
    clicks: str = "live.clicks"
    orders: str = "live.orders"
    deadletter: str = "live.deadletter"
    late: str = "live.late"
    milestones: str = "live.milestones"

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.views, self.clicks, self.orders)


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    kafka_replication_factor: int = 1
    clickhouse_url: str = "http://127.0.0.1:8123"
    clickhouse_database: str = "livecommerce"
    clickhouse_user: str = "default"
    clickhouse_password: str = field(default="", repr=False)
    clickhouse_ca_file: str = ""
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_auth_token: str = field(default="", repr=False)
    web_allow_no_token: bool = False
    app_id: str = "livecommerce"
    topics: Topics = field(default_factory=Topics)
    topic_partitions: int = 12
    max_clock_skew_ms: int = 60_000  # never above allowed_lateness_ms (see from_env)
    window_ms: int = 60_000
    allowed_lateness_ms: int = 120_000
    dedup_horizon_ms: int = 10 * 60 * 1000
    idle_partition_ms: int = 60_000
    raw_events_ttl_days: int = 30
    milestones_fen: tuple[int, ...] = (1_000_000_000, 10_000_000_000)  # 1,000万 and 1亿 CNY
    consumer_session_timeout_s: int = 30
    local_dir: Path = PROJECT_ROOT / ".local"
    log_level: str = "info"
    # The HTTP collector (`livecommerce collector`); see pipeline/collector/.
    collector_host: str = "127.0.0.1"
    collector_port: int = 8088
    collector_app_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (app name, key)
    collector_linger_ms: int = 50
    collector_event_loop: str = "auto"  # auto (uvloop when installed) | uvloop | asyncio
    collector_max_message_bytes: int = 256 * 1024
    collector_max_body_bytes: int = 1024 * 1024
    collector_max_events_per_request: int = 500
    collector_max_pending_events: int = 200_000
    collector_max_pending_bytes: int = 64 * 1024 * 1024
    collector_produce_timeout_s: int = 10
    collector_rate_per_key: int = 20_000
    collector_rate_per_address: int = 100
    collector_cors_origins: tuple[str, ...] = ()
    new_mcn_months: int = 12  # 新锐MCN赛道: agencies signed with the platform within this many months

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `env` (default `os.environ`); raise `SettingsError` on a bad value."""
        env = os.environ if env is None else env
        r = _Reader(env)
        topics = Topics(
            views=r.name("TOPIC_VIEWS", Topics.views),
            clicks=r.name("TOPIC_CLICKS", Topics.clicks),
            orders=r.name("TOPIC_ORDERS", Topics.orders),
            deadletter=r.name("TOPIC_DEADLETTER", Topics.deadletter),
            late=r.name("TOPIC_LATE", Topics.late),
            milestones=r.name("TOPIC_MILESTONES", Topics.milestones),
        )
        window_ms = r.integer("WINDOW_SECONDS", 60, minimum=1) * 1000
        lateness_ms = r.integer("ALLOWED_LATENESS_SECONDS", 120, minimum=0) * 1000
        horizon_default = max(600, (window_ms + lateness_ms) // 1000)
        horizon_ms = r.integer("DEDUP_HORIZON_SECONDS", horizon_default, minimum=1) * 1000
        if horizon_ms < window_ms + lateness_ms:
            raise SettingsError(
                "DEDUP_HORIZON_SECONDS must be at least WINDOW_SECONDS + ALLOWED_LATENESS_SECONDS "
                f"({(window_ms + lateness_ms) // 1000}), got {horizon_ms // 1000}"
            )
        # An event may be ahead of the trusted clock by the skew and still move the watermark; with the
        # skew within the lateness, no client clock can push a partition's watermark past the trusted
        # clock, so other rooms' events that arrive on time stay on time.
        skew_ms = r.integer("MAX_CLOCK_SKEW_SECONDS", min(60, lateness_ms // 1000), minimum=0) * 1000
        if skew_ms > lateness_ms:
            raise SettingsError(
                "MAX_CLOCK_SKEW_SECONDS must be at most ALLOWED_LATENESS_SECONDS "
                f"({lateness_ms // 1000}), got {skew_ms // 1000}"
            )
        protocol = r.choice("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", KAFKA_SECURITY_PROTOCOLS, upper=True)
        sasl_user, sasl_password = r.text("KAFKA_SASL_USERNAME", ""), env.get("KAFKA_SASL_PASSWORD", "")
        if protocol.startswith("SASL") and not (sasl_user and sasl_password):
            raise SettingsError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return cls(
            kafka_bootstrap_servers=r.bootstrap("KAFKA_BOOTSTRAP_SERVERS", cls.kafka_bootstrap_servers),
            kafka_security_protocol=protocol,
            kafka_sasl_mechanism=r.choice("KAFKA_SASL_MECHANISM", "PLAIN", KAFKA_SASL_MECHANISMS, upper=True),
            kafka_sasl_username=sasl_user,
            kafka_sasl_password=sasl_password,
            kafka_ssl_cafile=r.file("KAFKA_SSL_CAFILE"),
            kafka_replication_factor=r.integer("KAFKA_REPLICATION_FACTOR", 1, minimum=1),
            clickhouse_ca_file=r.file("CLICKHOUSE_CA_FILE"),
            web_auth_token=env.get("WEB_AUTH_TOKEN", ""),
            web_allow_no_token=r.flag("WEB_ALLOW_NO_TOKEN"),
            clickhouse_url=r.url("CLICKHOUSE_URL", cls.clickhouse_url),
            clickhouse_database=r.name("CLICKHOUSE_DATABASE", cls.clickhouse_database),
            clickhouse_user=r.text("CLICKHOUSE_USER", cls.clickhouse_user),
            clickhouse_password=env.get("CLICKHOUSE_PASSWORD", ""),
            web_host=r.text("WEB_HOST", cls.web_host),
            web_port=r.integer("WEB_PORT", cls.web_port, minimum=1, maximum=65535),
            app_id=r.name("APP_ID", cls.app_id),
            topics=topics,
            topic_partitions=r.integer("TOPIC_PARTITIONS", cls.topic_partitions, minimum=1),
            max_clock_skew_ms=skew_ms,
            window_ms=window_ms,
            allowed_lateness_ms=lateness_ms,
            dedup_horizon_ms=horizon_ms,
            idle_partition_ms=r.integer("IDLE_PARTITION_SECONDS", 60, minimum=1) * 1000,
            milestones_fen=r.integer_list("MILESTONES_FEN", cls.milestones_fen),
            raw_events_ttl_days=r.integer("RAW_EVENTS_TTL_DAYS", cls.raw_events_ttl_days, minimum=1),
            consumer_session_timeout_s=r.integer(
                "CONSUMER_SESSION_TIMEOUT_SECONDS", 30, minimum=6, maximum=300
            ),
            local_dir=Path(env.get("LIVECOMMERCE_LOCAL_DIR") or cls.local_dir).resolve(),
            log_level=r.choice("LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            **_collector_settings(r, env),
            new_mcn_months=r.integer("NEW_MCN_MONTHS", cls.new_mcn_months, minimum=1, maximum=120),
        )


def _collector_settings(r: _Reader, env: Mapping[str, str]) -> dict:
    """The collector's fields; kept apart so the worker's settings above stay as they were."""
    max_message = r.integer("COLLECTOR_MAX_MESSAGE_BYTES", 256 * 1024, minimum=70 * 1024, maximum=1024 * 1024)
    return {
        "collector_host": r.text("COLLECTOR_HOST", "127.0.0.1"),
        "collector_port": r.integer("COLLECTOR_PORT", 8088, minimum=1, maximum=65535),
        "collector_app_keys": _app_keys(env.get("COLLECTOR_APP_KEYS", "")),
        "collector_linger_ms": r.integer("COLLECTOR_LINGER_MS", 50, minimum=0, maximum=5000),
        "collector_event_loop": r.choice("COLLECTOR_EVENT_LOOP", "auto", ("auto", "uvloop", "asyncio")),
        "collector_max_message_bytes": max_message,
        "collector_max_body_bytes": r.integer(
            "COLLECTOR_MAX_BODY_BYTES", 1024 * 1024, minimum=1024, maximum=16 * 1024 * 1024
        ),
        "collector_max_events_per_request": r.integer(
            "COLLECTOR_MAX_EVENTS_PER_REQUEST", 500, minimum=1, maximum=10_000
        ),
        "collector_max_pending_events": r.integer("COLLECTOR_MAX_PENDING_EVENTS", 200_000, minimum=1),
        "collector_max_pending_bytes": r.integer(
            "COLLECTOR_MAX_PENDING_BYTES", 64 * 1024 * 1024, minimum=max_message
        ),
        "collector_produce_timeout_s": r.integer(
            "COLLECTOR_PRODUCE_TIMEOUT_SECONDS", 10, minimum=1, maximum=120
        ),
        "collector_rate_per_key": r.integer("COLLECTOR_RATE_PER_KEY", 20_000, minimum=0),
        "collector_rate_per_address": r.integer("COLLECTOR_RATE_PER_ADDRESS", 100, minimum=0),
        "collector_cors_origins": _origins(r.text("COLLECTOR_CORS_ORIGINS", "")),
    }


def _app_keys(raw: str) -> tuple[tuple[str, str], ...]:
    """COLLECTOR_APP_KEYS: comma-separated `app=key` pairs (or bare keys, named app1, app2, ...).
    Errors never echo a key."""
    pairs: list[tuple[str, str]] = []
    for i, part in enumerate(p.strip() for p in raw.split(",")):
        if not part:
            continue
        app, sep, key = part.partition("=")
        if not sep:
            app, key = f"app{i + 1}", part
        app, key = app.strip(), key.strip()
        if not app or not all(c.isalnum() or c in "._-" for c in app):
            raise SettingsError(
                f"COLLECTOR_APP_KEYS: entry {i + 1} has a bad app name (letters, digits, ._-)"
            )
        if len(key) < 16 or not key.isascii() or not key.isprintable() or " " in key:
            raise SettingsError(
                f"COLLECTOR_APP_KEYS: the key of app {app!r} must be at least 16 printable ASCII characters"
            )
        pairs.append((app, key))
    if len({app for app, _ in pairs}) != len(pairs) or len({key for _, key in pairs}) != len(pairs):
        raise SettingsError("COLLECTOR_APP_KEYS: app names and keys must be unique")
    return tuple(pairs)


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise SettingsError(
                f"COLLECTOR_CORS_ORIGINS must list origins like https://shop.example.com, got {origin!r}"
            )
    return origins


class _Reader:
    """Parses one variable at a time and names it in every error."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env

    def _raw(self, var: str) -> str | None:
        value = self.env.get(var)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, var: str, default: str) -> str:
        value = self._raw(var)
        return default if value is None else value

    def name(self, var: str, default: str) -> str:
        value = self.text(var, default)
        if not all(c.isalnum() or c in "._-" for c in value):
            raise SettingsError(f"{var} must contain only letters, digits, '.', '_' or '-', got {value!r}")
        return value

    def integer(self, var: str, default: int, minimum: int | None = None, maximum: int | None = None) -> int:
        raw = self._raw(var)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{var} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{var} must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise SettingsError(f"{var} must be <= {maximum}, got {value}")
        return value

    def integer_list(self, var: str, default: tuple[int, ...]) -> tuple[int, ...]:
        raw = self._raw(var)
        if raw is None:
            return default
        try:
            values = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
        except ValueError:
            raise SettingsError(f"{var} must be comma-separated positive integers, got {raw!r}") from None
        if not values or values[0] <= 0:
            raise SettingsError(f"{var} must be comma-separated positive integers, got {raw!r}")
        return values

    def flag(self, var: str) -> bool:
        value = self.text(var, "0").lower()
        if value not in ("0", "1", "true", "false"):
            raise SettingsError(f"{var} must be 1 or 0 (true or false), got {value!r}")
        return value in ("1", "true")

    def choice(self, var: str, default: str, choices: tuple[str, ...], upper: bool = False) -> str:
        value = self.text(var, default)
        value = value.upper() if upper else value.lower()
        if value not in choices:
            raise SettingsError(f"{var} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def file(self, var: str) -> str:
        value = self.text(var, "")
        if value and not Path(value).is_file():
            raise SettingsError(f"{var} must name a readable file, got {value!r}")
        return value

    def bootstrap(self, var: str, default: str) -> str:
        value = self.text(var, default)
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise SettingsError(f"{var} must be a comma-separated list of host:port, got {value!r}")
        return value

    def url(self, var: str, default: str) -> str:
        value = self.text(var, default)
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise SettingsError(f"{var} must be an http:// or https:// URL, got {redact_url(value)!r}")
        if parts.password:
            raise SettingsError(f"{var} must not carry a password; use CLICKHOUSE_PASSWORD")
        return value


def redact_url(url: str) -> str:
    """The URL with any user-info removed, safe for logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()
