"""The Faust state table as the stages see it: one store per changelog partition, with put, delete,
per-partition items and the futures of the changelog records each write sends (the
`pipeline.runtime.StateStore` protocol).

Faust keeps one RocksDB database per changelog partition and picks it (and the changelog partition
of the record it sends) from the *current event*, a context variable its streams set while an agent
handles a message. `TableStore.write` sets that variable to a stand-in event of the input partition
being checkpointed, so the stages never see Faust's events.

`ConfirmingTable` (installed with the public `Table=` app setting) collects the changelog futures of
the writes made while `collect_changelog()` is open: a table's `__setitem__` and `pop` call
`Table.on_key_set` / `on_key_del`, which call the table's `send_changelog` and get back the
changelog record's `FutureMessage`; Faust's `ProducerBuffer` publishes it later, and the private
`Topic._on_published` sets the broker's answer or its exception on that future. If the buffer never
publishes a record (its task died), the future never resolves: `SendConfirmations`' timeout catches
that (see `pipeline.confirmed_sends`).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator, Mapping

import faust
from faust.streams import _current_event  # Faust exposes no public way to set the event context
from faust.types import TP


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


class TableStore:
    """`pipeline.runtime.StateStore` over a `ConfirmingTable` backed by Faust's RocksDB store."""

    def __init__(self, table: ConfirmingTable) -> None:
        self.table = table

    def ready(self, partition: int) -> bool:
        """Changelog partition `partition` is active here, open and recovered."""
        active, opened = self._status(partition)
        return active and opened and not self.table.app.in_recovery

    def describe(self, partition: int) -> str:
        active, opened = self._status(partition)
        return f"in recovery: {self.table.app.in_recovery}, active here: {active}, open: {opened}"

    def _status(self, partition: int) -> tuple[bool, bool]:
        table = self.table
        active = TP(table.changelog_topic_name, partition) in table.app.assignor.assigned_actives()
        return active, partition in table.data._dbs  # Faust has no public accessor for this

    def items(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """The items of one changelog partition, read straight from its database: the table's own
        `items()` walks the databases of every partition (a full scan per restored partition)."""
        store = self.table.data
        return store._visible_items(store._dbs[partition])  # Faust has no public per-partition read

    def write(self, topic: str, partition: int, changes: Mapping[bytes, bytes | None]) -> list:
        """Put each key with a value, delete each key mapped to None, as a write of input partition
        `topic`/`partition` (its changelog partition and database); return the changelog futures."""
        event = _Event(topic, partition)  # held here: Faust keeps only a weak reference to it
        token = _current_event.set(weakref.ref(event))
        try:
            table = self.table
            with table.collect_changelog() as futures:
                for key, value in changes.items():
                    if value is None:
                        table.pop(key, None)
                    else:
                        table[key] = value
        finally:
            _current_event.reset(token)
        return futures


class _Event:
    """Stands in for the Faust event of an input partition: the table reads `message.topic` (to check
    its partition count against the changelog's) and `message.partition` (the changelog partition and
    RocksDB database)."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = _Message(topic, partition)


class _Message:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition
        self.tp = TP(topic, partition)
