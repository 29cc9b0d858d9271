import asyncio

import pytest

from pipeline import checkpointing


class Died(Exception):
    pass


@pytest.fixture(autouse=True)
def no_real_exit(monkeypatch):
    def fake_exit(code):
        raise Died(code)

    monkeypatch.setattr(checkpointing.os, "_exit", fake_exit)


async def test_a_failed_checkpoint_stops_the_process_instead_of_being_acknowledged():
    async def broken(events):
        raise RuntimeError("boom")

    with pytest.raises(Died) as died:
        await checkpointing.run_checkpoint(broken, [1, 2])
    assert died.value.args == (checkpointing.EXIT_CHECKPOINT_FAILED,)


async def test_shutdown_lets_the_running_checkpoint_finish_before_acknowledging():
    finished = asyncio.Event()

    async def slow(events):
        await asyncio.sleep(0.2)
        finished.set()

    agent = asyncio.ensure_future(checkpointing.run_checkpoint(slow, [1]))
    await asyncio.sleep(0.05)
    agent.cancel()  # what Faust does to agents on SIGTERM
    with pytest.raises(asyncio.CancelledError):
        await agent
    assert finished.is_set()


async def test_a_checkpoint_that_cannot_finish_during_shutdown_is_not_acknowledged(monkeypatch):
    monkeypatch.setattr(checkpointing, "FINISH_ON_SHUTDOWN_S", 0.1)

    async def stuck(events):
        await asyncio.sleep(60)  # e.g. ClickHouse down: the sink retries forever

    agent = asyncio.ensure_future(checkpointing.run_checkpoint(stuck, [1]))
    await asyncio.sleep(0.05)
    agent.cancel()
    with pytest.raises(Died):
        await agent
