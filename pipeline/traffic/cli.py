"""`livecommerce generate`: synthetic live-room traffic to the three input topics.

Progress goes to stderr (one line rewritten in place on a terminal, a line per interval otherwise);
the final summary goes to stdout. Ctrl-C (or SIGTERM) stops cleanly: partly filled batches are still
sent and the summary is printed; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from pipeline.kafka_options import client_options
from pipeline.settings import Settings
from pipeline.traffic.generator import MAX_BATCH_SIZE, Counts, TrafficConfig, TrafficModel
from pipeline.traffic.producer import ProduceStats, Progress, produce

_DEFAULTS = TrafficConfig()
_CONFIG_OPTIONS = (
    *("seed", "rooms", "creators", "users", "zipf_s", "hot_room_share", "batch_size", "linger_ms"),
    *("ctr", "order_rate", "refund_rate", "duplicate_share", "invalid_share", "jitter_ms"),
)


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" only for options that have a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False):
            return action.help
        return super()._get_help_string(action)


def register(subparsers: Any) -> None:
    """Add the `generate` command to the `livecommerce` sub-command parsers."""
    p = subparsers.add_parser(
        "generate",
        help="send synthetic live-room traffic (views, clicks, orders, refunds) to Kafka",
        description=(
            "Send realistic synthetic live-commerce traffic to the input topics (TOPIC_VIEWS, TOPIC_CLICKS, "
            "TOPIC_ORDERS) at KAFKA_BOOTSTRAP_SERVERS: Zipf-skewed rooms and creators, a view -> click -> "
            "order funnel, later refunds, client retries, out-of-order event times and a share of invalid "
            "messages. The same --seed and options with --start-ts send the same bytes every time. "
            "Without --events or --duration it runs until Ctrl-C."
        ),
        formatter_class=_Formatter,
    )
    g = p.add_argument_group("how much and how fast")
    g.add_argument(
        "--events", type=_positive_int, help="stop after this many records (events + retries + invalid)"
    )
    g.add_argument("--duration", type=float, help="stop after this many seconds")
    g.add_argument(
        "--rate", type=float, default=5000.0, help="records per second; 0 sends as fast as possible"
    )
    g.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="random seed; same seed, same traffic")
    g.add_argument(
        "--start-ts",
        type=_start_ts,
        help="event time of the first record (epoch ms or ISO 8601; naive means UTC); time then advances "
        "at --rate, so the bytes sent are fully deterministic. Default: ts follows the wall clock",
    )
    g = p.add_argument_group("traffic shape")
    g.add_argument("--rooms", type=_positive_int, default=_DEFAULTS.rooms, help="live rooms (直播间)")
    g.add_argument("--creators", type=_positive_int, default=_DEFAULTS.creators, help="creators; <= --rooms")
    g.add_argument(
        "--users", type=_positive_int, default=_DEFAULTS.users, help="user pool; regulars come back"
    )
    g.add_argument("--zipf-s", type=float, default=_DEFAULTS.zipf_s, help="Zipf exponent of room popularity")
    g.add_argument(
        "--hot-room-share", type=float, help="make one room carry this share (0..1) of all records"
    )
    g.add_argument(
        "--ctr", type=float, default=_DEFAULTS.ctr, help="probability that a view leads to a click"
    )
    g.add_argument(
        "--order-rate", type=float, default=_DEFAULTS.order_rate, help="P(a view leads to an order)"
    )
    g.add_argument("--refund-rate", type=float, default=_DEFAULTS.refund_rate, help="P(an order is refunded)")
    g.add_argument(
        "--duplicate-share",
        type=float,
        default=_DEFAULTS.duplicate_share,
        help="P(an event is re-sent, same id)",
    )
    g.add_argument(
        "--invalid-share",
        type=float,
        default=_DEFAULTS.invalid_share,
        help="P(a record is an invalid message)",
    )
    g.add_argument(
        "--jitter-ms", type=int, default=_DEFAULTS.jitter_ms, help="max lag of ts behind send time"
    )
    g = p.add_argument_group("batching and Kafka")
    g.add_argument(
        "--batch-size",
        type=_positive_int,
        default=_DEFAULTS.batch_size,
        help=f"events per message (a JSON array per room); 1 sends plain objects; at most {MAX_BATCH_SIZE}",
    )
    g.add_argument("--linger-ms", type=int, default=_DEFAULTS.linger_ms, help="max age of a room's batch")
    g.add_argument("--acks", choices=("0", "1", "all"), default="all", help="Kafka producer acks")
    g.add_argument("--compression", choices=("gzip", "lz4", "snappy", "zstd"), help="Kafka compression")
    g.add_argument("--kafka-linger-ms", type=int, default=5, help="Kafka producer linger.ms")
    g.add_argument(
        "--dry-run",
        action="store_true",
        help="generate and count only, as fast as possible (1,000,000 records unless --events)",
    )
    g.add_argument(
        "--progress-interval",
        type=float,
        help="seconds between progress lines (default 0.5 on a TTY, else 5)",
    )
    g.add_argument("--summary-json", type=Path, help="also write the final counts to this JSON file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"livecommerce generate: {exc}", file=sys.stderr)
        return 2
    clock = None if args.start_ts is not None else (lambda: time.time_ns() // 1_000_000)
    model = TrafficModel(config, topics=settings.topics, clock=clock)
    if args.dry_run:
        started = time.perf_counter()
        stats = ProduceStats()
        for msg in model.messages(args.events or 1_000_000):
            stats.messages += 1
            stats.bytes += len(msg.value)
        stats.records = model.counts.records
        stats.elapsed_s = time.perf_counter() - started
    else:
        stats = asyncio.run(_produce(args, settings, model))
    _summary(args, settings, model.counts, stats)
    return 0


async def _produce(args: argparse.Namespace, settings: Settings, model: TrafficModel) -> ProduceStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        stop.set()
        loop.remove_signal_handler(sig)  # a second Ctrl-C falls back to KeyboardInterrupt: abort

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    progress = Progress()
    interval = args.progress_interval or (0.5 if progress.tty else 5.0)
    try:
        return await produce(
            model.messages(args.events),
            settings.kafka_bootstrap_servers,
            rate=args.rate,
            duration=args.duration,
            stop=stop,
            drain=model.drain,
            progress=progress,
            progress_interval=interval,
            acks="all" if args.acks == "all" else int(args.acks),
            compression=args.compression,
            linger_ms=args.kafka_linger_ms,
            topics=settings.topics.inputs,
            client_options=client_options(settings),
        )
    finally:
        progress.close()


def _config(args: argparse.Namespace) -> TrafficConfig:
    fields: dict[str, Any] = {name: getattr(args, name) for name in _CONFIG_OPTIONS}
    if args.rate > 0:
        fields["rate"] = args.rate  # the simulated clock advances at the send rate
    if args.start_ts is not None:
        fields["start_ts_ms"] = args.start_ts
    return TrafficConfig(**fields)


def _summary(args: argparse.Namespace, settings: Settings, counts: Counts, stats: ProduceStats) -> None:
    how = "dry run (nothing sent)" if args.dry_run else "interrupted" if stats.interrupted else "done"
    kinds = ", ".join(f"{k} {n:,}" for k, n in counts.invalid_by_kind.items() if n)
    t = settings.topics
    lines = [
        f"generate summary: {how} in {stats.elapsed_s:,.1f} s",
        f"  records    {stats.records:,} ({stats.rate:,.0f}/s) in {stats.messages:,} messages, "
        f"{stats.bytes:,} bytes",
        "  events     " + ", ".join(f"{k} {n:,}" for k, n in counts.by_type.items()) + " (distinct)",
        f"  duplicates {counts.duplicates:,} re-sends",
        f"  invalid    {counts.invalid:,} messages" + (f" ({kinds})" if kinds else ""),
        f"  GMV        {counts.gmv_fen / 100:,.2f} CNY, refunds {counts.refund_fen / 100:,.2f} CNY",
        f"  topics     {t.views}, {t.clicks}, {t.orders}; seed {args.seed}",
    ]
    print("\n".join(lines), flush=True)
    if args.summary_json is not None:
        summary = {
            "status": how,
            "records": stats.records,
            "messages": stats.messages,
            "bytes": stats.bytes,
            "elapsed_s": round(stats.elapsed_s, 3),
            "by_type": counts.by_type,
            "duplicates": counts.duplicates,
            "invalid": counts.invalid,
            "invalid_by_kind": counts.invalid_by_kind,
            "gmv_fen": counts.gmv_fen,
            "refund_fen": counts.refund_fen,
        }
        args.summary_json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _start_ts(text: str) -> int:
    """Epoch milliseconds, or an ISO 8601 time (naive = UTC) converted to epoch milliseconds."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not epoch ms or ISO 8601: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
