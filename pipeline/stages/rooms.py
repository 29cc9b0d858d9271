"""The room stage as plain code: Kafka messages of one input partition in, outcomes and checkpoints out.

`RoomPartition.process` decodes and validates a message (one event or a batch), drops events already
seen within the de-duplication horizon, separates events too late for the real-time windows, and
applies the rest to the partition's room windows. Each event of a message ends in exactly one
outcome: accepted, duplicate, invalid or late (an undecodable message counts as one invalid event).

`checkpoint()` then says everything the worker must make durable, in this order: raw events and
window rows for ClickHouse, contributions for the creator stage, and the state-table changes. Window
state records the last input offset it applied, so replaying messages after a crash is a no-op for
windows that already hold them: that is what makes restarts exact without Kafka transactions.

State is per input partition: events are keyed by room, so a client's retry lands on the same
partition as its original. Not thread-safe; one task drives all partitions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from pipeline.events.decode import Rejection, allowed_types_for_topic, decode_message
from pipeline.events.dedup import DedupChunks, Deduplicator
from pipeline.rows import kafka_position_tail, raw_event_line
from pipeline.settings import Settings
from pipeline.windows import codec, timing
from pipeline.windows.aggregate import CREATOR_KEY, ROOM_KEY, WindowAggregator, count_event, new_partial
from pipeline.windows.checkpoint import Checkpoint, checkpoint_windows, restore_windows
from pipeline.windows.timing import NO_WATERMARK
from pipeline.windows.watermark import Watermark

log = logging.getLogger(__name__)

# Kafka's default message size limit is 1 MB; stay well below it.
MAX_CONTRIBUTION_BYTES = 512 * 1024


@dataclass(slots=True)
class IngestResult:
    accepted: list[dict] = field(default_factory=list)
    late: list[dict] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)  # the first ones in detail (see decode)
    duplicates: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # every rejected event

    @property
    def invalid(self) -> int:
        return sum(self.rejected_by_reason.values())

    @property
    def consumed(self) -> int:
        return len(self.accepted) + len(self.late) + self.invalid + self.duplicates


class RoomPartition:
    def __init__(self, topic: str, partition: int, settings: Settings, creator_partitions: int):
        self.topic, self.partition = topic, partition
        self.source = codec.source_name(topic, partition)
        self.settings = settings
        self.allowed = allowed_types_for_topic(topic, settings.topics)
        self.creator_partitions = creator_partitions
        self.watermark = Watermark(settings.window_ms, settings.allowed_lateness_ms)
        self.dedup = Deduplicator(settings.dedup_horizon_ms)
        self.dedup_chunks = DedupChunks(self.dedup)  # the memory's durable form (state-table chunks)
        self.windows = WindowAggregator(settings.window_ms)
        self._raw: list[bytes] = []
        self._newest: list[int] = []
        self._forward: dict[int, list] = {}
        self._heard: dict[int, int] = {}  # creator partition -> window of the watermark last sent there
        self._forwarded_wm = NO_WATERMARK  # the watermark the last checkpoint forwarded
        self._meta_dirty = False
        self.next_offset: int | None = None  # the offset after the last message processed here

    def process(self, offset: int, key: bytes | None, value: bytes | None, now_ms: int) -> IngestResult:
        """Apply one message. `now_ms` is the trusted clock of the message (see
        `pipeline.runtime.trusted_time_ms`): events more than the allowed skew ahead of it are rejected
        (`ts_in_future`), so no event moves the watermark past `now_ms + skew - lateness <= now_ms`."""
        self.next_offset = offset + 1
        decoded = decode_message(
            value,
            key,
            self.allowed,
            now_ms=now_ms,
            max_skew_ms=self.settings.max_clock_skew_ms,
            require_key=True,
        )
        result = IngestResult(rejections=decoded.rejections, rejected_by_reason=decoded.rejected_by_reason)
        accepted, late = result.accepted, result.late
        is_duplicate, new_ids = self.dedup.is_duplicate, self.dedup_chunks.new_ids
        # One pass per event: de-duplicate, classify against the watermark, and add the event to the
        # partial of its window (Watermark.observe inlined, the timing functions bound to locals: this
        # loop is the hot path).
        size, lateness = self.settings.window_ms, self.watermark.lateness_ms
        open_start, watermark = timing.open_window_start, timing.watermark
        highest = self.watermark.max_event_ms
        wm = watermark(highest, lateness)
        partials: dict[tuple[int, int, int], list] = {}
        duplicates = newest = 0
        for ev in decoded.events:
            ts = ev["ts"]
            event_id = ev["event_id"]
            if is_duplicate(event_id, ts):
                duplicates += 1
                continue
            new_ids.append((event_id, ts))
            start = open_start(ts, size, wm)
            if start is None:
                late.append(ev)
                continue
            accepted.append(ev)
            if ts > newest:
                newest = ts
                if ts > highest:
                    highest = ts
                    wm = watermark(highest, lateness)
            room, creator = ev["room_id"], ev["creator_id"]
            p = partials.get((start, room, creator))
            if p is None:
                p = partials[(start, room, creator)] = new_partial(start, room, creator)
            count_event(p, ev)
        result.duplicates = duplicates
        if accepted:
            self.watermark.observe(highest)
            self._meta_dirty = True
            parts = list(partials.values())
            self.windows.add_partials(parts, ROOM_KEY, self.source, offset)
            tail = kafka_position_tail(self.topic, self.partition, offset)
            self._raw.extend([raw_event_line(ev, tail) for ev in accepted])
            self._add_forwards(offset, parts)
            self._newest.append(newest)
        return result

    def _add_forwards(self, offset: int, partials: list[list]) -> None:
        n = self.creator_partitions
        forward = self._forward
        if len(partials) == 1:  # the usual case: one room, one window
            forward.setdefault(partials[0][CREATOR_KEY] % n, []).append((offset, partials))
            return
        by_target: dict[int, list[list]] = {}
        for p in partials:
            by_target.setdefault(p[CREATOR_KEY] % n, []).append(p)
        for target, parts in by_target.items():
            forward.setdefault(target, []).append((offset, parts))

    def advance_idle(self, trusted_now_ms: int) -> bool:
        """Let an idle partition's event time follow the trusted clock: as if it had just seen an event
        at `trusted_now_ms - IDLE_PARTITION_SECONDS`. The caller makes sure nothing is pending on the
        partition (every message appended before `trusted_now_ms` was processed), so any message still
        to come has a trusted time >= `trusted_now_ms`; an event of it is late only if it is behind its
        own trusted time by more than the idle time plus the allowed lateness. Returns whether the
        watermark moved (the next checkpoint then finalises windows and sends heartbeats)."""
        floor = trusted_now_ms - self.settings.idle_partition_ms
        if floor <= self.watermark.max_event_ms:
            return False
        self.watermark.max_event_ms = floor
        self.dedup.advance(floor)  # so the de-duplication memory of a quiet partition shrinks too
        self._meta_dirty = True
        return True

    def checkpoint(self) -> Checkpoint:
        cp = checkpoint_windows(self.windows, self.source, self.watermark.value)
        source, chunks = self.source, self.dedup_chunks
        first_chunk = chunks.next_chunk
        for chunk, value in chunks.take_changes().items():
            cp.state[codec.chunk_key(source, chunk)] = value
        if chunks.next_chunk != first_chunk:
            self._meta_dirty = True
        if self._meta_dirty:
            cp.state[codec.meta_key(source)] = orjson.dumps([self.watermark.max_event_ms, chunks.next_chunk])
            self._meta_dirty = False
        cp.raw_events, self._raw = self._raw, []
        cp.newest_event_ms, self._newest = self._newest, []
        cp.forwards = self._take_forwards()
        return cp

    def _take_forwards(self) -> dict[int, list[bytes]]:
        """Contribution messages per creator partition, plus an empty one (a heartbeat) to every partition
        that has not heard this source's watermark move into a new window: creator windows only become
        final once every source has passed them, so every source must be heard everywhere.

        A target's contributions are cut into messages of at most MAX_CONTRIBUTION_BYTES (catching up on
        a backlog puts thousands of input messages in one checkpoint). Only the last message of a target
        carries the new watermark; the others carry the previous checkpoint's, so the creator stage never
        finalises a window before it received every event of it."""
        wm = self.watermark.value
        previous, self._forwarded_wm = self._forwarded_wm, wm
        forwards = {
            target: codec.encode_contributions(self.source, previous, wm, msgs, MAX_CONTRIBUTION_BYTES)
            for target, msgs in self._forward.items()
        }
        self._forward = {}
        if wm != NO_WATERMARK:
            window = timing.window_start(wm, self.settings.window_ms)
            for target in range(self.creator_partitions):
                if target not in forwards and self._heard.get(target, NO_WATERMARK) < window:
                    forwards[target] = [codec.encode_contribution(self.source, wm, [])]
                self._heard[target] = window
        return forwards

    def restore(self, items: Iterable[tuple[bytes, bytes]], now_ms: int | None = None) -> int:
        """Load this partition's state from state-table items (others are ignored); returns windows loaded.

        With `now_ms` (the worker's clock at start), a persisted event time further ahead of it than the
        allowed skew (written before event time was bounded by a trusted clock, e.g. by a producer a
        year ahead) is corrected down to `now_ms + skew`, and logged: left alone, it would make every
        event of the partition late until that time."""
        loaded, others = restore_windows(self.windows, self.source, items)
        chunks: list[tuple[int, bytes]] = []
        next_chunk = 0
        for kind, rest, value in others:
            if kind == codec.SOURCE_META:
                self.watermark.max_event_ms, next_chunk = orjson.loads(value)
            elif kind == codec.DEDUP_CHUNK:
                chunks.append((int(rest[0]), value))
        limit = None if now_ms is None else now_ms + self.settings.max_clock_skew_ms
        if limit is not None and self.watermark.max_event_ms > limit:
            log.warning(
                "room stage %s: persisted event time %d is %.0f s ahead of this worker's clock (more than "
                "the allowed skew of %d s); corrected to %d so that on-time events are not counted late",
                self.source,
                self.watermark.max_event_ms,
                (self.watermark.max_event_ms - now_ms) / 1000,
                self.settings.max_clock_skew_ms // 1000,
                limit,
            )
            self.watermark.max_event_ms = limit
            self._meta_dirty = True
        event_time = None if self.watermark.max_event_ms == NO_WATERMARK else self.watermark.max_event_ms
        self.dedup_chunks.restore(chunks, next_chunk, event_time, limit)
        return loaded


class IngestProcessor:
    """The room partitions this worker owns, created on first use."""

    def __init__(self, settings: Settings, creator_partitions: int | None = None):
        self.settings = settings
        self.creator_partitions = creator_partitions or settings.topic_partitions
        self._partitions: dict[tuple[str, int], RoomPartition] = {}

    def partition(self, topic: str, partition: int) -> RoomPartition:
        state = self._partitions.get((topic, partition))
        if state is None:
            state = RoomPartition(topic, partition, self.settings, self.creator_partitions)
            self._partitions[(topic, partition)] = state
        return state

    def partitions(self) -> dict[tuple[str, int], RoomPartition]:
        return self._partitions

    def forget(self, topic: str, partition: int) -> None:
        """Drop in-memory state of a partition this worker no longer owns (after a rebalance)."""
        self._partitions.pop((topic, partition), None)
