"""Kafka writes that a checkpoint depends on, confirmed by the broker before it is acknowledged.

Faust reports no failed send by itself: `Topic.send` returns the producer's delivery future and
Faust's `Topic._on_published` only logs a failure; aiokafka's `flush` does not raise for failed
sends; Faust's `ProducerBuffer.flush` returns after 0.1 s without progress with records still queued.
So the stream keeps the future of every send a checkpoint depends on (contributions, dead letters,
late events, state-table changelog records) in a `SendConfirmations` and awaits them all
(`confirm`) before the checkpoint's messages are acknowledged. A send that failed, or that the broker
did not confirm within `SEND_CONFIRM_TIMEOUT_S` of the wait, raises `SendNotConfirmed`: the checkpoint
fails and the worker exits without acknowledging (`pipeline.checkpointing.exit_unacknowledged`); the
restart replays the batch.

The changelog futures of state-table writes come from `pipeline.faust.state_table` (which lists the
Faust internals that relies on). `Topic.send` returns the delivery future only with
`stream_publish_on_commit` off (Faust's default; with it on, sends would be attached to the current
event instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

# A healthy broker confirms in milliseconds; a minute covers a leader election. Longer, and the
# worker stops (nothing acknowledged) rather than wait without a bound.
SEND_CONFIRM_TIMEOUT_S = 60.0


class SendNotConfirmed(RuntimeError):
    """A Kafka send a checkpoint depends on failed or was not confirmed in time."""


class SendConfirmations:
    """The futures of the Kafka sends one checkpoint depends on."""

    def __init__(self) -> None:
        self._pending: list[Awaitable] = []

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, future: Awaitable) -> None:
        self._pending.append(future)

    def extend(self, futures) -> None:
        self._pending.extend(futures)

    async def confirm(self, timeout: float = SEND_CONFIRM_TIMEOUT_S) -> None:
        """Return once every send added so far is confirmed by the broker; raise `SendNotConfirmed`
        if one failed or is still unconfirmed after `timeout` seconds. Confirmed sends are forgotten."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        futures = [asyncio.ensure_future(f) for f in pending]
        done, not_done = await asyncio.wait(futures, timeout=timeout)
        if not_done:
            # Not cancelled: the producer still owns them, and the worker is about to exit anyway.
            raise SendNotConfirmed(
                f"{len(not_done)} of {len(futures)} Kafka sends unconfirmed after {timeout:.0f} s"
            )
        for f in done:
            exc = f.exception()
            if exc is not None:
                failed = sum(1 for g in done if g.exception() is not None)
                raise SendNotConfirmed(f"{failed} of {len(futures)} Kafka sends failed: {exc!r}") from exc
