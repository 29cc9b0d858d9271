import asyncio

import pytest

from pipeline import checkpointing
from pipeline.checkpointing import CheckpointPipeline, Processed


class Died(Exception):
    pass


@pytest.fixture(autouse=True)
def no_real_exit(monkeypatch):
    def fake_exit(code):
        raise Died(code)

    monkeypatch.setattr(checkpointing.os, "_exit", fake_exit)


class Recorder:
    """A stage whose writes take `write_seconds`; records what happened, in order."""

    def __init__(self, write_seconds: float = 0.0):
        self.log: list[str] = []
        self.acked: list[int] = []
        self.write_seconds = write_seconds
        self.pipeline = CheckpointPipeline("test", self.ack)

    async def ack(self, event) -> None:
        self.acked.append(event)

    async def process(self, events):
        self.log.append(f"process {events}")

        async def write():
            self.log.append(f"write {events} start")
            await asyncio.sleep(self.write_seconds)
            self.log.append(f"write {events} end")

        return Processed(write, events)


async def test_processing_overlaps_the_previous_write_and_writes_stay_in_order():
    stage = Recorder(write_seconds=0.05)
    await stage.pipeline.submit(stage.process, [1, 2])
    await asyncio.sleep(0.01)  # the agent waits for its next batch
    assert stage.acked == []  # nothing is acknowledged before its write is done
    await stage.pipeline.submit(stage.process, [3])
    assert stage.acked == [1, 2]
    await stage.pipeline.wait_idle()
    assert stage.log == [
        "process [1, 2]",
        "write [1, 2] start",
        "process [3]",  # while [1, 2] is being written
        "write [1, 2] end",
        "write [3] start",
        "write [3] end",
    ]
    assert stage.acked == [1, 2, 3]


async def test_a_failed_write_stops_the_process_instead_of_being_acknowledged():
    stage = Recorder()

    async def broken_write():
        raise RuntimeError("boom")

    async def process(events):
        return Processed(broken_write, events)

    await stage.pipeline.submit(process, [1, 2])
    with pytest.raises(Died) as died:
        await stage.pipeline.wait_idle()
    assert died.value.args == (checkpointing.EXIT_CHECKPOINT_FAILED,)
    assert stage.acked == []


async def test_a_failed_processing_step_stops_the_process():
    stage = Recorder()

    async def process(events):
        raise ValueError("bad state")

    with pytest.raises(Died):
        await stage.pipeline.submit(process, [1])


async def test_shutdown_lets_the_write_in_flight_finish_and_abandons_the_batch_being_processed():
    stage = Recorder(write_seconds=0.2)
    await stage.pipeline.submit(stage.process, [1])
    agent = asyncio.ensure_future(stage.pipeline.submit(stage.process, [2]))
    await asyncio.sleep(0.05)  # [2] is processed and waits for the write of [1]
    agent.cancel()  # what Faust does to agents on SIGTERM
    with pytest.raises(asyncio.CancelledError):
        await agent
    await stage.pipeline.close()
    assert stage.acked == [1]  # [2] was never written: not acknowledged, replayed after a restart
    assert "write [2] start" not in stage.log


async def test_a_write_that_cannot_finish_during_shutdown_is_not_acknowledged(monkeypatch):
    monkeypatch.setattr(checkpointing, "FINISH_ON_SHUTDOWN_S", 0.1)
    stage = Recorder(write_seconds=60)  # e.g. ClickHouse down: the sink retries forever
    await stage.pipeline.submit(stage.process, [1])
    with pytest.raises(Died):
        await stage.pipeline.close()
    assert stage.acked == []


async def test_the_events_processing_returns_are_the_ones_acknowledged():
    stage = Recorder()

    async def process(events):
        async def write():
            pass

        return Processed(write, [e for e in events if e != "not ours"])

    await stage.pipeline.submit(process, [1, "not ours", 2])
    await stage.pipeline.wait_idle()
    assert stage.acked == [1, 2]


async def test_a_closed_pipeline_starts_no_more_writes():
    stage = Recorder(write_seconds=0.1)
    await stage.pipeline.submit(stage.process, [1])
    await stage.pipeline.close()  # shutdown begins: the write in flight finishes
    await stage.pipeline.submit(stage.process, [2])  # a batch the agent was still processing
    await stage.pipeline.wait_idle()
    assert stage.acked == [1]
    assert "write [2] start" not in stage.log
