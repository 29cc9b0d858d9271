"""Running checkpoints so that Faust never acknowledges a batch that was not made durable, while the
next batch is already being processed.

A stage handles a batch in two steps (see `pipeline.runtime`): *process* (plain code: decode, windows;
it ends with an immutable checkpoint snapshot) and *write* (the durable I/O of that snapshot:
ClickHouse, contributions, state). `CheckpointPipeline` runs the writes in the background, one at a
time and in batch order, so processing batch N+1 overlaps with writing batch N; a batch's events are
acknowledged only once its write is done. The agents consume with Faust's `noack_take`, so nothing
else acknowledges them (Faust's `take_events` would acknowledge a batch as soon as the loop body
returns, even when it raised).

Failures:
- an unexpected error while processing or writing stops the process at once without acknowledging
  (fail-stop, like `kill -9`, which the state design replays exactly), instead of letting Faust
  restart the agent past the batch;
- a shutdown (SIGTERM): Faust first waits until every message the agents took is acknowledged, so
  the batches in hand are processed and written as usual, then commits and stops; `pipeline.app`
  bounds that by `FINISH_ON_SHUTDOWN_S` and otherwise exits without acknowledging (ClickHouse down,
  say: the batches are replayed after the restart). If an agent is cancelled anyway, `close` lets
  the write in flight finish within the same bound.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

log = logging.getLogger(__name__)
FINISH_ON_SHUTDOWN_S = 20.0
EXIT_CHECKPOINT_FAILED = 70  # EX_SOFTWARE


class Processed(NamedTuple):
    """What processing a batch returns: the write that makes its checkpoint durable, and the events to
    acknowledge once the write is done."""

    write: Callable[[], Awaitable[None]]
    events: Sequence


class CheckpointPipeline:
    """One stage's checkpoints: process in the caller, write in the background, acknowledge after."""

    def __init__(self, name: str, ack: Callable[[Any], Awaitable[Any]]):
        self.name = name
        self._ack = ack
        self._inflight: asyncio.Future | None = None
        self._closed = False
        # Besides the agent, a timer submits (idle partitions): one submission at a time, so writes
        # stay one at a time and in order.
        self._submitting = asyncio.Lock()

    async def submit(self, process: Callable[[Sequence], Awaitable[Processed]], events: Sequence) -> None:
        """Process `events` now; start writing them once the previous write is done; return."""
        async with self._submitting:
            if self._closed and not events:
                return
            try:
                processed = await process(events)
            except asyncio.CancelledError:
                raise
            except BaseException:
                exit_unacknowledged(f"{self.name}: processing a batch of {len(events)} messages failed")
            await self.wait_idle()
            if self._closed:
                return  # shutting down: neither written nor acknowledged, replayed after the restart
            self._inflight = asyncio.ensure_future(self._write_then_ack(*processed))

    async def wait_idle(self) -> None:
        """Until the write in flight (if any) is done. Cancelling the caller does not cancel the write."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    async def close(self) -> None:
        """When the agent ends: start no more writes; let the one in flight finish (bounded), or exit
        without acknowledging it."""
        self._closed = True
        inflight = self._inflight
        if inflight is None or inflight.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(inflight), FINISH_ON_SHUTDOWN_S)
        except BaseException:
            exit_unacknowledged(f"{self.name}: the checkpoint in flight could not finish during shutdown")

    async def _write_then_ack(self, write: Callable[[], Awaitable[None]], events: Sequence) -> None:
        try:
            await write()
        except asyncio.CancelledError:
            raise  # the loop is being torn down: not acknowledged, replayed after the restart
        except BaseException:
            exit_unacknowledged(f"{self.name}: the checkpoint of {len(events)} messages failed")
        for event in events:
            await self._ack(event)


def exit_unacknowledged(what: str) -> None:
    """Exit at once (status 70) without acknowledging anything more: like `kill -9`, which the state
    design replays exactly."""
    log.critical("%s; exiting without acknowledging it (it is replayed on restart)", what, exc_info=True)
    os._exit(EXIT_CHECKPOINT_FAILED)
