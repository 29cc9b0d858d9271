"""Faust wiring, kept thin: topics, the state table, two agents, timers, and the web pages.

Everything that decides anything lives in plain code (`pipeline.stages`, `pipeline.windows`,
`pipeline.sink`) driven by `pipeline.runtime.StreamRuntime`; this module only connects it to Kafka
and to the worker's web server. Every Faust, mode and aiokafka internal is used in `pipeline.faust`.

  input topics --rooms agent--> room windows --> ClickHouse
                      \\--> <app_id>-creator-contributions --creators agent--> creator windows --> ClickHouse
"""

from __future__ import annotations

import asyncio
import logging
import time

import faust
from prometheus_client import CONTENT_TYPE_LATEST

from pipeline.checkpointing import CheckpointPipeline
from pipeline.faust import rebalance_seek
from pipeline.faust.application import PipelineApp, StreamTopics
from pipeline.faust.consumer import AppPartitions, consumer_progress
from pipeline.faust.state_table import ConfirmingTable, TableStore
from pipeline.faust.web import register_routes
from pipeline.kafka_options import ssl_context
from pipeline.metrics import Metrics
from pipeline.runtime import StreamRuntime
from pipeline.serving import jobs
from pipeline.serving.auth import protect
from pipeline.serving.health import DependencyChecker
from pipeline.serving.milestones import MilestoneWatcher
from pipeline.serving.registry import RegistryError
from pipeline.settings import Settings
from pipeline.sink.clickhouse_writer import ClickHouseWriter
from pipeline.sink.writer import InstrumentedWriter
from pipeline.topics import MAX_STATE_VALUE_BYTES, STATE_TABLE, contributions_topic

log = logging.getLogger(__name__)
HEALTH_CHECK_INTERVAL_S = 2.0
REGISTRY_RETRY_S = 10.0
MILESTONE_CHECK_INTERVAL_S = 5.0
# A batch is checkpointed when it holds this many messages or this much time has passed. The waits
# add up along the path to the creator view (room wait, room write, creator wait, creator write), so
# they are kept well under the 2 s latency budget while every changed window still reaches ClickHouse
# more than once a second. The cost is a few inserts a second per table (ClickHouse prefers few,
# large inserts; at this rate merges keep up easily).
CHECKPOINT_MESSAGES = 2_000
ROOM_CHECKPOINT_SECONDS = 0.5
# Contributions arrive in bursts, one per room-stage checkpoint: a short wait catches the burst.
CREATOR_CHECKPOINT_SECONDS = 0.25
# How often idle input partitions are looked for (they advance after IDLE_PARTITION_SECONDS).
IDLE_CHECK_INTERVAL_S = 5.0


def faust_credentials(settings: Settings):
    """Faust's `broker_credentials` for the settings, or None for PLAINTEXT."""
    context = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings, metrics: Metrics | None = None) -> faust.App:
    metrics = metrics or Metrics()
    datadir = settings.local_dir / "worker" / settings.app_id
    datadir.mkdir(parents=True, exist_ok=True)
    app = PipelineApp(
        settings.app_id,
        broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")],
        broker_credentials=faust_credentials(settings),
        topic_replication_factor=settings.kafka_replication_factor,
        # A state-table value (a hot window's users) may pass Kafka's default 1 MB; see topics.py.
        producer_max_request_size=MAX_STATE_VALUE_BYTES,
        datadir=str(datadir),
        store="rocksdb://",
        topic_partitions=settings.topic_partitions,
        consumer_auto_offset_reset="earliest",
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # How long a crashed worker keeps its partitions before the group moves them elsewhere.
        broker_session_timeout=settings.consumer_session_timeout_s,
        broker_heartbeat_interval=max(1, settings.consumer_session_timeout_s // 10),
        # The agents wait on ClickHouse during an outage (backpressure); that is not a livelock.
        broker_commit_livelock_soft_timeout=300.0,
        # The worker logs through the root logger configured by the CLI; Faust must not swap stdout.
        worker_redirect_stdouts=False,
        # Changelog records are confirmed before a checkpoint is acknowledged: see confirmed_sends.
        Table=ConfirmingTable,
    )
    topics = settings.topics

    def raw_topic(*names: str, **kwargs) -> faust.TopicT:
        return app.topic(*names, key_serializer="raw", value_serializer="raw", **kwargs)

    inputs = raw_topic(*topics.inputs)
    stream_topics = StreamTopics(
        deadletter=raw_topic(topics.deadletter),
        late=raw_topic(topics.late),
        contributions=raw_topic(contributions_topic(settings)),
        app=app,
    )
    state = app.Table(  # a ConfirmingTable (the `Table=` setting above): its changelog sends are confirmed
        STATE_TABLE,
        partitions=settings.topic_partitions,
        key_type=bytes,  # bytes keys and values make Faust use the raw codec for store and changelog
        value_type=bytes,
        help="open windows, watermarks and de-duplication memory per input partition",
    )

    runtime = StreamRuntime(
        settings,
        metrics,
        state=TableStore(state),
        topics=stream_topics,
        partitions=AppPartitions(app),
        writer=InstrumentedWriter(ClickHouseWriter.from_settings(settings), metrics),
        raw_writer=InstrumentedWriter(ClickHouseWriter.from_settings(settings), metrics),
    )
    checker = DependencyChecker(settings)
    app.livecommerce = runtime

    @app.agent(inputs, name="rooms")
    async def rooms(stream):
        await _run_stage(
            "rooms", stream, runtime.process_room_batch, ROOM_CHECKPOINT_SECONDS, runtime.use_room_pipeline
        )

    @app.agent(stream_topics.contributions, name="creators")
    async def creators(stream):
        await _run_stage("creators", stream, runtime.process_creator_batch, CREATOR_CHECKPOINT_SECONDS)

    @app.on_partitions_revoked.connect
    async def on_revoked(app, revoked, **kwargs) -> None:
        runtime.forget(revoked)

    @app.timer(interval=HEALTH_CHECK_INTERVAL_S)
    async def check_dependencies() -> None:
        await _logged("dependency check", checker.check_all())
        metrics.dependency_up.labels(dependency="kafka").set(int(checker.kafka.reachable))
        metrics.dependency_up.labels(dependency="clickhouse").set(int(checker.clickhouse.reachable))
        _update_gauges(app, runtime, metrics)

    @app.timer(interval=IDLE_CHECK_INTERVAL_S)
    async def advance_idle_partitions() -> None:
        await _logged("idle partition check", runtime.advance_idle_partitions())

    @app.page("/health")
    async def health(web, request):
        return web.json(health_document(app, runtime, checker))

    @app.page("/metrics")
    async def metrics_page(web, request):
        # aiohttp refuses parameters in content_type, so the exposition format's header goes in whole.
        return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.task
    async def load_campaign_registry() -> None:
        # A malformed registry file stops the worker at start, loudly (RegistryError propagates);
        # ClickHouse being unreachable only delays loading.
        while True:
            try:
                await jobs.on_worker_start(settings)
                return
            except RegistryError:
                raise
            except Exception as exc:
                log.warning(
                    "campaign registry not loaded yet (%s); retrying in %.0f s", exc, REGISTRY_RETRY_S
                )
                await asyncio.sleep(REGISTRY_RETRY_S)

    # Leaderboard snapshots and milestone checks are cluster-wide jobs: one worker (the leader) runs
    # them. A failing run (ClickHouse down) is logged and retried at the next tick: Faust stops the
    # whole worker when a timer raises.
    @app.timer(interval=jobs.ROLL_INTERVAL_S, on_leader=True)
    async def roll_leaderboards() -> None:
        await _logged("leaderboard snapshot roll", jobs.roll_snapshots(settings, runtime.watermark_ms()))

    async def send_milestone(topic: str, key: bytes, value: bytes) -> None:
        await app.producer.send_and_wait(topic, key, value, partition=None, timestamp=None, headers=None)

    watcher = MilestoneWatcher(settings, send_milestone)

    @app.timer(interval=MILESTONE_CHECK_INTERVAL_S, on_leader=True)
    async def check_milestones() -> None:
        await _logged("milestone check", watcher.check())

    register_routes(app, settings, watermark_ms=runtime.watermark_ms)
    protect(app.web.web_app, settings.web_auth_token, settings.web_host, settings.web_allow_no_token)
    # Without it, a takeover after a rebalance can skip or lose messages, or commit one offset per
    # interval: see the module.
    rebalance_seek.install(app)
    return app


async def _run_stage(name: str, stream, process, within: float, on_pipeline=None) -> None:
    # noack_take: events are acknowledged by the pipeline once their checkpoint is durable.
    pipeline = CheckpointPipeline(name, stream.ack)
    if on_pipeline is not None:
        on_pipeline(pipeline)
    try:
        async for events in stream.noack_take(CHECKPOINT_MESSAGES, within=within):
            await pipeline.submit(process, events)
    finally:
        await pipeline.close()


async def _logged(what: str, job) -> None:
    try:
        await job
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("%s failed: %s: %s (next run at the next tick)", what, type(exc).__name__, str(exc)[:300])


def _update_gauges(app: faust.App, runtime: StreamRuntime, metrics: Metrics) -> None:
    now_ms = int(time.time() * 1000)
    for (topic, partition), part in runtime.rooms.partitions().items():
        if part.watermark.value > 0:
            metrics.watermark_delay.labels(topic=topic, partition=str(partition)).set(
                (now_ms - part.watermark.value) / 1000
            )
    metrics.set_consumer_lag(consumer_progress(app, runtime.consumed_topics))
    windows, users = runtime.state_size()
    metrics.state_windows.set(windows)
    metrics.state_users.set(users)
    metrics.observe_sinks(runtime.sinks.all())


def health_document(app: faust.App, runtime: StreamRuntime, checker: DependencyChecker) -> dict:
    progress = consumer_progress(app, runtime.consumed_topics)
    inputs = set(runtime.settings.topics.inputs)
    partitions = [row for row in progress if row["topic"] in inputs]
    for row in partitions:
        part = runtime.rooms.partitions().get((row["topic"], row["partition"]))
        row["watermark_ms"] = part.watermark.value if part and part.watermark.value > 0 else None
        row["dedup_evicted_by_cap"] = part.dedup.evicted_by_cap if part else 0
    sinks = {}
    for sink in runtime.sinks.all():
        stats = sink.stats
        sinks[sink.table.rsplit(".", 1)[-1]] = {
            "rows_written": stats.rows_written,
            "buffered_rows": stats.buffered_rows,
            "retries": stats.retries,
            "rows_refused": stats.rows_refused,
            "last_refusal": stats.last_refusal,
            "backpressure": stats.backpressure,
            "reachable": stats.reachable,
            "last_error": stats.last_error,
        }
    sink_ok = not any(s["backpressure"] or s["reachable"] is False for s in sinks.values())
    ok = checker.kafka.reachable and checker.clickhouse.reachable and sink_ok
    windows, users = runtime.state_size()
    return {
        "status": "ok" if ok else "degraded",
        "kafka": checker.kafka.as_json(),
        "clickhouse": checker.clickhouse.as_json(),
        "consumer": {
            "group": runtime.settings.app_id,
            "assigned_partitions": len(partitions),
            "total_lag": sum(row["lag"] or 0 for row in partitions),
            "partitions": partitions,
            "repartition_lag": sum(row["lag"] or 0 for row in progress if row["topic"] not in inputs),
        },
        "sink": sinks,
        "state": {
            "open_windows": windows,
            "distinct_users": users,
            "dedup_evicted_by_cap": runtime.dedup_evicted_by_cap,
        },
    }


def run_worker(settings: Settings) -> None:
    """Build the app and run it as a Faust worker until Ctrl-C or SIGTERM (`livecommerce worker`)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()
