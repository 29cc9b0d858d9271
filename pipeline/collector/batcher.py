"""Per-(topic, room) batching of accepted events into single Kafka messages, with bounded memory.

`RoomBatcher.add` puts one event's JSON into the open batch of its (topic, room) and returns that
batch's future, which completes when the broker has acknowledged the message carrying it (or fails
with the producer's error). A batch is produced when its linger elapses or when the next event would
take it over `max_message_bytes`; the value is a JSON array of the room's events keyed by
`str(room_id)`, the key format the worker's decoder accepts (pipeline.events.decode.parse_key).

The pending counters cover every event from `add` until its message's produce has finished, and
`has_room` is the backpressure check callers make before adding a request's events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from pipeline.collector.metrics import CollectorMetrics

Send = Callable[[str, bytes, bytes], Awaitable[Awaitable[object]]]
"""send(topic, key, value): hands the message to the producer (may wait for buffer space) and returns
an awaitable that completes when the broker acknowledged it (or raises)."""


class _Batch:
    __slots__ = ("created", "future", "parts", "size")

    def __init__(self, loop: asyncio.AbstractEventLoop, created: float):
        self.parts: list[bytes] = []
        self.size = 1  # the brackets, minus the comma not written before the first element
        self.created = created
        self.future: asyncio.Future = loop.create_future()
        # Mark failures retrieved: a request that timed out no longer awaits them, which is not a bug.
        self.future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class RoomBatcher:
    def __init__(
        self,
        send: Send,
        *,
        linger_s: float,
        max_message_bytes: int,
        max_pending_events: int,
        max_pending_bytes: int,
        metrics: CollectorMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._send = send
        self.linger_s = linger_s
        self.max_message_bytes = max_message_bytes
        self.max_pending_events = max_pending_events
        self.max_pending_bytes = max_pending_bytes
        self.metrics = metrics
        self.clock = clock
        self.pending_events = 0
        self.pending_bytes = 0
        self._open: dict[tuple[str, int], _Batch] = {}
        self._tasks: set[asyncio.Task] = set()
        self._acks: set[asyncio.Future] = set()
        self._due: deque[tuple[float, tuple[str, int], _Batch]] = deque()  # (deadline, slot, batch), in order
        self._timer: asyncio.TimerHandle | None = None

    def has_room(self, events: int, nbytes: int) -> bool:
        """Whether `events` more events of `nbytes` total fit under the pending bounds."""
        return (
            self.pending_events + events <= self.max_pending_events
            and self.pending_bytes + nbytes <= self.max_pending_bytes
        )

    def add(self, topic: str, room_id: int, part: bytes) -> asyncio.Future:
        """Queue one event's JSON (at most the event size limit) and return its message's future."""
        slot = (topic, room_id)
        batch = self._open.get(slot)
        n = len(part) + 1
        if batch is not None and batch.size + n > self.max_message_bytes:
            self._flush([(slot, batch)])
            batch = None
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._open[slot] = _Batch(loop, self.clock())
            self._due.append((batch.created + self.linger_s, slot, batch))
            if self._timer is None:
                self._timer = loop.call_later(self.linger_s, self._tick)
        batch.parts.append(part)
        batch.size += n
        self.pending_events += 1
        self.pending_bytes += n
        return batch.future

    def _tick(self) -> None:
        """One timer for all batches (not one per batch): flush every batch whose linger is over."""
        self._timer = None
        now, due, ready = self.clock(), self._due, []
        while due and due[0][0] <= now:
            _, slot, batch = due.popleft()
            if self._open.get(slot) is batch:
                ready.append((slot, batch))
        if ready:
            self._flush(ready)
        if due:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, due[0][0] - now), self._tick)

    def _flush(self, batches: list[tuple[tuple[str, int], _Batch]]) -> None:
        for slot, _batch in batches:
            del self._open[slot]
        task = asyncio.get_running_loop().create_task(self._produce(batches))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _produce(self, batches: list[tuple[tuple[str, int], _Batch]]) -> None:
        # Hand every message to the producer in order, then let each acknowledgement settle its batch.
        for (topic, room_id), batch in batches:
            value = b"[" + b",".join(batch.parts) + b"]"
            started = self.clock()
            if self.metrics is not None:
                self.metrics.batch_events.observe(len(batch.parts))
                self.metrics.batch_bytes.observe(len(value))
                self.metrics.linger.observe(started - batch.created)
            try:
                delivery = await self._send(topic, str(room_id).encode(), value)
            except Exception as exc:
                self._settle(batch, started, exc)
                continue
            fut = asyncio.ensure_future(delivery)
            fut.add_done_callback(lambda f, b=batch, t=started: self._settle(b, t, f.exception()))
            self._acks.add(fut)
            fut.add_done_callback(self._acks.discard)

    def _settle(self, batch: _Batch, started: float, exc: BaseException | None) -> None:
        m = self.metrics
        self.pending_events -= len(batch.parts)
        self.pending_bytes -= batch.size - 1
        if exc is not None:
            if m is not None:
                m.produce_errors.inc()
            batch.future.set_exception(exc)
        else:
            batch.future.set_result(None)
            if m is not None:
                m.produce_latency.observe(self.clock() - started)

    def flush_all(self) -> None:
        if self._open:
            self._flush(list(self._open.items()))

    async def close(self) -> None:
        """Produce every open batch and wait for all messages in flight."""
        self.flush_all()
        while self._tasks or self._acks:
            await asyncio.gather(*list(self._tasks), *list(self._acks), return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
