"""Rate-controlled sending of generated messages to Kafka, with a progress display.

`produce` keeps the send schedule (record k is due at start + k / rate) rather than sleeping a fixed
time per message, so the generator's own CPU time and Kafka's back-pressure do not lower the rate.
Delivery futures are awaited in groups of `max_in_flight`: awaiting each one would serialise sends on
the broker round trip. Messages of one key go to one partition in generation order (aiokafka keeps
the order per partition; idempotence keeps it across retries when acks="all").
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError

from pipeline.errors import UserFacingError
from pipeline.traffic.message import Message

MAX_REQUEST_BYTES = 2 * 1024 * 1024  # above the 1 MiB message limit plus the batch's own overhead


@dataclass
class ProduceStats:
    """What was sent so far. `records` counts events, duplicate re-sends and invalid messages."""

    records: int = 0
    messages: int = 0
    invalid: int = 0
    duplicates: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def rate(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def produce(
    messages: Iterable[Message],
    bootstrap: str,
    *,
    rate: float | None = 5000.0,
    duration: float | None = None,
    stop: asyncio.Event | None = None,
    drain: Callable[[], Iterable[Message]] | None = None,
    progress: Callable[[ProduceStats], None] | None = None,
    progress_interval: float = 1.0,
    acks: int | str = "all",
    compression: str | None = None,
    linger_ms: int = 5,
    max_in_flight: int = 2000,
    topics: Iterable[str] = (),
    client_options: dict | None = None,
) -> ProduceStats:
    """Send `messages` at `rate` records per second (None or 0: as fast as possible).

    Stops when `messages` is exhausted, after `duration` seconds, or when `stop` is set; on the two
    early stops it then sends `drain()` (the generator's partly filled batches) so nothing generated is
    lost. Returns after every message was acknowledged; raises `UserFacingError` if Kafka is
    unreachable or refuses a message. `progress` is called about every `progress_interval` seconds.
    `topics` are looked up (and so auto-created by a broker that does that) before the clock starts.
    """
    stats = ProduceStats()
    producer = None
    try:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks=acks,
            enable_idempotence=acks == "all",
            compression_type=compression,
            linger_ms=linger_ms,
            max_request_size=MAX_REQUEST_BYTES,
            **(client_options or {}),  # security protocol, SASL and TLS (pipeline.kafka_options)
        )
        await producer.start()
        await _wait_for_topics(producer, topics)
    except KafkaError as exc:
        if producer is not None:
            await producer.stop()
        raise UserFacingError(f"cannot start a Kafka producer for {bootstrap}: {exc}") from exc
    loop = asyncio.get_running_loop()
    start = loop.time()
    deadline = start + duration if duration else None
    next_report = start + progress_interval
    pending: list[asyncio.Future[Any]] = []
    try:
        early = False
        for msg in messages:
            await _send(producer, msg, stats, pending)
            if len(pending) >= max_in_flight:
                await _settle(pending)
            now = loop.time()
            if rate:
                ahead = start + stats.records / rate - now
                if ahead > 0.005:  # below that, sleeping costs more than the drift it corrects
                    await asyncio.sleep(ahead)
                    now = loop.time()
            if progress is not None and now >= next_report:
                stats.elapsed_s = now - start
                progress(stats)
                next_report = now + progress_interval
            if (stop is not None and stop.is_set()) or (deadline is not None and now >= deadline):
                early = True
                break
        if early and drain is not None:
            for msg in drain():
                await _send(producer, msg, stats, pending)
        stats.interrupted = stop is not None and stop.is_set()
        await _settle(pending)
        await producer.flush()
    except KafkaError as exc:
        raise UserFacingError(f"Kafka refused a message: {exc!r}") from exc
    finally:
        stats.elapsed_s = loop.time() - start
        await producer.stop()
    return stats


async def _wait_for_topics(producer: AIOKafkaProducer, topics: Iterable[str]) -> None:
    """Fetch the topics' metadata; a broker with auto-creation creates missing topics now.

    While a topic is being created aiokafka logs "Topic ... not found in cluster metadata" at ERROR:
    expected here, so only those lines are held back (a topic that never appears raises instead).
    """
    cluster_log = logging.getLogger("aiokafka.cluster")
    expected = _DropMessages("not found in cluster metadata")
    cluster_log.addFilter(expected)
    try:
        for topic in topics:
            try:
                await producer.partitions_for(topic)
            except UnknownTopicOrPartitionError:
                raise UserFacingError(
                    f"topic {topic!r} does not exist and the broker did not create it"
                ) from None
    finally:
        cluster_log.removeFilter(expected)


class _DropMessages(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


async def _send(producer: AIOKafkaProducer, msg: Message, stats: ProduceStats, pending: list[Any]) -> None:
    pending.append(await producer.send(msg.topic, msg.value, key=msg.key))
    stats.records += 1 if msg.invalid else len(msg.events)
    stats.messages += 1
    stats.invalid += msg.invalid
    stats.duplicates += msg.duplicates
    stats.bytes += len(msg.value)


async def _settle(pending: list[Any]) -> None:
    """Wait for every delivery in `pending` (raising the first failure) and clear it."""
    await asyncio.gather(*pending)
    pending.clear()


class Progress:
    """Progress display: one line rewritten in place on a terminal, a new line per report otherwise."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._last = (0.0, 0)  # (monotonic time, records) of the previous report, for the current rate
        self._shown = False

    def __call__(self, stats: ProduceStats) -> None:
        now = time.monotonic()
        then, records = self._last
        current = (stats.records - records) / (now - then) if then else stats.rate
        self._last = (now, stats.records)
        line = (
            f"sent {stats.records:,} records ({current:,.0f}/s) in {stats.messages:,} messages, "
            f"{stats.invalid:,} invalid, {stats.duplicates:,} duplicates, {stats.elapsed_s:,.0f} s"
        )
        if self.tty:
            self.stream.write("\r\x1b[K" + line)
        else:
            self.stream.write("progress: " + line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        """End the in-place line so that later output starts on its own line."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
