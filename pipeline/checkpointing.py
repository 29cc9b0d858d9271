"""Running one batch's checkpoint so that Faust never acknowledges a batch that was not made durable.

Faust's `take_events` acknowledges the batch when the agent's loop body ends, even when the body
raised or was cancelled. A failed or interrupted checkpoint must not be acknowledged, so:
- an unexpected error stops the process at once without acknowledging (fail-stop, like `kill -9`,
  which the state design replays exactly) instead of letting Faust restart the agent past the batch;
- a shutdown (SIGTERM cancels the agents) lets the running checkpoint finish, for at most
  `FINISH_ON_SHUTDOWN_S`, then lets the acknowledgement and final commit happen; if it cannot finish
  (ClickHouse down, say), the process exits without acknowledging, so the batch is replayed later.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)
FINISH_ON_SHUTDOWN_S = 20.0
EXIT_CHECKPOINT_FAILED = 70  # EX_SOFTWARE


async def run_checkpoint(handler: Callable[[Sequence], Awaitable[None]], events: Sequence) -> None:
    task = asyncio.ensure_future(handler(events))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await asyncio.wait_for(task, FINISH_ON_SHUTDOWN_S)
        except BaseException:
            _die(f"the checkpoint of {len(events)} messages could not finish during shutdown")
        raise
    except BaseException:
        _die(f"the checkpoint of {len(events)} messages failed")


def _die(what: str) -> None:
    log.critical("%s; exiting without acknowledging it (it is replayed on restart)", what, exc_info=True)
    os._exit(EXIT_CHECKPOINT_FAILED)
