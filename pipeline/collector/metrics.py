"""Every Prometheus metric the collector exports on its /metrics, declared once.

A registry of its own, like pipeline.metrics: tests and several collectors in one process do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request outcomes: the HTTP status class a client saw, by cause.
REQUEST_OUTCOMES = ("ok", "bad_request", "unauthorized", "too_large", "unsupported", "rate_limited",
                    "overloaded", "unavailable")  # fmt: skip


@dataclass
class CollectorMetrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self.requests = Counter(
            "livecommerce_collector_requests",
            "Upload requests answered, by outcome (ok is a 200, whatever its events' results).",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "livecommerce_collector_events",
            "Events in answered uploads: accepted (confirmed by Kafka), rejected (by the contract, with a "
            "reason) or refused (the whole upload got 429/503 and should be retried).",
            ["outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "livecommerce_collector_rejections",
            "Rejected events and refused requests by reason code (contract reasons, and rate_limited, "
            "queue_full, kafka_unavailable, unauthorized, body_too_large, ...).",
            ["reason"],
            registry=r,
        )
        self.batch_events = Histogram(
            "livecommerce_collector_batch_events",
            "Events per Kafka message produced.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
            registry=r,
        )
        self.batch_bytes = Histogram(
            "livecommerce_collector_batch_bytes",
            "Bytes per Kafka message produced.",
            buckets=(256, 1024, 4096, 16_384, 65_536, 131_072, 262_144, 524_288, 1_048_576),
            registry=r,
        )
        self.linger = Histogram(
            "livecommerce_collector_linger_seconds",
            "Time from a batch's first event to the batch being handed to the producer.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.produce_latency = Histogram(
            "livecommerce_collector_produce_seconds",
            "Time from handing a batch to the producer to the broker's acknowledgement (acks=all).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.produce_errors = Counter(
            "livecommerce_collector_produce_errors",
            "Kafka messages whose produce failed or timed out (their uploads were answered 503).",
            registry=r,
        )
        self.pending_events = Gauge(
            "livecommerce_collector_pending_events",
            "Accepted events not yet confirmed by Kafka (lingering or in flight): the queue depth.",
            registry=r,
        )
        self.pending_bytes = Gauge(
            "livecommerce_collector_pending_bytes", "Bytes of the pending events.", registry=r
        )
        self.kafka_ready = Gauge(
            "livecommerce_collector_kafka_ready", "1 once the Kafka producer has connected.", registry=r
        )

        # The children every 200 touches, resolved once: labels() is a locked dict look-up per call.
        self.requests_ok = self.requests.labels("ok")
        self.events_accepted = self.events.labels("accepted")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
