"""The checkpoint order of `pipeline.runtime.StreamRuntime`, in process: a dict state store,
recording topics and `ListWriter` stand in for Faust and ClickHouse (tests/stage_fakes.py), and every
step of a batch goes into one log. A room-stage checkpoint is durable in this order:

  contributions sent -> room window rows -> raw events -> sends confirmed (dead letters, late events,
  contributions) -> state written -> state confirmed -> written watermark -> acknowledgement

(a creator-stage one: creator window rows -> state written -> confirmed -> watermark -> ack). Window
rows land before raw events because the boards count orders from window rows and buyers from raw
events. A failure at any step stops every step after it: above all, no state and no acknowledgement
once a ClickHouse write or a Kafka send failed (the batch is replayed after the restart)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from stage_fakes import Event, Message, Steps, StepWriter, make_rig

from pipeline import checkpointing
from pipeline.checkpointing import CheckpointPipeline
from pipeline.settings import Settings
from pipeline.sink.policy import RowsRefused
from pipeline.topics import contributions_topic
from pipeline.windows.watermark import NO_WATERMARK

SETTINGS = Settings.from_env(
    {"WINDOW_SECONDS": "10", "ALLOWED_LATENESS_SECONDS": "5", "TOPIC_PARTITIONS": "2"}
)
T0 = 1_750_000_000_000
VIEWS = SETTINGS.topics.views

ROOM_ORDER = [
    "dead letter sent",  # while processing: one envelope for the invalid event
    "late sent",  # while processing: the late event, re-published
    "contributions sent",
    "room_windows",
    "raw_events",
    "flush",
    "dead letter confirmed",
    "late confirmed",
    "contributions confirmed",
    "state written",
    "flush",
    "state confirmed",
    "watermark recorded",
    "ack",
]
CONFIRMED_TOGETHER = {"dead letter confirmed", "late confirmed", "contributions confirmed"}
CREATOR_ORDER = ["creator_windows", "state written", "flush", "state confirmed", "watermark recorded", "ack"]


class Died(Exception):
    """What the worker's os._exit does, here: the checkpoint failed, nothing more is acknowledged."""


@pytest.fixture(autouse=True)
def no_real_exit(monkeypatch):
    def fake_exit(code):
        raise Died(code)

    monkeypatch.setattr(checkpointing.os, "_exit", fake_exit)


def view(event_id: str, ts: int, room: int = 1, creator: int = 100, user: int = 7) -> dict:
    return {
        "event_id": event_id,
        "type": "view",
        "ts": ts,
        "room_id": room,
        "creator_id": creator,
        "user_id": user,
    }


def room_batch() -> list[Event]:
    """One views partition: two good messages, one with an invalid event, one with a late event."""
    values = [
        [view("a", T0), view("b", T0 + 1)],
        [view("c", T0 + 2), {"event_id": "bad", "type": "view"}],  # no room: dead-lettered
        [view("d", T0 + 20_000)],  # moves the watermark on
        [view("late", T0 - 60_000)],  # behind it by more than the lateness: re-published as late
    ]
    return [
        Event(Message(VIEWS, 0, offset, b"1", orjson.dumps(v), timestamp=(T0 + 30_000) / 1000))
        for offset, v in enumerate(values)
    ]


def acker(steps: Steps):
    async def ack(event) -> None:
        steps.step("ack", event.message.offset)

    return ack


async def run_room(rig, events=None) -> CheckpointPipeline:
    pipeline = CheckpointPipeline("rooms", acker(rig.steps))
    await pipeline.submit(rig.runtime.process_room_batch, events or room_batch())
    return pipeline


async def creator_events(settings=SETTINGS) -> tuple[list[Event], object]:
    """The contributions one room checkpoint sends, as the creator stage receives them."""
    source = make_rig(settings)
    await (await source.runtime.process_room_batch(room_batch())).write()
    topic = contributions_topic(settings)
    events = [
        Event(Message(topic, partition, offset, None, value))
        for partition, values in sorted(source.topics.sent_by("contributions").items())
        for offset, value in enumerate(values)
    ]
    return events, source


# --- the order --------------------------------------------------------------------------------------


async def test_a_room_checkpoint_is_made_durable_in_order_then_acknowledged():
    rig = make_rig(SETTINGS)
    pipeline = await run_room(rig)
    await pipeline.wait_idle()
    assert rig.steps.names() == ROOM_ORDER
    assert [d for name, d in rig.steps if name == "ack"] == [0, 1, 2, 3]
    # What landed: every accepted event once, its window, its state, its written watermark.
    raw = rig.writer.rows(f"{SETTINGS.clickhouse_database}.raw_events")
    assert sorted(r["event_id"] for r in raw) == ["a", "b", "c", "d"]
    assert rig.writer.rows(f"{SETTINGS.clickhouse_database}.room_windows")
    assert rig.store.data[0] and rig.runtime.watermark_ms() == T0 + 20_000 - SETTINGS.allowed_lateness_ms
    assert len(rig.topics.deadletter.sent[None]) == 1 and len(rig.topics.late.sent[None]) == 1
    # Raw events (buyers) are stored, but no creator window has a confirmed write: nothing final there.
    assert rig.runtime.watermark_ms("creator") == NO_WATERMARK


async def test_a_creator_checkpoint_is_made_durable_in_order_then_acknowledged():
    events, _ = await creator_events()
    rig = make_rig(SETTINGS)
    pipeline = CheckpointPipeline("creators", acker(rig.steps))
    await pipeline.submit(rig.runtime.process_creator_batch, events)
    await pipeline.wait_idle()
    assert make_rig(SETTINGS).runtime.watermark_ms("creator") is None  # nothing streamed: no bound
    assert rig.steps.names() == CREATOR_ORDER
    assert rig.writer.rows(f"{SETTINGS.clickhouse_database}.creator_windows")
    assert sorted(rig.store.data) == sorted({e.message.partition for e in events})


async def test_an_idle_partition_checkpoint_goes_the_same_way_without_an_acknowledgement():
    rig = make_rig(SETTINGS)
    pipeline = await run_room(rig)
    await pipeline.wait_idle()
    rig.runtime.use_room_pipeline(pipeline)
    rig.steps.clear()
    tp = next(iter({e.message.tp for e in room_batch()}))
    rig.partitions.assigned, rig.partitions.ends = {tp}, {tp: 4}
    rig.runtime._active[tp] -= SETTINGS.idle_partition_ms / 1000  # quiet for the idle time
    await rig.runtime.advance_idle_partitions()
    await pipeline.wait_idle()
    # Its windows became final (a window row), heartbeats went to every creator partition; there is
    # no message to acknowledge.
    assert rig.steps.names() == [
        "contributions sent", "room_windows", "flush", "contributions confirmed", "state written",
        "flush", "state confirmed", "watermark recorded",
    ]  # fmt: skip
    assert [d for n, d in rig.steps if n == "contributions sent"] == [0, 1]


class RefusingWriter(StepWriter):
    """Refuses for good any raw-event batch holding event "c" (a value ClickHouse cannot store)."""

    async def write(self, table, columns, rows, dedup_token, fmt="Native") -> None:
        if table.endswith("raw_events") and any(b'"event_id":"c"' in row for row in rows):
            self.steps.step("raw_events refused", len(rows))
            raise RowsRefused("Code: 27. Cannot parse input")
        await super().write(table, columns, rows, dedup_token, fmt)


async def test_a_row_clickhouse_refuses_is_dead_lettered_and_confirmed_before_the_state():
    steps = Steps()
    rig = make_rig(SETTINGS, steps=steps, writer=RefusingWriter(steps))
    await (await run_room(rig)).wait_idle()
    names = steps.names()
    # The batch is cut in halves until the one refused row is alone (then dead-lettered).
    refused = len(names) - 1 - names[::-1].index("raw_events refused")
    # The refused row's dead letter is sent and confirmed inside the raw-event write, before the state.
    assert names[refused : refused + 3] == ["raw_events refused", "dead letter sent", "dead letter confirmed"]
    assert names.index("dead letter confirmed", refused) < names.index("state written")
    assert names[-1] == "ack"
    raw = rig.writer.rows(f"{SETTINGS.clickhouse_database}.raw_events")
    assert sorted(r["event_id"] for r in raw) == ["a", "b", "d"]


async def test_a_refused_row_whose_dead_letter_fails_stops_the_checkpoint_before_the_state():
    steps = Steps()
    rig = make_rig(SETTINGS, steps=steps, writer=RefusingWriter(steps))
    pipeline = CheckpointPipeline("rooms", acker(steps))
    # Processing sends its own dead letter; fail only the confirmation of the refused row's one.
    await pipeline.submit(rig.runtime.process_room_batch, room_batch())
    steps.fail["dead letter confirmed"] = KafkaTimeoutError()
    with pytest.raises(Died):
        await pipeline.wait_idle()
    names = steps.names()
    assert "state written" not in names and "ack" not in names and not rig.store.data


# --- a failure at each step stops the ones after it -------------------------------------------------


def after(names: list[str], step: str) -> list[str]:
    return names[names.index(step) + 1 :]


@pytest.mark.parametrize(
    "step",
    [
        "contributions sent",
        "dead letter confirmed",
        "late confirmed",
        "contributions confirmed",
        "state written",
        "state confirmed",
        "flush",
    ],
)
async def test_a_failed_kafka_step_of_a_room_checkpoint_stops_everything_after_it(step):
    rig = make_rig(SETTINGS)
    rig.steps.fail[step] = KafkaTimeoutError()
    pipeline = await run_room(rig)
    with pytest.raises(Died):
        await pipeline.wait_idle()
    names = rig.steps.names()
    # Everything before it happened, in order; after it at most the other confirmations awaited
    # together with it.
    rest = after(names, step) if step in CONFIRMED_TOGETHER else []
    assert set(rest) <= CONFIRMED_TOGETHER
    names = names[: len(names) - len(rest)]
    assert names[-1] == step
    assert names == ROOM_ORDER[: len(names)]
    assert "ack" not in names and "watermark recorded" not in names
    assert rig.runtime.watermark_ms() is None
    if ROOM_ORDER.index(step) < ROOM_ORDER.index("state written"):
        assert "state written" not in names and not rig.store.data


@pytest.mark.parametrize("table", ["room_windows", "raw_events"])
async def test_clickhouse_down_holds_the_room_checkpoint_before_state_and_acknowledgement(table):
    rig = make_rig(SETTINGS)
    rig.steps.fail[table] = ConnectionError("ClickHouse is down")  # transient: retried with backoff
    pipeline = await run_room(rig)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pipeline.wait_idle(), 0.5)
    names = rig.steps.names()
    assert [d for n, d in rig.steps if n == table][1:], "the write is retried"
    assert names[-1] == table and names == ROOM_ORDER[: len(names)]
    assert not rig.store.data and rig.runtime.watermark_ms() is None
    await stop(rig, pipeline)


@pytest.mark.parametrize("step", ["creator_windows", "state written", "flush", "state confirmed"])
async def test_a_failed_step_of_a_creator_checkpoint_stops_everything_after_it(step):
    events, _ = await creator_events()
    rig = make_rig(SETTINGS)
    error = ConnectionError("ClickHouse is down") if step == "creator_windows" else KafkaTimeoutError()
    rig.steps.fail[step] = error
    pipeline = CheckpointPipeline("creators", acker(rig.steps))
    await pipeline.submit(rig.runtime.process_creator_batch, events)
    with pytest.raises((Died, TimeoutError)):
        await asyncio.wait_for(pipeline.wait_idle(), 0.5)
    names = rig.steps.names()
    assert names[-1] == step and names == CREATOR_ORDER[: len(names)]
    assert rig.runtime.watermark_ms("creator") == NO_WATERMARK  # nothing final on the creator boards
    if step == "creator_windows":
        assert not rig.store.data
    await stop(rig, pipeline)


async def stop(rig, pipeline) -> None:
    """Cancel what still retries (a write waiting for ClickHouse), as the worker's exit would."""
    if pipeline._inflight is not None and not pipeline._inflight.done():
        pipeline._inflight.cancel()
        await asyncio.gather(pipeline._inflight, return_exceptions=True)
    for sink in rig.runtime.sinks.all():
        await sink.close(0)
