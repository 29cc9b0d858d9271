"""The room and creator stages, driven by the worker's own `StreamRuntime` over in-process fakes
(tests/stage_fakes.py), with simulated crashes at any step of a checkpoint.

A crash loses everything in memory; what survives is what a checkpoint made durable (the state store,
ClickHouse rows, the repartition topic) and the committed input offsets, which lag behind the state
when the crash falls between writing state and committing. The checkpoint order itself is pinned
by tests/unit/runtime/test_runtime_checkpoints.py. The stores ClickHouse would hold (a
per-column maximum per window and key) must come out identical to an uninterrupted run.
"""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest
from stage_fakes import DictStore, Event, Message, Steps, StepWriter, Topics, make_rig

from pipeline.rows import METRIC_COLUMNS
from pipeline.settings import Settings
from pipeline.stages.creators import CreatorPartition
from pipeline.stages.rooms import IngestProcessor
from pipeline.topics import contributions_topic

SETTINGS = Settings.from_env(
    {"WINDOW_SECONDS": "10", "ALLOWED_LATENESS_SECONDS": "5", "TOPIC_PARTITIONS": "2"}
)
T0 = 1_750_000_000_000
TYPES = {"live.views": ("view",), "live.clicks": ("click",), "live.orders": ("order", "refund")}


def make_messages(seed: int, count: int) -> dict[tuple[str, int], list[tuple[bytes, bytes]]]:
    """Per input partition, an ordered list of (key, value): batches, retries and some late events."""
    rng = random.Random(seed)
    logs: dict[tuple[str, int], list[tuple[bytes, bytes]]] = {}
    sent: list[tuple[str, dict]] = []
    for i in range(count):
        topic = rng.choice(list(TYPES))
        room = rng.randint(1, 6)
        creator = 100 + room % 3  # creators host several rooms
        clock = T0 + i * 400
        batch = []
        for j in range(rng.randint(1, 4)):
            kind = rng.choice(TYPES[topic])
            ts = clock - rng.randint(0, 3_000) if rng.random() > 0.03 else clock - 60_000  # a few late
            ev = {"event_id": f"{i}-{j}", "type": kind, "ts": ts, "room_id": room, "creator_id": creator,
                  "user_id": rng.randint(1, 30)}  # fmt: skip
            if kind in ("order", "refund"):
                ev |= {"order_id": f"o{i}-{j}", "amount_fen": rng.randint(1, 50_000)}
                if kind == "order":
                    ev["product_id"] = 7
            elif kind == "click":
                ev["product_id"] = 7
            batch.append(ev)
        if sent and rng.random() < 0.1:  # a client retry of an earlier event of this room and topic
            prior = [ev for t, ev in sent[-30:] if t == topic and ev["room_id"] == room]
            if prior:
                batch.append(prior[-1])
        sent.extend((topic, ev) for ev in batch)
        value = orjson.dumps(batch if len(batch) > 1 else batch[0])
        logs.setdefault((topic, room % 2), []).append((str(room).encode(), value))
    return logs


class Crash(BaseException):
    """The worker dies here (a BaseException: nothing in the runtime or the sink catches it as an
    error to retry)."""


class CrashingSteps(Steps):
    """Steps of one worker incarnation; any step may be where it dies, with probability `p`."""

    def __init__(self, rng: random.Random, p: float) -> None:
        super().__init__()
        self.rng, self.p, self.crashed = rng, p, False

    def step(self, name: str, detail=None) -> None:
        super().step(name, detail)
        if self.p and not self.crashed and self.rng.random() < self.p:
            self.crashed = True
            raise Crash(name)


class Durable:
    """What survives a crash: the state store, ClickHouse, the topics and the committed offsets."""

    def __init__(self) -> None:
        steps = Steps()
        self.store = DictStore(steps)
        self.clickhouse = StepWriter(steps)
        self.topics = Topics(steps)
        self.committed: dict[tuple[str, int], int] = {}
        self.creator_committed: dict[int, int] = {0: 0, 1: 0}

    def repartition(self, q: int) -> list[bytes]:
        return self.topics.contributions.sent[q]

    @property
    def rooms(self) -> dict[tuple, list[int]]:
        # (window start ms, room) -> metrics; insert rows are (start_s, end_s, room, creator, *metrics)
        return self._upsert("room_windows", lambda r: (r[0] * 1000, r[2]), 4)

    @property
    def creators(self) -> dict[tuple, list[int]]:
        # (window start ms, creator) -> metrics; insert rows are (start_s, end_s, creator, *metrics)
        return self._upsert("creator_windows", lambda r: (r[0] * 1000, r[2]), 3)

    def _upsert(self, table: str, key, first_metric: int) -> dict:
        # What the ClickHouse tables do: keep each column's maximum per (window_start, key).
        store: dict[tuple, list[int]] = {}
        for row in self.clickhouse.rows(f"{SETTINGS.clickhouse_database}.{table}"):
            k, metrics = key(row), row[first_metric:]
            old = store.get(k)
            store[k] = (
                list(metrics) if old is None else [max(a, b) for a, b in zip(old, metrics, strict=True)]
            )
        return store


async def run(logs, seed: int, crash_every: int | None) -> Durable:
    """Drive `StreamRuntime` over `logs` as the worker does (room batches, then the contributions
    they sent), with the worker dying at random steps of its checkpoints (`crash_every`: about once
    per that many batches) and restarting from what is durable, until every message is processed."""
    rng = random.Random(seed)
    durable = Durable()
    contributions = contributions_topic(SETTINGS)
    clock = (T0 + 10**9) / 1000  # the broker's append time of every message
    while True:
        steps = CrashingSteps(rng, 1 / (crash_every * 10) if crash_every else 0)
        rig = make_rig(SETTINGS, steps, durable.store, durable.clickhouse, durable.topics)
        runtime = rig.runtime
        cursors = {tp: durable.committed.get(tp, 0) for tp in logs}
        ccursors = dict(durable.creator_committed)
        try:
            while any(cursors[tp] < len(logs[tp]) for tp in logs) or any(
                ccursors[q] < len(durable.repartition(q)) for q in (0, 1)
            ):
                # Interleave partitions differently on every run, as Kafka fetches do.
                tp = rng.choice([tp for tp in logs if cursors[tp] < len(logs[tp])] or [None])
                if tp is not None:
                    end = min(len(logs[tp]), cursors[tp] + rng.randint(1, 5))
                    events = [
                        Event(Message(*tp, offset, *logs[tp][offset], timestamp=clock))
                        for offset in range(cursors[tp], end)
                    ]
                    await (await runtime.process_room_batch(events)).write()
                    steps.step("ack")
                    cursors[tp] = durable.committed[tp] = end
                for q in (0, 1):
                    log, start = durable.repartition(q), ccursors[q]
                    events = [
                        Event(Message(contributions, q, o, None, log[o])) for o in range(start, len(log))
                    ]
                    if events:
                        await (await runtime.process_creator_batch(events)).write()
                        steps.step("ack")
                        ccursors[q] = durable.creator_committed[q] = start + len(events)
        except BaseException:
            if not steps.crashed:
                raise
            continue  # everything in memory is lost; the next worker starts from what is durable
        finally:
            await stop_sinks(runtime)
        return durable


async def stop_sinks(runtime) -> None:
    """Stop the sinks' writer tasks (dead with the crash, or idle at the end)."""
    tasks = [sink._task for sink in runtime.sinks.all() if sink._task is not None]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_crashes_at_random_points_give_the_same_aggregates(seed):
    logs = make_messages(seed, 600)
    clean = await run(logs, seed, crash_every=None)
    crashed = await run(logs, seed + 100, crash_every=4)
    assert clean.rooms and clean.creators
    assert crashed.rooms == clean.rooms
    assert crashed.creators == clean.creators


async def test_creator_windows_equal_aggregating_all_rooms_of_the_creator():
    logs = make_messages(7, 300)
    durable = await run(logs, 7, crash_every=None)
    views = METRIC_COLUMNS.index("views")
    by_creator: dict[tuple, int] = {}
    # Recompute views per (window, creator) straight from the accepted events.
    rooms = IngestProcessor(SETTINGS, creator_partitions=2)
    for tp, log in logs.items():
        for offset, (key, value) in enumerate(log):
            for ev in rooms.partition(*tp).process(offset, key, value, T0 + 10**9).accepted:
                w = (ev["ts"] - ev["ts"] % SETTINGS.window_ms, ev["creator_id"])
                by_creator[w] = by_creator.get(w, 0) + (ev["type"] == "view")
    assert {k: v for k, v in by_creator.items() if v} == {
        k: m[views] for k, m in durable.creators.items() if m[views]
    }


def test_large_checkpoints_are_cut_into_bounded_contributions_with_a_safe_watermark():
    from pipeline.windows import codec

    msgs = [(offset, [[0, 7, 1, 200, 0, 0, 0, 0, 0, list(range(offset, offset + 200)), [], []]])
            for offset in range(100)]  # fmt: skip
    parts = codec.encode_contributions("live.views/0", 10, 20, msgs, max_bytes=20_000)
    assert len(parts) > 1 and all(len(p) <= 20_000 for p in parts)
    decoded = [codec.decode_contribution(p) for p in parts]
    # every input message once, in order
    assert [tuple(m) for _, _, ms in decoded for m in ms] == msgs
    assert [wm for _, wm, _ in decoded] == [10] * (len(parts) - 1) + [20]


def test_a_contribution_of_the_format_before_partials_is_refused_not_skipped():
    """Slimmed events under "m" (before 2026-11-23) are no longer read: skipping them would count short."""
    old = orjson.dumps({"src": "live.views/0", "wm": 0, "m": [[0, [{"ts": T0, "type": "view"}]]]})
    with pytest.raises(ValueError, match="no partials"):
        CreatorPartition(0, SETTINGS.window_ms, expected_sources=1).apply(old)


@pytest.mark.parametrize("seed", [4, 5])
async def test_crashes_with_contributions_cut_small_give_the_same_aggregates(seed, monkeypatch):
    import pipeline.stages.rooms

    logs = make_messages(seed, 400)
    clean = await run(logs, seed, crash_every=None)
    # nearly one message per contribution
    monkeypatch.setattr(pipeline.stages.rooms, "MAX_CONTRIBUTION_BYTES", 300)
    crashed = await run(logs, seed + 100, crash_every=4)
    assert crashed.rooms == clean.rooms
    assert crashed.creators == clean.creators


def test_a_large_checkpoints_dedup_memory_is_cut_into_bounded_chunks_and_restored_whole():
    from pipeline.events.dedup import MAX_IDS_PER_CHUNK
    from pipeline.stages.rooms import RoomPartition
    from pipeline.windows import codec

    part = RoomPartition("live.views", 0, SETTINGS, creator_partitions=2)
    count = 2 * MAX_IDS_PER_CHUNK + 7  # a backlog checkpoint
    for offset in range(count // 100 + 1):
        batch = [{"event_id": f"e{i}", "type": "view", "ts": T0 + i, "room_id": 1, "creator_id": 2,
                  "user_id": i + 1} for i in range(offset * 100, min(count, offset * 100 + 100))]  # fmt: skip
        if batch:
            part.process(offset, b"1", orjson.dumps(batch), T0 + count)
    cp = part.checkpoint()
    chunks = [v for k, v in cp.state.items() if k.startswith(b"d|")]
    assert [len(orjson.loads(v)) for v in chunks] == [MAX_IDS_PER_CHUNK, MAX_IDS_PER_CHUNK, 7]
    assert all(len(v) < 1_000_000 for v in cp.state.values() if v)
    restored = RoomPartition("live.views", 0, SETTINGS, creator_partitions=2)
    restored.restore([(k, v) for k, v in cp.state.items() if v is not None])
    again = restored.process(10_000, b"1", orjson.dumps({"event_id": "e0", "type": "view", "ts": T0,
                             "room_id": 1, "creator_id": 2, "user_id": 1}), T0 + count)  # fmt: skip
    assert again.duplicates == 1 and codec.meta_key(part.source) in cp.state


def test_the_room_stage_hands_the_sink_one_raw_line_per_accepted_event_with_its_position():
    from pipeline.rows import raw_event_json

    logs = make_messages(8, 60)
    rooms = IngestProcessor(SETTINGS, creator_partitions=2)
    for (topic, partition), log in logs.items():
        part = rooms.partition(topic, partition)
        expected = []
        for offset, (key, value) in enumerate(log):
            accepted = part.process(offset, key, value, T0 + 10**9).accepted
            expected += [raw_event_json((ev, topic, partition, offset)) for ev in accepted]
        lines = part.checkpoint().raw_events
        assert lines == expected and len(lines) > 0


def test_a_contribution_for_a_final_creator_window_is_dropped_and_exported_as_late():
    from pipeline.metrics import Metrics
    from pipeline.windows import codec

    metrics = Metrics()
    creator = CreatorPartition(0, SETTINGS.window_ms, expected_sources=1, on_late=metrics.creator_late.inc)
    part = [0, 7, 70, 3, 0, 0, 0, 0, 0, [1, 2], [], []]  # 3 views in window 0
    creator.apply(codec.encode_contribution("live.views/0", SETTINGS.window_ms, []))  # window 0 is final
    assert creator.apply(codec.encode_contribution("live.views/0", SETTINGS.window_ms, [(0, [part])])) == 0
    assert b"livecommerce_creator_late_events_total 3.0" in metrics.exposition()
