"""Latency from production to visibility in ClickHouse, with live traffic at a fixed rate.

A fresh worker (own topics and database) is started; then generator traffic whose event times follow
the wall clock is sent at `rate` records per second for `seconds`, each message at its scheduled time
(record k at start + k / rate), and its send time and the cumulative count of accepted events sent up
to and including it are recorded. Meanwhile a thread reads the accepted-event totals of
`room_window_stats` and `creator_window_stats` every 100 ms and notes when each query returned.

Latency of message i = (end of the first query whose total is >= cumulative count of message i) - (send
time of message i). The totals only grow and partitions are processed side by side, so this is the
time until *as many* events as had been sent up to message i are visible; the poll interval adds up to
0.1 s (the query end is used, never its start). Messages without accepted events (invalid ones, pure
re-sends) are skipped. Room and creator views are measured separately; the creator view is the end of
the chain.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka import AIOKafkaProducer

from load_tests.bench_backlog import create_topics, isolated_env
from load_tests.bench_worker import Totals, migrate, start_worker
from pipeline.traffic.generator import TrafficConfig, TrafficModel

POLL_S = 0.1
LEAD_S = 1.0  # time between generating the traffic and sending its first message


@dataclass
class Latency:
    rate: float  # records per second actually sent
    messages: int
    room_p50: float
    room_p99: float
    creator_p50: float
    creator_p99: float


class Poller(threading.Thread):
    def __init__(self, totals: Totals):
        super().__init__(daemon=True)
        self.totals, self.samples, self.stop_flag = totals, [], threading.Event()

    def run(self) -> None:
        while not self.stop_flag.is_set():
            rooms, creators = self.totals.read()
            self.samples.append((time.time(), rooms, creators))
            time.sleep(max(0.0, POLL_S - (time.time() - self.samples[-1][0])))

    def latest(self) -> tuple[int, int]:
        return self.samples[-1][1:] if self.samples else (0, 0)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latencies(
    sent: list[tuple[float, int]], samples: list[tuple[float, int, int]], column: int
) -> list[float]:
    """For each (send time, cumulative count), seconds until the first sample whose total reached it."""
    result, j = [], 0
    for sent_at, cumulative in sent:
        while j < len(samples) and samples[j][column] < cumulative:
            j += 1
        if j == len(samples):
            raise RuntimeError(f"total never reached {cumulative}")
        result.append(samples[j][0] - sent_at)
    return result


async def _send(bootstrap: str, messages, rate: float, start_at: float) -> list[tuple[float, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    for topic in {msg.topic for msg in messages}:
        await producer.partitions_for(topic)  # metadata before the clock starts
    sent, pending, records, cumulative = [], [], 0, 0
    try:
        for msg in messages:
            ahead = start_at + records / rate - time.time()
            if ahead > 0.002:
                await asyncio.sleep(ahead)
            records += 1 if msg.invalid else len(msg.events)
            accepted = 0 if msg.invalid else len(msg.events) - msg.duplicates
            cumulative += accepted
            sent_at = time.time()
            pending.append(await producer.send(msg.topic, msg.value, key=msg.key))
            if accepted:
                sent.append((sent_at, cumulative))
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def measure_latency(
    services: dict[str, str],
    workdir: Path,
    config: TrafficConfig,
    rate: float,
    seconds: float,
    partitions: int,
) -> Latency:
    env = isolated_env(services, workdir, None, partitions)
    settings = asyncio.run(create_topics(env))
    migrate(env)
    totals = Totals(env)
    worker = start_worker(env, workdir / f"worker-{env['APP_ID']}.log")
    poller = Poller(totals)
    try:
        start_at = time.time() + LEAD_S
        live = replace(config, rate=rate, start_ts_ms=int(start_at * 1000))
        model = TrafficModel(live, topics=settings.topics)
        messages = list(model.messages(int(rate * seconds)))
        start_at = max(start_at, time.time())
        poller.start()
        sent = asyncio.run(_send(settings.kafka_bootstrap_servers, messages, rate, start_at))
        sent_rate = model.counts.records / (time.time() - start_at)
        deadline = time.monotonic() + 60
        while min(poller.latest()) < sent[-1][1] and time.monotonic() < deadline:
            worker.check_alive()
            time.sleep(POLL_S)
    finally:
        poller.stop_flag.set()
        if poller.is_alive():
            poller.join()
        worker.stop()
        totals.close()
    rooms, creators = latencies(sent, poller.samples, 1), latencies(sent, poller.samples, 2)
    return Latency(
        rate=sent_rate,
        messages=len(sent),
        room_p50=percentile(rooms, 0.5),
        room_p99=percentile(rooms, 0.99),
        creator_p50=percentile(creators, 0.5),
        creator_p99=percentile(creators, 0.99),
    )
