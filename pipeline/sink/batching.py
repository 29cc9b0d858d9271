"""BatchingSink: buffers rows for one table, writes them in batches, retries, applies backpressure.

Contract:
- `await put(rows, position)` returns once the rows are buffered; it waits first while the buffer holds
  `policy.max_buffered_rows` or more (backpressure). It never writes itself and never blocks the loop.
- A background task writes batches of at most `policy.max_rows`, when that many are buffered or the
  oldest row is `policy.max_seconds` old. Rows stay buffered until their batch is written; a failed
  write that failed for a transient reason (`policy.classify_failure`: connection, timeout, overload,
  read-only replica) is retried with the same rows and the same dedup token (so a write that in fact
  landed is not stored twice), with capped exponential backoff, forever unless `retry.max_attempts` is
  set.
- A batch the store refuses for good (a value out of its column's range, too many partitions in one
  block) is split in halves, recursively, each half written (and retried) on its own with a token
  derived from its parent's, so a replay in the same process splits the same way and stays
  idempotent. A single row still refused is handed to `on_refused` (a `RefusedRow`: the dead-letter
  topic, in the worker) and counts as done: the other rows land and the partition moves on. Without
  `on_refused` the sink stops (`SinkFailed`) rather than drop a row.
- `await flush()` returns only when every row put before the call is written: call it before
  committing Kafka offsets. The `position` given to `put` only travels with the rows it buffered, so
  that a refused row names its Kafka source (`RefusedRow.position`) for the dead letter.
- Rows are what `convert` returns, in the writer's `fmt` (see `pipeline.sink.writer`): tuples for
  `NATIVE`, JSON-object bytes for `JSON_EACH_ROW`. Without `convert`, put rows must already be that.
- `stats` holds plain counters for metrics (the caller exports them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.sink.policy import (
    DEFAULT_RETRY,
    ONCE_PER_SECOND,
    REFUSED,
    FlushPolicy,
    RetryPolicy,
    classify_failure,
    clickhouse_code,
)
from pipeline.sink.writer import NATIVE, RowFormat, Writer

log = logging.getLogger(__name__)

Position = Mapping[tuple[str, int], int]  # (topic, partition) -> offset


@dataclass
class SinkStats:
    rows_written: int = 0
    rows_refused: int = 0  # rows the store refused for good, handed to `on_refused`
    last_refusal: str | None = None
    batches_written: int = 0
    retries: int = 0
    errors: int = 0
    last_insert_seconds: float | None = None
    last_error: str | None = None
    backpressure: bool = False
    buffered_rows: int = 0
    reachable: bool | None = None


class SinkFailed(RuntimeError):
    """The sink gave up on a batch (only with `retry.max_attempts`) or its task died."""


@dataclass(frozen=True)
class RefusedRow:
    """A row the store refused for good, with the store's reason and where the row came from.

    `row` is the row as written (a NATIVE tuple in `columns` order, or JSON-object bytes); `position`
    is the position given to the `put` that buffered it (empty if none); `code` the ClickHouse error
    code when known."""

    table: str
    columns: tuple[str, ...]
    row: Any
    fmt: RowFormat
    error: str
    code: int | None
    position: Mapping[tuple[str, int], int]


class BatchingSink:
    def __init__(
        self,
        writer: Writer,
        table: str,
        columns: Sequence[str],
        *,
        policy: FlushPolicy = ONCE_PER_SECOND,
        retry: RetryPolicy = DEFAULT_RETRY,
        convert: Callable[[Any], Any] | None = None,
        fmt: RowFormat = NATIVE,
        on_refused: Callable[[RefusedRow], Awaitable[None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.writer, self.table, self.columns, self.fmt = writer, table, tuple(columns), fmt
        self.policy, self.retry = policy, retry
        # Default: a NATIVE row may come as any sequence; JSON rows are taken as they are.
        self._convert = convert or (tuple if fmt == NATIVE else None)
        self._on_refused, self._clock = on_refused, clock
        self.stats = SinkStats()
        self._buffer: list[Any] = []
        self._put_seq = 0  # rows ever put
        self._written_seq = 0  # rows ever written; buffer holds rows _written_seq.._put_seq
        self._arrivals: deque[tuple[int, float]] = deque()  # (put_seq after a put, monotonic time)
        self._marks: deque[tuple[int, Position]] = deque()  # (put_seq after a put, its position)
        self._flush_target = 0
        self._closing = False
        self._wakeup = asyncio.Event()
        self._progress = asyncio.Condition()
        self._token_prefix = f"{table}:{uuid.uuid4().hex}"
        self._batch_numbers = itertools.count(1)
        self._task: asyncio.Task | None = None

    # -- producer side -------------------------------------------------------------------------------
    async def put(self, rows: Iterable[Any], position: Position | None = None) -> None:
        """Buffer rows (converted by `convert` if given); waits while the buffer is full."""
        convert = self._convert
        if convert:
            converted = [convert(r) for r in rows]
        else:
            converted = list(rows)
            # A row the writer cannot send would be retried forever: refuse it here, loudly.
            if not all(type(r) is bytes for r in converted):
                raise TypeError(f"{self.table}: JSON rows must be bytes (one JSON object each)")
        await self.wait_for_capacity()
        self._check_alive()
        self._buffer.extend(converted)
        self._put_seq += len(converted)
        self._arrivals.append((self._put_seq, self._clock()))
        # Every put leaves a mark (empty without a position): a refused row finds its put's position.
        self._marks.append((self._put_seq, dict(position or {})))
        self.stats.buffered_rows = len(self._buffer)
        if len(self._buffer) >= self.policy.max_rows:
            self._wakeup.set()
        self._ensure_started()

    async def wait_for_capacity(self) -> None:
        """Return when the buffer is below `policy.max_buffered_rows` (backpressure while waiting)."""
        if len(self._buffer) < self.policy.max_buffered_rows:
            return
        self.stats.backpressure = True
        self._wakeup.set()
        async with self._progress:
            await self._progress.wait_for(
                lambda: len(self._buffer) < self.policy.max_buffered_rows or self._dead()
            )
        self.stats.backpressure = False
        self._check_alive()

    async def flush(self) -> None:
        """Return when every row put before this call is written (raise `SinkFailed` if it never will)."""
        target = self._put_seq
        if self._written_seq >= target:
            return
        self._ensure_started()
        self._flush_target = max(self._flush_target, target)
        self._wakeup.set()
        async with self._progress:
            await self._progress.wait_for(lambda: self._written_seq >= target or self._dead())
        if self._written_seq < target:
            self._check_alive()

    async def close(self, timeout: float | None = None) -> bool:
        """Flush and stop; True if everything was written, False if `timeout` passed first.

        Unwritten rows are simply dropped from memory on timeout: no flush covering them returned, so
        their offsets were never committed and the consumer re-reads them after a restart.
        """
        self._closing = True
        done = True
        if self._task is not None:
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except TimeoutError:
                done = False
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        return done and not self._buffer

    # -- writer task ---------------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sink:{self.table}")

    def _dead(self) -> bool:
        return self._task is not None and self._task.done()

    def _check_alive(self) -> None:
        if self._dead() and not self._closing:
            exc = None if self._task.cancelled() else self._task.exception()
            raise SinkFailed(f"sink for {self.table} stopped: {exc!r}") from exc

    async def _run(self) -> None:
        try:
            while True:
                await self._wait_for_batch()
                if not self._buffer:
                    return  # closing and drained
                batch = self._buffer[: self.policy.max_rows]
                token = f"{self._token_prefix}:{next(self._batch_numbers)}"
                await self._write_isolating(batch, token, self._written_seq)
                del self._buffer[: len(batch)]
                self._written_seq += len(batch)
                self._after_write()
                async with self._progress:
                    self._progress.notify_all()
        finally:
            async with self._progress:
                self._progress.notify_all()

    async def _wait_for_batch(self) -> None:
        while True:
            if len(self._buffer) >= self.policy.max_rows:
                return
            if self._buffer and (self._closing or self._flush_target > self._written_seq):
                return
            if not self._buffer and self._closing:
                return
            timeout = None
            if self._buffer:
                timeout = self.policy.max_seconds - (self._clock() - self._oldest_arrival())
                if timeout <= 0:
                    return
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _oldest_arrival(self) -> float:
        while self._arrivals and self._arrivals[0][0] <= self._written_seq:
            self._arrivals.popleft()
        return self._arrivals[0][1] if self._arrivals else self._clock()

    async def _write_isolating(self, rows: list[Any], token: str, first_seq: int) -> None:
        """Write `rows`; if the store refuses them for good, write each half on its own (recursively),
        and hand a single refused row to `on_refused`. `first_seq` is the put sequence of rows[0]."""
        refusal = await self._write_with_retry(rows, token)
        if refusal is None:
            return
        if len(rows) == 1:
            await self._refuse(rows[0], refusal, first_seq)
            return
        # Halves: a batch with one bad row costs about 2*log2(len) extra inserts, and ClickHouse's
        # "too many partitions in one block" resolves itself once the halves are small enough.
        # The tokens extend the parent's: a half that landed before a crash of this process is not
        # re-stored by a retry of the same half.
        mid = len(rows) // 2
        await self._write_isolating(rows[:mid], f"{token}/a", first_seq)
        await self._write_isolating(rows[mid:], f"{token}/b", first_seq + mid)

    async def _refuse(self, row: Any, exc: BaseException, seq: int) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if self._on_refused is None:
            raise SinkFailed(
                f"{self.table} refused a row and the sink has no on_refused: {error[:300]}"
            ) from exc
        position: Mapping[tuple[str, int], int] = {}
        for put_seq, mark in self._marks:  # the put that buffered row number `seq` (0-based)
            if put_seq > seq:
                position = mark
                break
        refused = RefusedRow(self.table, self.columns, row, self.fmt, error, clickhouse_code(exc), position)
        log.error("%s refused a row for good; dead-lettered: %s", self.table, error[:300])
        await self._on_refused(refused)
        self.stats.rows_refused += 1
        self.stats.last_refusal = error[:300]

    async def _write_with_retry(self, batch: list[Any], token: str) -> BaseException | None:
        """Write `batch`, retrying transient failures; None once written, or the exception with which
        the store refused it for good."""
        failures = 0
        while True:
            started = self._clock()
            try:
                await self.writer.write(self.table, self.columns, batch, token, fmt=self.fmt)
            except Exception as exc:
                failures += 1
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
                self.stats.reachable = getattr(self.writer, "reachable", False)
                if classify_failure(exc) == REFUSED:
                    return exc
                if self.retry.max_attempts is not None and failures >= self.retry.max_attempts:
                    raise SinkFailed(f"giving up on a batch of {len(batch)} rows for {self.table}") from exc
                delay = self.retry.delay(failures)
                log.warning(
                    "write of %d rows to %s failed (%s); retry %d in %.2fs",
                    len(batch),
                    self.table,
                    self.stats.last_error,
                    failures,
                    delay,
                )
                self.stats.retries += 1
                await asyncio.sleep(delay)
                continue
            self.stats.last_insert_seconds = self._clock() - started
            self.stats.reachable = True
            self.stats.rows_written += len(batch)
            return None

    def _after_write(self) -> None:
        self.stats.batches_written += 1
        self.stats.buffered_rows = len(self._buffer)
        # A mark is needed only until its rows are written (a refused row looks its put up first).
        while self._marks and self._marks[0][0] <= self._written_seq:
            self._marks.popleft()
