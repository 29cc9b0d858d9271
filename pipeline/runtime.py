"""What the worker does with a batch of Kafka messages, between the consumer and the plain-code stages.

Each stage handles a batch in two steps, driven by `pipeline.checkpointing.CheckpointPipeline`:
`process_*_batch` applies the messages to the in-memory windows and takes an immutable checkpoint;
the write it returns makes that checkpoint durable, in this order (see `Checkpoint`):

1. creator contributions are sent to the repartition topic (creator stage: nothing);
2. window rows are written to ClickHouse, then the raw events (room stage), each retried with
   backoff until it is: the boards count orders from window rows and buyers from raw events, so an
   event must never be readable in raw_events while its window row still lacks it;
3. the contributions, dead letters and late events are confirmed by Kafka;
4. window state, watermarks and de-duplication memory go to the state store (RocksDB + changelog);
5. the changelog records are confirmed by Kafka; the checkpoint's watermark becomes the written
   watermark (`watermark_ms`); only then are the batch's input messages acknowledged. A send that
   fails or is not confirmed in time fails the checkpoint, and the worker exits without
   acknowledging it (`pipeline.confirmed_sends`).
tests/unit/runtime/test_runtime_checkpoints.py pins this order, and that a failure at any step stops the ones
after it.
A row ClickHouse refuses for good is dead-lettered (`refused_row`) before its batch counts as written.

Writes run one at a time in batch order while the next batch is processed. A crash anywhere replays
messages after the last commit; window state remembers which offsets it holds, so the replay changes
nothing that was already counted. While ClickHouse is down the write waits in step 1, the next batch
waits for it (backpressure) and nothing is acknowledged.

The runtime knows no Faust: it reaches Kafka and the state table through the small protocols below
(`StateStore`, `Partitions`, `StageTopics`), which `pipeline.faust` implements over Faust and the
tests implement with dicts and lists, and ClickHouse through `pipeline.sink.writer.Writer`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from pipeline.checkpointing import CheckpointPipeline, Processed
from pipeline.confirmed_sends import SendConfirmations
from pipeline.events.deadletter import (
    REFUSED_BY_CLICKHOUSE,
    deadletter_key,
    message_envelope,
    refused_row_envelope,
)
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.sink.batching import RefusedRow
from pipeline.sink.tables import make_sinks
from pipeline.sink.writer import JSON_EACH_ROW, Writer
from pipeline.stages.creators import CreatorPartition
from pipeline.stages.rooms import IngestProcessor, RoomPartition
from pipeline.topics import contributions_topic
from pipeline.windows.checkpoint import Checkpoint
from pipeline.windows.timing import NO_WATERMARK, watermark

log = logging.getLogger(__name__)
# How long a batch waits for Faust to recover the state of a partition newly assigned to this worker.
STATE_READY_TIMEOUT_S = 120.0


class StateStore(Protocol):
    """The state table: one store per changelog partition (the state of the input partitions with
    that number and of the creator partition with that number)."""

    def ready(self, partition: int) -> bool:
        """The store of `partition` is assigned here and recovered: its items are complete."""
        ...

    def describe(self, partition: int) -> str:
        """Why `partition` is (not) ready, for an error message."""
        ...

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """Every key and value of the store of `partition`."""
        ...

    def write(self, topic: str, partition: int, changes: Mapping[bytes, bytes | None]) -> list[Awaitable]:
        """Put each key with a value and delete each key mapped to None, in the store of input
        partition `topic`/`partition`; return one future per change that resolves once the change is
        durable (its changelog record confirmed by Kafka) or fails."""
        ...


class Partitions(Protocol):
    """The consumer's view of the input and repartition partitions (`(topic, partition)` tuples)."""

    def assignment(self) -> set: ...

    async def end_offsets(self, tps: Iterable) -> Mapping:
        """The next offset to be appended to each partition, asked of the broker."""
        ...

    def committed_offset(self, tp) -> int | None: ...


class OutputTopic(Protocol):
    async def send(self, *, key: bytes | None = None, value: bytes, partition: int | None = None) -> Any:
        """Queue one record; return the future of its delivery (see `pipeline.confirmed_sends`)."""
        ...


class StageTopics(Protocol):
    deadletter: OutputTopic
    late: OutputTopic
    contributions: OutputTopic

    async def flush(self) -> None:
        """Hand every queued record to the broker (confirmation comes from the send futures)."""
        ...


class StreamRuntime:
    """Owns the stages of this worker and the I/O around them. Driven by the two agents only.

    `writer` writes the window tables, `raw_writer` (default `writer`) the raw events; refused rows
    go to the dead-letter topic (`refused_row`)."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        state: StateStore,
        topics: StageTopics,
        partitions: Partitions,
        writer: Writer,
        raw_writer: Writer | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.sinks = make_sinks(settings, writer, raw_writer=raw_writer, on_refused=self.refused_row)
        self.state = state
        self.topics = topics
        self.partitions = partitions
        self.rooms = IngestProcessor(settings)
        self.creators: dict[int, CreatorPartition] = {}
        self.expected_sources = len(settings.topics.inputs) * settings.topic_partitions
        self.consumed_topics = frozenset([*settings.topics.inputs, contributions_topic(settings)])
        self.room_pipeline: CheckpointPipeline | None = None  # set by the rooms agent (idle partitions)
        self._active: dict[tuple[str, int], float] = {}  # input partition -> monotonic time of last message
        self.dedup_evicted_by_cap = 0  # ids this worker's de-duplication memories dropped by their cap
        self._dedup_evictions_counted: dict[tuple[str, int], int] = {}  # (source, memory id) -> counted
        # Watermarks of the last checkpoint whose writes are confirmed, per partition (see watermark_ms).
        self._written_room_wm: dict[tuple[str, int], int] = {}
        self._written_creator_wm: dict[int, int] = {}

    # --- room stage -------------------------------------------------------------------------------
    async def process_room_batch(self, events: Sequence) -> Processed:
        """Apply a batch to the room windows; return the write that makes its checkpoint durable."""
        touched: dict[tuple[str, int], object] = {}
        metrics = self.metrics
        sends = SendConfirmations()  # dead letters and late events: confirmed before the acknowledgement
        known = self.rooms.partitions()
        owned = await self._owned(events, lambda msg: known.get((msg.topic, msg.partition)))
        for event in owned:
            msg = event.message
            started = time.perf_counter()
            part = self._room_partition(msg.topic, msg.partition)
            result = part.process(msg.offset, msg.key, msg.value, trusted_time_ms(msg))
            if result.rejections:
                # One bounded envelope per message, however many of its events were rejected.
                envelope = message_envelope(
                    result.rejections,
                    result.rejected_by_reason,
                    msg.topic,
                    msg.partition,
                    msg.offset,
                    msg.key,
                    int(time.time() * 1000),
                )
                sends.add(await self.topics.deadletter.send(key=deadletter_key(msg.key), value=envelope))
                for reason, n in result.rejected_by_reason.items():
                    metrics.deadletters.labels(reason=reason).inc(n)
            if result.late:
                # One message per input message: late events are re-published as a batch.
                sends.add(await self.topics.late.send(key=msg.key, value=orjson.dumps(result.late)))
            metrics.count_outcomes(msg.topic, result)
            self._count_dedup_evictions(part)
            touched[(msg.topic, msg.partition)] = event
            metrics.batch_duration.observe(time.perf_counter() - started)
        now = time.monotonic()
        for tp in touched:
            self._active[tp] = now
        checkpoints = [(last, self.rooms.partition(*tp).checkpoint()) for tp, last in touched.items()]
        return Processed(functools.partial(self._write_room_checkpoints, checkpoints, sends), events)

    # --- idle input partitions --------------------------------------------------------------------
    def use_room_pipeline(self, pipeline: CheckpointPipeline) -> None:
        """The rooms agent's checkpoint pipeline, which idle-partition checkpoints go through too."""
        self.room_pipeline = pipeline

    async def advance_idle_partitions(self) -> None:
        """Advance the event time of input partitions assigned here that had no message for
        IDLE_PARTITION_SECONDS and have nothing pending (their end offset, asked of the broker, is the
        next offset to process), to the worker's clock at the question minus the idle time; see
        `RoomPartition.advance_idle`. Their windows become final and their heartbeats let creator
        windows close. Runs through the room stage's checkpoint pipeline, so it never interleaves with
        a batch and its write is ordered with the batches' writes."""
        pipeline = self.room_pipeline
        idle = self._idle_candidates()
        if pipeline is None or not idle:
            return
        asked_ms = int(time.time() * 1000)  # before the question: what is appended after has a later time
        ends = await self.partitions.end_offsets(idle)
        await pipeline.submit(functools.partial(self._process_idle, ends, asked_ms), [])

    def _idle_candidates(self) -> list:
        now = time.monotonic()
        inputs = set(self.settings.topics.inputs)
        idle_s = self.settings.idle_partition_ms / 1000
        candidates = []
        for tp in self.partitions.assignment():
            if tp.topic in inputs:
                # A partition first seen now starts its idle time now: a worker that just started does
                # not advance partitions it has not had the chance to read.
                since = self._active.setdefault((tp.topic, tp.partition), now)
                if now - since >= idle_s:
                    candidates.append(tp)
        return sorted(candidates)

    async def _process_idle(self, ends: Mapping, asked_ms: int, events: Sequence) -> Processed:
        assignment = self.partitions.assignment()
        checkpoints = []
        for tp, end in sorted(ends.items()):
            if tp not in assignment:
                continue
            part = self.rooms.partitions().get((tp.topic, tp.partition))
            if part is None and not self.state.ready(tp.partition):
                continue  # restored by the next check once its state is recovered
            part = part or self._room_partition(tp.topic, tp.partition)
            next_offset = part.next_offset
            if next_offset is None:  # nothing processed since this worker took the partition
                next_offset = self.partitions.committed_offset(tp) or 0
            if end is None or end > next_offset:
                continue  # messages pending: not idle, they carry event time themselves
            if part.advance_idle(asked_ms):
                log.debug("room stage %s: idle, event time advanced to %d", part.source, asked_ms)
                context = _PartitionContext(tp.topic, tp.partition, next_offset - 1)
                checkpoints.append((context, part.checkpoint()))
        return Processed(
            functools.partial(self._write_room_checkpoints, checkpoints, SendConfirmations()), events
        )

    async def _write_room_checkpoints(
        self, checkpoints: list[tuple[object, Checkpoint]], sends: SendConfirmations
    ) -> None:
        metrics = self.metrics
        # Contributions go out first, so that the creator stage works on them while the rows below are
        # inserted: the creator view does not wait for the bulk raw-event insert. Any order of these
        # writes is safe, as long as all of them are durable before the state and the acknowledgement.
        for _, cp in checkpoints:
            for target, values in cp.forwards.items():
                for value in values:
                    sends.add(await self.topics.contributions.send(value=value, partition=target))
        # Window rows land before the raw events of the same checkpoint: the boards count buyers and
        # viewers from raw_events (minute states) and orders from the window rows, so an event must
        # never be readable in raw_events while its window row still lacks it.
        for last, cp in checkpoints:
            await self.sinks.room_windows.put(cp.window_rows, _position(last))
        await self.sinks.room_windows.flush()
        for last, cp in checkpoints:
            await self.sinks.raw_events.put(cp.raw_events, _position(last))
        await self.sinks.raw_events.flush()
        written_ms = time.time() * 1000
        for _, cp in checkpoints:
            for ts in cp.newest_event_ms:
                metrics.end_to_end.observe((written_ms - ts) / 1000)
        # Contributions must be in Kafka before any state that says these events were seen: a replay
        # after a crash treats those events as duplicates and would never forward them again.
        await self.topics.flush()
        await sends.confirm()
        for last, cp in checkpoints:
            sends.extend(self._write_state(last, cp))
            msg = last.message
            metrics.consumer_offset.labels(topic=msg.topic, partition=str(msg.partition)).set(msg.offset + 1)
        await self.topics.flush()
        await sends.confirm()
        for last, cp in checkpoints:
            self._written_room_wm[(last.message.topic, last.message.partition)] = cp.watermark

    def _room_partition(self, topic: str, partition: int) -> RoomPartition:
        known = self.rooms.partitions().get((topic, partition))
        if known is not None:
            return known
        part = self.rooms.partition(topic, partition)
        loaded = part.restore(self._state_items(partition), now_ms=int(time.time() * 1000))
        log.info("room stage %s: restored %d open windows from the state table", part.source, loaded)
        return part

    # --- creator stage ----------------------------------------------------------------------------
    async def process_creator_batch(self, events: Sequence) -> Processed:
        """Apply a batch of contributions to the creator windows; return the write of its checkpoint."""
        touched: dict[int, object] = {}
        owned = await self._owned(events, lambda msg: self.creators.get(msg.partition))
        for event in owned:
            msg = event.message
            self._creator_partition(msg.partition).apply(msg.value)
            touched[msg.partition] = event
        checkpoints = [(last, self.creators[p].checkpoint()) for p, last in touched.items()]
        return Processed(functools.partial(self._write_creator_checkpoints, checkpoints), events)

    async def _write_creator_checkpoints(self, checkpoints: list[tuple[object, Checkpoint]]) -> None:
        for last, cp in checkpoints:
            await self.sinks.creator_windows.put(cp.window_rows, _position(last))
        await self.sinks.creator_windows.flush()
        sends = SendConfirmations()
        for last, cp in checkpoints:
            sends.extend(self._write_state(last, cp))
        await self.topics.flush()
        await sends.confirm()
        for last, cp in checkpoints:
            self._written_creator_wm[last.message.partition] = cp.watermark

    def _creator_partition(self, partition: int) -> CreatorPartition:
        part = self.creators.get(partition)
        if part is None:
            late = self.metrics.creator_late.inc
            part = CreatorPartition(partition, self.settings.window_ms, self.expected_sources, on_late=late)
            # The highest watermark a source can have: its event time is bounded by clock + skew.
            trusted_max_event_ms = int(time.time() * 1000) + self.settings.max_clock_skew_ms
            limit = watermark(trusted_max_event_ms, self.settings.allowed_lateness_ms)
            loaded = part.restore(self._state_items(partition), max_watermark_ms=limit)
            log.info("creator stage %s: restored %d open windows from the state table", part.source, loaded)
            self.creators[partition] = part
        return part

    # --- shared -----------------------------------------------------------------------------------
    def forget(self, assignments) -> None:
        """Drop in-memory state of partitions this worker no longer owns; they restore on reassignment."""
        for tp in assignments:
            self.rooms.forget(tp.topic, tp.partition)
            self._active.pop((tp.topic, tp.partition), None)
            self._written_room_wm.pop((tp.topic, tp.partition), None)
            if tp.topic == contributions_topic(self.settings):
                self.creators.pop(tp.partition, None)
                self._written_creator_wm.pop(tp.partition, None)

    async def _owned(self, events: Sequence, known) -> list:
        """The events of partitions this worker owns, once the state of each partition it has not
        restored yet is ready to read. Events of partitions it does not own (fetched before a
        rebalance) are left out but still acknowledged with the batch: Faust waits for every message
        its agents took before a rebalance or a stop completes, never commits a partition it does not
        own, and the partition's owner reads them again from the committed offset."""
        assignment = self.partitions.assignment()
        owned = [event for event in events if event.message.tp in assignment]
        if len(owned) < len(events):
            log.warning("skipped %d messages of partitions no longer assigned here", len(events) - len(owned))
        for partition in sorted({e.message.partition for e in owned if known(e.message) is None}):
            await self._wait_for_state(partition)
        return owned

    async def _wait_for_state(self, partition: int) -> None:
        """Until the state of changelog partition `partition` is ready here (see `StateStore.ready`).

        Restoring from anything less would silently start from empty windows (and count short), so a
        state that does not become ready is an error (fail-stop), not a guess."""
        deadline = time.monotonic() + STATE_READY_TIMEOUT_S
        while True:
            if self.state.ready(partition):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"state of changelog partition {partition} not ready after {STATE_READY_TIMEOUT_S:.0f} s "
                    f"({self.state.describe(partition)})"
                )
            await asyncio.sleep(0.1)

    def _state_items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """The state of the input partitions numbered `partition` and of the creator partition with
        that number (one store per changelog partition)."""
        return self.state.items(partition)

    def _write_state(self, event, cp: Checkpoint) -> list:
        """Write the checkpoint's state changes; return the futures of their changelog records."""
        msg = event.message
        return self.state.write(msg.topic, msg.partition, cp.state)

    async def refused_row(self, refused: RefusedRow) -> None:
        """Publish a row ClickHouse refused for good to the dead-letter topic and wait until Kafka has
        it (the sink's `on_refused`): only then does the row's batch count as written."""
        if refused.fmt == JSON_EACH_ROW:
            try:
                row = orjson.loads(refused.row)
            except orjson.JSONDecodeError:
                row = {"unparsed": bytes(refused.row).decode("utf-8", "backslashreplace")}
            source = (row.get("kafka_topic"), row.get("kafka_partition"), row.get("kafka_offset"))
            if None in source:
                source = None
        else:
            row = dict(zip(refused.columns, refused.row, strict=False))
            source = next(((t, p, o) for (t, p), o in refused.position.items()), None)
        envelope = refused_row_envelope(
            refused.table, row, refused.error, refused.code, source, int(time.time() * 1000)
        )
        sends = SendConfirmations()
        sends.add(await self.topics.deadletter.send(key=None, value=envelope))
        await sends.confirm()
        table = refused.table.rsplit(".", 1)[-1]
        self.metrics.sink_refused.labels(table=table).inc()
        self.metrics.deadletters.labels(reason=REFUSED_BY_CLICKHOUSE).inc()

    def _count_dedup_evictions(self, part: RoomPartition) -> None:
        # The memory's counter is cumulative per instance; a partition restored after a rebalance has a
        # new one, hence the identity in the key.
        evicted, key = part.dedup.evicted_by_cap, (part.source, id(part.dedup))
        new = evicted - self._dedup_evictions_counted.get(key, 0)
        if new > 0:
            self._dedup_evictions_counted = {
                k: v for k, v in self._dedup_evictions_counted.items() if k[0] != key[0]
            }
            self._dedup_evictions_counted[key] = evicted
            self.dedup_evicted_by_cap += new
            self.metrics.dedup_evicted.labels(topic=part.topic).inc(new)

    def watermark_ms(self, kind: str = "room") -> int | None:
        """The event time up to which this worker's `kind` ("room" or "creator") windows are complete
        in ClickHouse: the lowest watermark among its partitions of that stage, each as of its last
        checkpoint whose writes are confirmed (None before any). Not the in-memory watermark, which
        runs ahead of what a board can read while a checkpoint is being written.

        Room partitions with no watermark yet are left out: they have written nothing either (and the
        room stage writes window rows before raw events). A creator partition that has not heard every
        source yet, or has no confirmed write yet, pins the answer to NO_WATERMARK (nothing final): its
        creator windows may still lack orders whose raw events, the buyers, are stored. So does a room
        stage that has written events before any creator partition is known. A worker that has
        streamed nothing answers None (the boards then rely on the stored windows alone)."""
        if kind == "creator":
            if not self._written_room_wm and not self.creators:
                return None  # this worker has streamed nothing: the stored windows alone bound the cut
            owned = self._creator_partitions_owned()
            return min((self._written_creator_wm.get(p, NO_WATERMARK) for p in owned), default=NO_WATERMARK)
        owned = self.rooms.partitions()
        marks = [wm for tp, wm in self._written_room_wm.items() if tp in owned and wm > 0]
        return min(marks) if marks else None

    def _creator_partitions_owned(self) -> set[int]:
        """Creator partitions this worker is assigned or holds, including those whose first
        contribution it has not consumed yet (their creators may already have raw events stored)."""
        topic = contributions_topic(self.settings)
        assigned = {tp.partition for tp in self.partitions.assignment() if tp.topic == topic}
        return assigned | set(self.creators)

    def state_size(self) -> tuple[int, int]:
        windows = users = 0
        for part in [*self.rooms.partitions().values(), *self.creators.values()]:
            w, u = part.windows.state_size()
            windows += w
            users += u
        return windows, users


def _position(event) -> dict[tuple[str, int], int]:
    msg = event.message
    return {(msg.topic, msg.partition): msg.offset}


LOG_APPEND_TIME = 1  # Kafka's record timestamp type: set by the broker (0 is CreateTime, by the producer)


def trusted_time_ms(msg) -> int:
    """The trusted clock of a message, which bounds its events' time (future skew, and through it the
    watermark): the broker's append time when the topic uses LogAppendTime (the pipeline creates its
    input topics so), so a replay classifies every event exactly as the first pass did; for a
    CreateTime topic the producer's timestamp, but never later than this worker's clock (a producer's
    clock cannot raise it; replays are exact unless a producer stamped a time ahead of the worker).
    The worker's clock if the message has no timestamp."""
    now_ms = int(time.time() * 1000)
    ts = getattr(msg, "timestamp", None)
    if not ts or ts <= 0:
        return now_ms
    ts_ms = int(ts * 1000)
    if getattr(msg, "timestamp_type", None) == LOG_APPEND_TIME:
        return ts_ms
    return min(ts_ms, now_ms)


class _PartitionContext:
    """Stands in for the event of a partition where no message is at hand (an idle partition's
    checkpoint): the last offset processed there."""

    def __init__(self, topic: str, partition: int, offset: int):
        self.message = _ContextMessage(topic, partition, offset)


class _ContextMessage:
    def __init__(self, topic: str, partition: int, offset: int):
        self.topic, self.partition, self.offset = topic, partition, offset
