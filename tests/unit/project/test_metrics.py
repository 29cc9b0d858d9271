"""pipeline.metrics: the consumer lag series follow the assignment and are absent while unknown; dedup
evictions by cap are counted once and shown on /health."""

from __future__ import annotations

import re
from types import SimpleNamespace

from faust.types import TP

from pipeline.app import health_document
from pipeline.metrics import Metrics
from pipeline.runtime import StreamRuntime
from pipeline.settings import Settings
from pipeline.sink import ListWriter


def lag_lines(metrics: Metrics) -> dict[str, float]:
    text = metrics.exposition().decode()
    series = re.findall(r'^livecommerce_consumer_lag\{partition="(\d+)",topic="([^"]+)"\} (\S+)$', text, re.M)
    return {f"{topic}/{partition}": float(value) for partition, topic, value in series}


def row(topic: str, partition: int, lag: int | None) -> dict:
    return {"topic": topic, "partition": partition, "lag": lag}


def test_lag_is_reported_per_assigned_partition():
    metrics = Metrics()
    metrics.set_consumer_lag([row("views", 0, 5), row("views", 1, 0)])
    assert lag_lines(metrics) == {"views/0": 5.0, "views/1": 0.0}


def test_an_unknown_lag_has_no_series_rather_than_zero():
    # Right after a rebalance the high watermark is not known: a 0 there read as "caught up".
    metrics = Metrics()
    metrics.set_consumer_lag([row("views", 0, 5)])
    metrics.set_consumer_lag([row("views", 0, None), row("views", 1, 3)])
    assert lag_lines(metrics) == {"views/1": 3.0}


def test_a_revoked_partition_stops_reporting_its_last_lag():
    metrics = Metrics()
    metrics.set_consumer_lag([row("views", 0, 7), row("views", 1, 2)])
    metrics.set_consumer_lag([row("views", 1, 0)])  # views/0 went to another worker
    assert lag_lines(metrics) == {"views/1": 0.0}


def test_dedup_evictions_by_cap_are_a_metric_and_in_health():
    settings = Settings()
    metrics = Metrics()
    runtime = StreamRuntime(settings, metrics, state=None, topics=None, partitions=None, writer=ListWriter())
    part = runtime.rooms.partition(settings.topics.views, 0)
    part.dedup.max_entries = 3
    for i in range(5):
        part.dedup.is_duplicate(f"e{i}", 1_700_000_000_000 + i)
    runtime._count_dedup_evictions(part)  # what process_room_batch does after each message
    runtime._count_dedup_evictions(part)  # counted once
    text = metrics.exposition().decode()
    assert f'livecommerce_dedup_evicted_total{{topic="{settings.topics.views}"}} 2.0' in text
    # A partition restored after a rebalance has a new memory: its evictions count from 0 again.
    runtime.rooms.forget(settings.topics.views, 0)
    part = runtime.rooms.partition(settings.topics.views, 0)
    part.dedup.max_entries = 1
    part.dedup.is_duplicate("a", 1), part.dedup.is_duplicate("b", 2)
    runtime._count_dedup_evictions(part)
    assert runtime.dedup_evicted_by_cap == 3

    tp = TP(settings.topics.views, 0)
    consumer = SimpleNamespace(assignment=lambda: {tp}, highwater=lambda tp: 10, _committed_offset={tp: 10})
    dependency = SimpleNamespace(reachable=True, as_json=lambda: {})
    checker = SimpleNamespace(kafka=dependency, clickhouse=dependency)
    health = health_document(SimpleNamespace(consumer=consumer), runtime, checker)
    assert health["state"]["dedup_evicted_by_cap"] == 3
    assert health["consumer"]["partitions"][0]["dedup_evicted_by_cap"] == 1
    assert health["sink"]["room_windows"]["rows_refused"] == 0
