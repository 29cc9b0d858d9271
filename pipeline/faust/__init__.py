"""Everything the worker needs from Faust, mode and aiokafka beyond their public API, in one place.

The stages (`pipeline.stages`, `pipeline.windows`), the runtime (`pipeline.runtime`), the checkpoint
pipeline and the sink import no Faust: the runtime reaches Kafka and the state table through small
protocols (`pipeline.runtime.StateStore`, `Partitions`, `StageTopics`) that this package implements.
`pipeline.app` is the wiring (topics, table, agents, timers, pages, credentials, the worker) and uses
Faust's public API only; no other module imports Faust or mode (`tests/unit/faust/test_faust_confined.py`;
aiokafka's public clients are used directly by the topic admin, health check, collector and generator).

Modules:
- `application`: `PipelineApp` (Faust's app with a bounded stop and the queue-keeping flow control)
  and `StreamTopics` (the output topics and the producer flush);
- `rebalance_seek`: three fixes to how Faust ends a rebalance (patches of its consumer classes);
- `state_table`: `ConfirmingTable` (collects changelog futures) and `TableStore` (the state store);
- `consumer`: `AppPartitions` (assignment, end and committed offsets) and `consumer_progress` (lag).
- `web`: `register_routes`, the page and the JSON API (`pipeline.serving`) as Faust views, with
  Faust's own pages removed (`app.web.blueprints` replaced by an empty `BlueprintManager`).

Private names relied on (faust-streaming 0.15, mode-streaming 0.7, aiokafka 0.14). Each is pinned
by tests/unit/faust/test_faust_canaries.py, which fails with the name when an upgrade removes or renames one:

faust
- `faust.streams._current_event`: the context variable holding a weak reference to the current
  event; `TableStore.write` sets it so the table picks the changelog partition and RocksDB database.
- `faust.stores.rocksdb.Store._dbs` (partition -> open database) and `Store._visible_items(db)`:
  `TableStore.ready` / `items` (one partition's items without scanning every partition).
- `App.assignor.assigned_actives()` and `App.in_recovery`: `TableStore.ready`.
- `Collection.send_changelog(partition, key, value, ...)` returning the record's `FutureMessage`,
  called by `Table.on_key_set` / `on_key_del` (`ConfirmingTable`); `Topic._on_published` sets the
  future's result or exception.
- `Collection.partition_for_key` reading `current_event().message.topic` / `.partition`, and
  `Store._set` reading `.message.partition` (what `state_table._Event` stands in for).
- `Consumer._committed_offset` (TP -> offset): `consumer.committed_offset`, and
  `rebalance_seek.new_offset`.
- `App.flow_control` (a `cached_property` returning mode's `FlowControlEvent`): overridden by
  `PipelineApp`.
- `faust.transport.consumer.Consumer.perform_seek`, `.resume_partitions`, `._new_offset`,
  `._is_changelog_tp`, `._gap` (TP -> IntervalTree), `._acked`, `._acked_index`, and
  `faust.transport.consumer.ensure_TPset`: patched or used by `rebalance_seek.install`.
- `faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek_to_committed`, `.call_thread`,
  `._ensure_consumer()`, and `App.tables.changelog_topics`: `rebalance_seek` (rewind of partitions
  without a commit).

mode
- `mode.utils.queues.FlowControlEvent.resume` / `.is_active` (resume clears the managed queues):
  `rebalance_seek.QueueKeepingFlowControl`.
- `mode.utils.objects.cached_property`: how Faust declares `App.flow_control`.

aiokafka
- `AIOKafkaConsumer.seek_to_committed()` moving only partitions committed at an offset > 0, and
  `AIOKafkaConsumer.seek`: `rebalance_seek._seek_to_committed_or_start`.
- `AIOKafkaConsumer._subscription.subscription.assignment.state_value(tp)._position`: the fetch
  position, for a log line only (a missing name there is caught, not fatal).
"""
