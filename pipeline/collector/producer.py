"""The collector's Kafka producer: idempotent, acks=all, sized for the collector's batch messages."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from pipeline.kafka_options import client_options
from pipeline.settings import Settings

log = logging.getLogger(__name__)

# Bytes a Kafka request adds around one record batch (headers, record overhead); generous on purpose.
_REQUEST_OVERHEAD = 64 * 1024


class CachedPartitioner(DefaultPartitioner):
    """Kafka's default key partitioning (murmur2, as the generator and Java clients use), remembered
    per room key: aiokafka's murmur2 is pure Python, and the same few thousand rooms repeat."""

    def __init__(self, max_keys: int = 200_000):
        self._cache: dict[tuple[bytes, int], int] = {}
        self._max_keys = max_keys

    def __call__(self, key, all_partitions, available):
        if key is None:
            return DefaultPartitioner.__call__(key, all_partitions, available)
        slot = (key, len(all_partitions))
        partition = self._cache.get(slot)
        if partition is None:
            if len(self._cache) >= self._max_keys:
                self._cache.clear()
            partition = self._cache[slot] = DefaultPartitioner.__call__(key, all_partitions, available)
        return partition


def make_producer(settings: Settings) -> AIOKafkaProducer:
    """Idempotent with acks=all: a message the broker acknowledged is on every in-sync replica and a
    retried send is not written twice. Our own batches are the Kafka messages, so the producer's
    linger is short: it only packs messages of different rooms that share a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=2,
        max_batch_size=settings.collector_max_message_bytes + _REQUEST_OVERHEAD,
        max_request_size=settings.collector_max_message_bytes + _REQUEST_OVERHEAD,
        request_timeout_ms=max(30_000, settings.collector_produce_timeout_s * 1000),
        client_id=f"{settings.app_id}-collector",
        partitioner=CachedPartitioner(),
        **client_options(settings),
    )


class KafkaSender:
    """Starts the producer in the background (retrying while Kafka is down) and sends batches."""

    def __init__(self, settings: Settings, retry_s: float = 2.0):
        self.settings = settings
        self.retry_s = retry_s
        self.producer: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        while True:
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except Exception as exc:
                log.warning(
                    "Kafka not reachable yet (%s); retrying in %.0f s", type(exc).__name__, self.retry_s
                )
                await producer.stop()
                await asyncio.sleep(self.retry_s)
                continue
            self.producer = producer
            self.ready.set()
            log.info("Kafka producer connected to %s", self.settings.kafka_bootstrap_servers)
            return

    async def send(self, topic: str, key: bytes, value: bytes) -> asyncio.Future:
        """Hand one message to the producer; returns the future of the broker's acknowledgement."""
        assert self.producer is not None, "send before the producer is ready"
        return await self.producer.send(topic, value, key=key)

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.producer is not None:
            await self.producer.stop()
