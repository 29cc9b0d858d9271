"""Canaries for the private Faust, mode and aiokafka names that `pipeline.faust` relies on (listed in
its docstring). Unit tests, no broker: each fails with the name and the package version when an
upgrade removes or renames one, before a worker meets it at run time."""

from __future__ import annotations

import contextvars
import inspect
import weakref
from importlib.metadata import version

import aiokafka
import faust
import faust.streams
import faust.topics
import mode.utils.objects
import mode.utils.queues
import pytest
from aiokafka.consumer.subscription_state import Assignment, SubscriptionState, TopicPartitionState
from faust.stores.rocksdb import Store
from faust.tables.base import Collection
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from pipeline.faust.consumer import AppPartitions, committed_offset
from pipeline.faust.state_table import ConfirmingTable, TableStore

VERSIONS = (
    f"faust-streaming {version('faust-streaming')}, mode-streaming {version('mode-streaming')}, "
    f"aiokafka {version('aiokafka')}"
)


def pinned(owner, name: str) -> object:
    """`owner.name`, or a failure that says which private name an upgrade removed."""
    assert hasattr(owner, name), (
        f"{getattr(owner, '__qualname__', owner)!s}.{name} is gone ({VERSIONS}): pipeline.faust relies on it"
    )
    return getattr(owner, name)


def sets_in_init(cls, *attributes: str) -> None:
    """Instance attributes `cls.__init__` creates (for classes too heavy to instantiate here)."""
    source = inspect.getsource(cls.__init__)
    for attribute in attributes:
        assert f"self.{attribute} =" in source, (
            f"{cls.__qualname__}.__init__ no longer sets {attribute} ({VERSIONS}): "
            "pipeline.faust relies on it"
        )


@pytest.fixture
def app(tmp_path):
    return faust.App(
        "canary",
        broker="kafka://127.0.0.1:1",  # never connected: nothing here starts the app
        store="rocksdb://",
        datadir=str(tmp_path),
        Table=ConfirmingTable,
        topic_partitions=2,
    )


@pytest.fixture
def table(app):
    return app.Table("state", partitions=2, key_type=bytes, value_type=bytes)


# --- faust: the state table --------------------------------------------------------------------------


def test_current_event_is_a_context_variable_holding_a_weak_reference():
    var = pinned(faust.streams, "_current_event")
    assert isinstance(var, contextvars.ContextVar)

    class Event:
        pass

    event = Event()
    token = var.set(weakref.ref(event))
    try:
        assert faust.streams.current_event() is event
    finally:
        var.reset(token)


def test_the_rocksdb_store_keeps_one_database_per_partition_and_reads_one_of_them(table):
    assert isinstance(table.data, Store)
    assert isinstance(pinned(table.data, "_dbs"), dict)
    pinned(Store, "_visible_items")
    assert "message.partition" in inspect.getsource(Store._set)  # picks the database from the event


def test_readiness_reads_the_assignors_actives_and_the_recovery_flag(app, table):
    assert isinstance(pinned(app.assignor, "assigned_actives")(), set)
    assert pinned(app, "in_recovery") is False
    assert pinned(table, "changelog_topic_name") == "canary-state-changelog"
    store = TableStore(table)
    assert not store.ready(0)
    assert store.describe(0) == "in recovery: False, active here: False, open: False"


def test_a_write_goes_to_the_partitions_database_and_returns_its_changelog_future(table):
    # Collection.send_changelog (called by on_key_set / on_key_del) returns the FutureMessage that
    # Topic._on_published resolves; partition_for_key and Store._set take the partition from the
    # current event that TableStore.write sets.
    pinned(Collection, "send_changelog")
    pinned(faust.topics.Topic, "_on_published")
    assert "current_event()" in inspect.getsource(Collection.partition_for_key)
    store = TableStore(table)
    futures = store.write("live.views", 1, {b"k": b"v"})
    assert len(futures) == 1 and isinstance(futures[0], faust.types.tuples.FutureMessage)
    assert futures[0].message.partition == 1
    assert list(store.items(1)) == [(b"k", b"v")]
    assert list(table.data._dbs) == [1]
    futures = store.write("live.views", 1, {b"k": None})
    assert len(futures) == 1 and futures[0].message.value is None  # a delete is a tombstone
    assert list(store.items(1)) == []


# --- faust: the consumer -----------------------------------------------------------------------------


def test_the_consumer_keeps_committed_offsets_gaps_and_acknowledgements(app):
    consumer = app.consumer  # created, not started: no connection
    for name in ("_committed_offset", "_gap", "_acked", "_acked_index"):
        pinned(consumer, name)
    consumer._committed_offset[TP("live.views", 0)] = 7
    assert committed_offset(consumer, TP("live.views", 0)) == 7
    assert AppPartitions(app).committed_offset(TP("live.views", 1)) is None
    for name in ("assignment", "highwater", "highwaters"):
        pinned(consumer, name)


def test_the_consumer_methods_the_rebalance_fixes_patch_or_call():
    import faust.transport.consumer as consumer_module

    for name in ("perform_seek", "resume_partitions", "_new_offset", "_is_changelog_tp"):
        pinned(Consumer, name)
    pinned(consumer_module, "ensure_TPset")
    for name in ("seek_to_committed", "call_thread", "_ensure_consumer"):
        pinned(AIOKafkaConsumerThread, name)


def test_the_apps_changelog_topics_and_flow_control(app, table):
    assert pinned(app.tables, "changelog_topics") == {"canary-state-changelog"}
    declared = faust.App.__dict__.get("flow_control")
    assert isinstance(declared, mode.utils.objects.cached_property), (
        f"faust.App.flow_control is no longer a mode cached_property ({VERSIONS}): PipelineApp overrides it"
    )
    assert isinstance(app.flow_control, mode.utils.queues.FlowControlEvent)


# --- mode and aiokafka -------------------------------------------------------------------------------


def test_mode_flow_control_clears_queues_on_resume():
    flow = mode.utils.queues.FlowControlEvent
    pinned(flow, "resume")
    pinned(flow, "is_active")
    assert "clear" in inspect.getsource(flow.resume)  # why QueueKeepingFlowControl exists


def test_aiokafka_consumer_seek_and_fetch_position():
    for name in ("seek_to_committed", "seek"):
        pinned(aiokafka.AIOKafkaConsumer, name)
    sets_in_init(aiokafka.AIOKafkaConsumer, "_subscription")
    pinned(SubscriptionState, "subscription")
    pinned(Assignment, "state_value")
    sets_in_init(TopicPartitionState, "_position")
