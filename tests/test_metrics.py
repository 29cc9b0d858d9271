"""pipeline.metrics: the consumer lag series follow the assignment and are absent while unknown."""

from __future__ import annotations

import re

from pipeline.metrics import Metrics


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
