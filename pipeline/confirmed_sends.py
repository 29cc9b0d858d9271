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

Faust internals this relies on (faust-streaming 0.15; kept in this module):
- a table's `__setitem__` and `pop` call `Table.on_key_set` / `on_key_del`, which call the table's
  `send_changelog` and get back the changelog record's `FutureMessage`; Faust's `ProducerBuffer`
  (`_handle_pending`) publishes it later, and the private `Topic._on_published` sets the broker's
  answer or its exception on that future. `ConfirmingTable` (installed with the public `Table=`
  app setting) records those futures while `collect_changelog()` is open. If the buffer never
  publishes a record (its task died), the future never resolves: the timeout catches that.
- `Topic.send` returns the delivery future only with `stream_publish_on_commit` off (Faust's
  default; with it on, sends would be attached to the current event instead).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterator

import faust

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


class ConfirmingTable(faust.Table):
    """A Faust table whose changelog sends can be collected (see the module)."""

    _collecting: list | None = None

    def send_changelog(self, *args, **kwargs):
        future = super().send_changelog(*args, **kwargs)
        if self._collecting is not None:
            self._collecting.append(future)
        return future

    @contextlib.contextmanager
    def collect_changelog(self) -> Iterator[list]:
        """The changelog futures of the table writes made inside the block (synchronous code only,
        so that writes of another task cannot slip in)."""
        previous, futures = self._collecting, []
        self._collecting = futures
        try:
            yield futures
        finally:
            self._collecting = previous
