"""Faust's app class for the worker, and the output topics the stages send to.

`PipelineApp` bounds how long stopping may take and replaces the flow control (see
`pipeline.faust.rebalance_seek`); `StreamTopics` is the `pipeline.runtime.StageTopics` protocol over
Faust topics and the app's producer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import faust
from mode.utils.objects import cached_property

from pipeline.checkpointing import FINISH_ON_SHUTDOWN_S, exit_unacknowledged
from pipeline.faust import rebalance_seek


@dataclass
class StreamTopics:
    deadletter: faust.TopicT
    late: faust.TopicT
    contributions: faust.TopicT
    app: faust.App

    async def flush(self) -> None:
        await self.app.producer.flush()


class PipelineApp(faust.App):
    """Faust's app, with a bound on how long stopping may take and a flow control that keeps queued
    messages when recovery completes (see `pipeline.faust.rebalance_seek`).

    On SIGTERM Faust first waits until every message the agents took is acknowledged ("Wait for
    streams"): the checkpoints in flight are written, then offsets are committed. If they cannot be
    written (ClickHouse down), that wait would never end; after `FINISH_ON_SHUTDOWN_S` the process
    exits without acknowledging them instead (they are replayed after the restart)."""

    @cached_property
    def flow_control(self) -> rebalance_seek.QueueKeepingFlowControl:
        # Overrides Faust's `App.flow_control` (a subclass, created the same way) so that the end of
        # recovery does not clear messages already delivered to the agents: see rebalance_seek.
        return rebalance_seek.QueueKeepingFlowControl(loop=self.loop)

    async def on_stop(self) -> None:
        try:
            await asyncio.wait_for(super().on_stop(), FINISH_ON_SHUTDOWN_S)
        except TimeoutError:
            exit_unacknowledged(f"stopping took over {FINISH_ON_SHUTDOWN_S:.0f} s")
