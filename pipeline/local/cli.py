"""`livecommerce kafka|clickhouse start|status|stop`: the local services for development and tests.

Each handler is `func(args, settings) -> exit code`. Exit codes: 0 done (or already in the asked
state), 3 from `status` when the service is down, and `UserFacingError` (-> 1) for anything the
operator must fix.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.local.clickhouse import LocalClickHouse
from pipeline.local.kafka import LocalKafka
from pipeline.local.kafka_cluster import LocalKafkaCluster
from pipeline.local.kafka_jars import KAFKA_VERSION, default_lib_dir
from pipeline.local.service import LocalService
from pipeline.settings import Settings

EXIT_DOWN = 3

Factory = Callable[[argparse.Namespace, Settings], LocalService]


def local_kafka(
    settings: Settings, port: int | None = None, directory: Path | None = None, lib_dir: Path | None = None,
    controller_port: int | None = None,
) -> LocalKafka:  # fmt: skip
    """The local broker the settings point at: port from KAFKA_BOOTSTRAP_SERVERS (9092 unless configured)."""
    port = port or int(settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")[2])
    return LocalKafka(
        directory=directory or settings.local_dir / "kafka",
        lib_dir=lib_dir or default_lib_dir(settings.local_dir),
        port=port,
        controller_port=controller_port,
    )


def local_clickhouse(
    settings: Settings,
    http_port: int | None = None,
    tcp_port: int | None = None,
    directory: Path | None = None,
) -> LocalClickHouse:
    """The local server the settings point at: HTTP port from CLICKHOUSE_URL (8123 unless configured)."""
    return LocalClickHouse(
        directory=directory or settings.local_dir / "clickhouse",
        http_port=http_port or urlsplit(settings.clickhouse_url).port or 8123,
        tcp_port=tcp_port or 9000,
    )


def local_kafka_cluster(
    settings: Settings, brokers: int, port: int | None = None, directory: Path | None = None,
    lib_dir: Path | None = None,
) -> LocalKafkaCluster:  # fmt: skip
    """`brokers` local nodes on ports port, port+2, ... (controllers on port+1, port+3, ...)."""
    port = port or int(settings.kafka_bootstrap_servers.split(",")[0].rpartition(":")[2])
    return LocalKafkaCluster(
        directory=directory or settings.local_dir / "kafka-cluster",
        lib_dir=lib_dir or default_lib_dir(settings.local_dir),
        ports=[port + 2 * i for i in range(brokers)],
    )


def _kafka(args: argparse.Namespace, settings: Settings) -> LocalKafka | LocalKafkaCluster:
    if args.brokers > 1:
        return local_kafka_cluster(settings, args.brokers, args.port, args.dir, args.lib_dir)
    return local_kafka(settings, args.port, args.dir, args.lib_dir, args.controller_port)


def _clickhouse(args: argparse.Namespace, settings: Settings) -> LocalClickHouse:
    return local_clickhouse(settings, args.http_port, args.tcp_port, args.dir)


def _start(factory: Factory, args: argparse.Namespace, settings: Settings) -> int:
    service = factory(args, settings)
    pid = service.running_pid()
    if pid is not None:
        print(f"{service.name}: already running (pid {pid}, {service.status().endpoint})")
        return 0
    print(f"{service.name}: starting on {service.endpoint} ...", flush=True)
    service.start()
    status = service.status()
    print(f"{service.name}: up at {status.endpoint} (pid {status.pid}); log: {status.log_path}")
    return 0


def _status(factory: Factory, args: argparse.Namespace, settings: Settings) -> int:
    status = factory(args, settings).status()
    if status.up:
        print(f"{status.name}: up (pid {status.pid}, {status.endpoint}); log: {status.log_path}")
        return 0
    print(f"{status.name}: down; log: {status.log_path}")
    return EXIT_DOWN


def _stop(factory: Factory, args: argparse.Namespace, settings: Settings) -> int:
    service = factory(args, settings)
    pid = service.running_pid()
    if pid is None or not service.stop():
        print(f"{service.name}: not running")
        return 0
    print(f"{service.name}: stopped (pid {pid})")
    return 0


def _add_lifecycle(
    sub: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str,
    factory: Factory,
    add_options: Callable[[argparse.ArgumentParser], None],
    common_options: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    parser = sub.add_parser(name, help=summary, description=description)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    helps = {
        "start": (
            _start,
            f"Start {name} in the background; return once it answers clients. Harmless if it already runs.",
        ),
        "status": (_status, f"Print whether {name} runs (pid, address, log); exit 0 if up, 3 if down."),
        "stop": (_stop, f"Stop {name} (SIGTERM, SIGKILL after a timeout) and remove its pidfile."),
    }
    for action, (handler, text) in helps.items():
        child = actions.add_parser(action, help=text, description=text)
        child.add_argument(
            "--dir",
            type=Path,
            default=None,
            help=f"data, logs and pidfile directory (default: $LIVECOMMERCE_LOCAL_DIR/{name}, .local/{name})",
        )
        if common_options is not None:
            common_options(child)
        if action == "start":
            add_options(child)
        else:
            # status/stop find the process through the pidfile in --dir; ports are not needed.
            child.set_defaults(
                **{opt: None for opt in ("port", "controller_port", "lib_dir", "http_port", "tcp_port")}
            )
        child.set_defaults(func=lambda args, settings, h=handler: h(factory, args, settings))


def _kafka_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="PLAINTEXT client port on 127.0.0.1 (default: the port of KAFKA_BOOTSTRAP_SERVERS, 9092)",
    )
    parser.add_argument(
        "--controller-port", type=int, default=None, help="KRaft controller port (default: --port + 1)"
    )
    parser.add_argument(
        "--lib-dir",
        type=Path,
        default=None,
        help=f"where the Kafka jars are cached (default: $LIVECOMMERCE_LOCAL_DIR/kafka-lib/{KAFKA_VERSION})",
    )


def _kafka_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--brokers",
        type=int,
        default=1,
        help="nodes in the local cluster (default 1). With more than one, node i listens on --port + 2(i-1), "
        "data lives in $LIVECOMMERCE_LOCAL_DIR/kafka-cluster, and topics replicate 3 ways (min ISR 2); "
        "pass the same --brokers to status and stop",
    )


def _clickhouse_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="HTTP port on 127.0.0.1 (default: the port of CLICKHOUSE_URL, 8123)",
    )
    parser.add_argument(
        "--tcp-port", type=int, default=None, help="native TCP port on 127.0.0.1 (default: 9000)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `kafka` and `clickhouse` commands to the top-level parser."""
    _add_lifecycle(
        subparsers,
        "kafka",
        "start, inspect or stop the local Kafka broker",
        f"Local Apache Kafka {KAFKA_VERSION} broker (single-node KRaft on 127.0.0.1). "
        "The first start fetches the broker's jars from Maven Central with mvn; it needs java on PATH.",
        _kafka,
        _kafka_options,
        _kafka_common_options,
    )
    _add_lifecycle(
        subparsers,
        "clickhouse",
        "start, inspect or stop the local ClickHouse server",
        "Local ClickHouse server (the chdb-core engine serving the HTTP and native TCP protocols on "
        "127.0.0.1, without authentication). Data persists in --dir across restarts.",
        _clickhouse,
        _clickhouse_options,
    )
