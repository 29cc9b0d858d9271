"""In-process stand-ins for what `pipeline.runtime.StreamRuntime` talks to: a dict state store, output
topics, the consumer's partitions and a ClickHouse writer (`ListWriter`), all recording every step in
one shared `Steps` log, each able to fail on demand. No Faust, no sockets."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pipeline.metrics import Metrics
from pipeline.runtime import LOG_APPEND_TIME, StreamRuntime
from pipeline.settings import Settings
from pipeline.sink.writer import ListWriter


class TP(NamedTuple):
    topic: str
    partition: int


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float = field(default_factory=time.time)  # seconds, as Faust's messages have it
    timestamp_type: int = LOG_APPEND_TIME

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass
class Event:
    message: Message


class Steps(list):
    """The one log every fake appends to: (step, detail) tuples in the order they happened. `fail`
    maps a step to the exception it raises (once armed, every time)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: dict[str, BaseException] = {}

    def step(self, name: str, detail: Any = None) -> None:
        self.append((name, detail))
        error = self.fail.get(name)
        if error is not None:
            raise error

    def names(self) -> list[str]:
        """The step names, consecutive repeats collapsed (one checkpoint sends many contributions)."""
        out: list[str] = []
        for name, _ in self:
            if not out or out[-1] != name:
                out.append(name)
        return out


class Confirmation:
    """The broker's answer to one send: logged when awaited (`SendConfirmations.confirm`)."""

    def __init__(self, steps: Steps, name: str) -> None:
        self.steps, self.name = steps, name

    def __await__(self):
        self.steps.step(self.name)
        return None
        yield  # a generator: awaitable without ever suspending


class Topic:
    def __init__(self, steps: Steps, name: str) -> None:
        self.steps, self.name = steps, name
        self.sent: dict[int | None, list[bytes]] = defaultdict(list)

    async def send(self, *, key: bytes | None = None, value: bytes, partition: int | None = None):
        self.steps.step(f"{self.name} sent", partition)
        self.sent[partition].append(value)
        return Confirmation(self.steps, f"{self.name} confirmed")


class Topics:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.deadletter = Topic(steps, "dead letter")
        self.late = Topic(steps, "late")
        self.contributions = Topic(steps, "contributions")

    def rebind(self, steps: Steps) -> None:
        """Log to `steps` from now on (a restarted worker reading the same topics)."""
        self.steps = self.deadletter.steps = self.late.steps = self.contributions.steps = steps

    async def flush(self) -> None:
        self.steps.step("flush")

    def sent_by(self, name: str) -> dict[int | None, list[bytes]]:
        return {"dead letter": self.deadletter, "late": self.late, "contributions": self.contributions}[
            name
        ].sent


class DictStore:
    """The `StateStore` protocol on dicts, one per changelog partition."""

    def __init__(self, steps: Steps, data: dict[int, dict[bytes, bytes]] | None = None) -> None:
        self.steps = steps
        self.data: dict[int, dict[bytes, bytes]] = data if data is not None else defaultdict(dict)

    def ready(self, partition: int) -> bool:
        return True

    def describe(self, partition: int) -> str:
        return "a dict"

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        return list(self.data.get(partition, {}).items())

    def write(self, topic: str, partition: int, changes: Mapping[bytes, bytes | None]) -> list:
        self.steps.step("state written", (topic, partition))
        store = self.data[partition]
        for key, value in changes.items():
            if value is None:
                store.pop(key, None)
            else:
                store[key] = value
        return [Confirmation(self.steps, "state confirmed")]


class Partitions:
    """The `Partitions` protocol: every partition is assigned here unless told otherwise."""

    def __init__(self) -> None:
        self.assigned: set[TP] | None = None
        self.committed: dict[TP, int] = {}
        self.ends: dict[TP, int] = {}

    def assignment(self) -> set:
        return self.assigned if self.assigned is not None else _Everything()

    async def end_offsets(self, tps) -> Mapping:
        return {tp: self.ends.get(tp, 0) for tp in tps}

    def committed_offset(self, tp) -> int | None:
        return self.committed.get(tp)


class _Everything(set):
    def __contains__(self, item) -> bool:
        return True


class StepWriter(ListWriter):
    """`ListWriter` that logs each batch as a step named after its table (before storing it)."""

    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    async def write(self, table, columns, rows, dedup_token, fmt="Native") -> None:
        self.steps.step(table.rsplit(".", 1)[-1], len(rows))
        await super().write(table, columns, rows, dedup_token, fmt)


class Watermarks(dict):
    """A runtime's written-watermark dict that logs when a watermark is recorded."""

    def __init__(self, steps: Steps) -> None:
        super().__init__()
        self.steps = steps

    def __setitem__(self, key, value) -> None:
        self.steps.step("watermark recorded", key)
        super().__setitem__(key, value)


@dataclass
class Rig:
    runtime: StreamRuntime
    steps: Steps
    store: DictStore
    topics: Topics
    partitions: Partitions
    writer: StepWriter


def make_rig(settings: Settings, steps: Steps | None = None, store: DictStore | None = None,
             writer: StepWriter | None = None, topics: Topics | None = None) -> Rig:  # fmt: skip
    """A runtime over fakes logging to `steps`; pass `store`, `writer` and `topics` to keep what a
    previous runtime made durable (their logs are rebound to `steps`)."""
    steps = steps if steps is not None else Steps()
    store = store if store is not None else DictStore(steps)
    writer = writer if writer is not None else StepWriter(steps)
    topics = topics if topics is not None else Topics(steps)
    store.steps = writer.steps = steps
    topics.rebind(steps)
    partitions = Partitions()
    runtime = StreamRuntime(
        settings, Metrics(), state=store, topics=topics, partitions=partitions, writer=writer
    )
    runtime._written_room_wm = Watermarks(steps)
    runtime._written_creator_wm = Watermarks(steps)
    return Rig(runtime, steps, store, topics, partitions, writer)
