"""Every Prometheus metric the pipeline exports, declared once.

Metrics live in a registry of their own (not the process-global default) so that tests and several
apps in one process do not collide, and so `/metrics` shows exactly what is documented in the README.
Code elsewhere imports the objects from here; nothing else calls `Counter(...)`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

OUTCOMES = ("accepted", "duplicate", "invalid", "late")


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        r = self.registry
        self._lag_series: set[tuple[str, str]] = set()
        self.events = Counter(
            "livecommerce_events",
            "Consumed events by final outcome; the outcomes of a topic add up to the events consumed.",
            ["topic", "outcome"],
            registry=r,
        )
        self.messages = Counter(
            "livecommerce_messages",
            "Kafka messages consumed (a batch message counts once).",
            ["topic"],
            registry=r,
        )
        self.deadletters = Counter(
            "livecommerce_deadletters",
            "Rejected events sent to the dead-letter topic, by reason code (one envelope per message).",
            ["reason"],
            registry=r,
        )
        self.consumer_offset = Gauge(
            "livecommerce_consumer_offset",
            "Next offset to process per input partition (last processed + 1).",
            ["topic", "partition"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "livecommerce_consumer_lag",
            "Messages behind the partition's high watermark, per partition assigned to this worker whose "
            "high watermark is known (no series otherwise, rather than a false 0).",
            ["topic", "partition"],
            registry=r,
        )
        self.watermark_delay = Gauge(
            "livecommerce_watermark_delay_seconds",
            "Wall clock minus the partition's event-time watermark.",
            ["topic", "partition"],
            registry=r,
        )
        self.dependency_up = Gauge(
            "livecommerce_dependency_up",
            "1 when the dependency answered its last check.",
            ["dependency"],
            registry=r,
        )
        self.batch_duration = Histogram(
            "livecommerce_message_processing_seconds",
            "Time to decode, validate and aggregate one Kafka message (all of its events).",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
            registry=r,
        )
        self.state_windows = Gauge(
            "livecommerce_state_open_windows", "Open windows held in memory (room and creator).", registry=r
        )
        self.state_users = Gauge(
            "livecommerce_state_distinct_users", "Distinct user ids held by open windows.", registry=r
        )
        self.sink_rows = Counter(
            "livecommerce_sink_rows_written", "Rows written to ClickHouse.", ["table"], registry=r
        )
        self.sink_buffered = Gauge(
            "livecommerce_sink_buffered_rows", "Rows waiting to be written.", ["table"], registry=r
        )
        self.sink_backpressure = Gauge(
            "livecommerce_sink_backpressure",
            "1 while the sink is full and consumption waits.",
            ["table"],
            registry=r,
        )
        self.sink_errors = Counter(
            "livecommerce_sink_errors", "Failed insert attempts (each is retried).", ["table"], registry=r
        )
        self.sink_refused = Counter(
            "livecommerce_sink_rows_refused",
            "Rows ClickHouse refused for good (published to the dead-letter topic, not retried).",
            ["table"],
            registry=r,
        )
        self.dedup_evicted = Counter(
            "livecommerce_dedup_evicted",
            "Event ids the de-duplication memory dropped because it reached its cap (should stay 0: a "
            "retry of a dropped id counts twice).",
            ["topic"],
            registry=r,
        )
        self.creator_late = Counter(
            "livecommerce_creator_late_events",
            "Events the creator stage dropped because their creator window was already final (should stay "
            "0: a source forwards no event late by its own watermark; if it grows, creator windows count "
            "short of room windows).",
            registry=r,
        )
        self.sink_insert_duration = Histogram(
            "livecommerce_sink_insert_seconds",
            "Duration of successful inserts into ClickHouse.",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.sink_batch_rows = Histogram(
            "livecommerce_sink_batch_rows",
            "Rows per insert into ClickHouse.",
            ["table"],
            buckets=(1, 10, 100, 1_000, 5_000, 20_000, 100_000),
            registry=r,
        )
        self.end_to_end = Histogram(
            "livecommerce_end_to_end_seconds",
            "Event time to the moment its window row was written to ClickHouse, per input message "
            "(the newest event of the message); includes client-side delay before the event reached Kafka.",
            buckets=(0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
            registry=r,
        )

    def count_outcomes(self, topic: str, result) -> None:
        """Add one ingest result's outcomes (see pipeline.stages.rooms.IngestResult)."""
        self.messages.labels(topic=topic).inc()
        events = self.events
        for outcome, n in (
            ("accepted", len(result.accepted)),
            ("duplicate", result.duplicates),
            ("invalid", result.invalid),
            ("late", len(result.late)),
        ):
            if n:
                events.labels(topic=topic, outcome=outcome).inc(n)

    def set_consumer_lag(self, progress: list[dict]) -> None:
        """Lag series for the rows of `app.consumer_progress` with a known lag; the series of partitions
        revoked since, or whose high watermark is not known yet (right after a rebalance), are removed:
        a stale or unknown lag reported as a number would add up wrongly across workers, or read as
        caught up."""
        current = set()
        for row in progress:
            if row["lag"] is not None:
                labels = (row["topic"], str(row["partition"]))
                self.consumer_lag.labels(*labels).set(row["lag"])
                current.add(labels)
        for labels in self._lag_series - current:
            self.consumer_lag.remove(*labels)
        self._lag_series = current

    def observe_sinks(self, sinks) -> None:
        for sink in sinks:
            table, stats = sink.table.rsplit(".", 1)[-1], sink.stats
            self.sink_buffered.labels(table=table).set(stats.buffered_rows)
            self.sink_backpressure.labels(table=table).set(int(stats.backpressure))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
