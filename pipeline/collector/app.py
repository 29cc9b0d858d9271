"""The collector's aiohttp application: routes, admission (keys, rate limits, CORS, size) and the
upload handler that answers only once Kafka confirmed every message carrying the upload's events.

Statuses: 200 with per-event results (accepted / rejected with the contract's reason); 400 a body
that is not a JSON array of events; 401 a missing or unknown app key; 403 a CORS preflight from an
origin not configured; 413 too large; 415 an unsupported Content-Type or Content-Encoding; 429 a rate
limit (with Retry-After); 503 the queue is full, Kafka is not connected or did not confirm in time
(with Retry-After; retry the same events with the same event_ids, duplicates are removed
downstream). Error bodies are `{"error": code, "message": text}` and never carry internal detail.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiohttp import web

from pipeline.collector import intake
from pipeline.collector.batcher import RoomBatcher
from pipeline.collector.limits import AppKeys, TokenBuckets
from pipeline.collector.metrics import CollectorMetrics
from pipeline.collector.producer import KafkaSender
from pipeline.settings import Settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
JSON = "application/json"
CONTENT_TYPES = frozenset(("application/json", "text/plain"))  # text/plain: sendBeacon without preflight
RETRY_AFTER_UNAVAILABLE_S = 2
RETRY_AFTER_FULL_S = 1


@dataclass
class Collector:
    """Everything a request handler needs, built once per app."""

    settings: Settings
    sender: KafkaSender
    batcher: RoomBatcher
    metrics: CollectorMetrics
    keys: AppKeys
    per_key: TokenBuckets
    per_address: TokenBuckets
    topic_of: dict[str, str]


COLLECTOR = web.AppKey("collector", Collector)
READY_TASK = web.AppKey("ready_task", asyncio.Task)


def build_app(settings: Settings, metrics: CollectorMetrics | None = None, sender: KafkaSender | None = None):
    metrics = metrics or CollectorMetrics()
    sender = sender or KafkaSender(settings)
    batcher = RoomBatcher(
        sender.send,
        linger_s=settings.collector_linger_ms / 1000,
        max_message_bytes=settings.collector_max_message_bytes,
        max_pending_events=settings.collector_max_pending_events,
        max_pending_bytes=settings.collector_max_pending_bytes,
        metrics=metrics,
    )
    state = Collector(
        settings=settings,
        sender=sender,
        batcher=batcher,
        metrics=metrics,
        keys=AppKeys(settings.collector_app_keys),
        per_key=TokenBuckets(settings.collector_rate_per_key, 2 * settings.collector_rate_per_key),
        per_address=TokenBuckets(
            settings.collector_rate_per_address, 2 * settings.collector_rate_per_address
        ),
        topic_of=intake.topic_by_type(settings.topics),
    )
    # aiohttp's body limit applies to the raw body; decompression is ours (intake.gunzip), bounded too.
    app = web.Application(
        client_max_size=settings.collector_max_body_bytes + 1,
        middlewares=[_guard],
        handler_args={"auto_decompress": False},
    )
    app[COLLECTOR] = state
    app.router.add_post("/v1/events", post_events)
    app.router.add_route("OPTIONS", "/v1/events", preflight)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/sdk/livecommerce.js", sdk)
    app.on_startup.append(_startup)
    app.on_shutdown.append(_drain)
    app.on_cleanup.append(_cleanup)
    return app


async def _startup(app: web.Application) -> None:
    state = app[COLLECTOR]
    state.sender.start()

    async def ready() -> None:
        await state.sender.ready.wait()
        state.metrics.kafka_ready.set(1)

    app[READY_TASK] = asyncio.get_running_loop().create_task(ready())


async def _drain(app: web.Application) -> None:
    # Runs once the listener is closed; in-flight uploads still wait for their batches, so flush them.
    app[COLLECTOR].batcher.flush_all()


async def _cleanup(app: web.Application) -> None:
    state = app[COLLECTOR]
    await state.batcher.close()
    await state.sender.stop()
    app[READY_TASK].cancel()


def _error(status: int, code: str, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after is not None else None
    body = orjson.dumps({"error": code, "message": message})
    return web.Response(status=status, body=body, content_type=JSON, headers=headers)


@web.middleware
async def _guard(request: web.Request, handler):
    """CORS headers for configured origins; any unexpected error becomes a bare 500 (logged here)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # aiohttp's own 404/405/413: JSON like ours, no HTML
        response = _error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except Exception:
        log.exception("unexpected error handling %s %s", request.method, request.path)
        response = _error(500, "internal", "internal error; the upload was not accepted, retry it")
    origin = request.headers.get("Origin")
    if origin and origin in request.app[COLLECTOR].settings.collector_cors_origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    if not origin or origin not in request.app[COLLECTOR].settings.collector_cors_origins:
        return _error(403, "origin_not_allowed", "this origin may not upload events")
    return web.Response(
        status=204,
        headers={
            "Access-Control-Allow-Methods": "POST",
            "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-App-Key",
            "Access-Control-Max-Age": "600",
        },
    )


async def post_events(request: web.Request) -> web.Response:
    state = request.app[COLLECTOR]
    m = state.metrics
    refused = _admit(request, state)
    if refused is not None:
        return refused
    try:
        body = await _read_body(request, state.settings.collector_max_body_bytes)
        items = intake.parse_array(body, state.settings.collector_max_events_per_request)
    except intake.UploadError as exc:
        m.requests.labels("too_large" if exc.status == 413 else "bad_request").inc()
        m.rejections.labels(exc.code).inc()
        return _error(exc.status, exc.code, exc.message)
    checked = intake.check_events(
        items, state.topic_of, int(time.time() * 1000), state.settings.max_clock_skew_ms
    )
    n_ok = len(checked.accepted)
    if n_ok:
        refused = await _produce(state, checked)
        if refused is not None:
            m.events.labels("refused").inc(len(items))
            return refused
        m.events_accepted.inc(n_ok)
    if checked.rejected_reasons:
        m.events.labels("rejected").inc(len(checked.rejected_reasons))
        for reason in checked.rejected_reasons:
            m.rejections.labels(reason).inc()
    m.requests_ok.inc()
    body = orjson.dumps(
        {"accepted": n_ok, "rejected": len(checked.rejected_reasons), "results": checked.results}
    )
    return web.Response(body=body, content_type=JSON)


def _admit(request: web.Request, state: Collector) -> web.Response | None:
    """Key, rate limits, readiness and content headers, before the body is read."""
    m = state.metrics
    # sendBeacon cannot set headers, so the key may also come as ?app_key= (it is never logged).
    app = state.keys.app_for(request.headers.get("X-App-Key") or request.query.get("app_key"))
    if app is None:
        m.requests.labels("unauthorized").inc()
        m.rejections.labels("unauthorized").inc()
        return _error(401, "unauthorized", "send a valid app key in the X-App-Key header")
    wait = state.per_key.take(app) or state.per_address.take(request.remote or "")
    if wait:
        m.requests.labels("rate_limited").inc()
        m.rejections.labels("rate_limited").inc()
        return _error(429, "rate_limited", "too many uploads; retry after the Retry-After seconds", wait)
    if not state.sender.ready.is_set():
        m.requests.labels("unavailable").inc()
        m.rejections.labels("kafka_unavailable").inc()
        return _error(503, "unavailable", "not ready to accept events; retry", RETRY_AFTER_UNAVAILABLE_S)
    if request.content_type not in CONTENT_TYPES:
        m.requests.labels("unsupported").inc()
        m.rejections.labels("unsupported_media_type").inc()
        return _error(415, "unsupported_media_type", "send Content-Type: application/json")
    if request.headers.get("Content-Encoding", "identity").lower() not in ("identity", "gzip"):
        m.requests.labels("unsupported").inc()
        m.rejections.labels("unsupported_encoding").inc()
        return _error(415, "unsupported_encoding", "Content-Encoding may be gzip or none")
    length = request.content_length
    if length is not None and length > state.settings.collector_max_body_bytes:
        m.requests.labels("too_large").inc()
        m.rejections.labels(intake.BODY_TOO_LARGE).inc()
        return _error(
            413, intake.BODY_TOO_LARGE, f"the body is over {state.settings.collector_max_body_bytes} bytes"
        )
    return None


async def _read_body(request: web.Request, max_bytes: int) -> bytes:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise intake.UploadError(413, intake.BODY_TOO_LARGE, f"the body is over {max_bytes} bytes") from None
    if len(body) > max_bytes:
        raise intake.UploadError(413, intake.BODY_TOO_LARGE, f"the body is over {max_bytes} bytes")
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        body = intake.gunzip(body, max_bytes)
    return body


async def _produce(state: Collector, checked: intake.CheckedUpload) -> web.Response | None:
    """Queue the accepted events and wait for Kafka; a 503 response when that is not possible."""
    m, batcher = state.metrics, state.batcher
    if not batcher.has_room(len(checked.accepted), checked.accepted_bytes):
        m.requests.labels("overloaded").inc()
        m.rejections.labels("queue_full").inc()
        return _error(503, "overloaded", "too many events waiting for Kafka; retry", RETRY_AFTER_FULL_S)
    add = batcher.add
    futures = {add(topic, room, part) for topic, room, part in checked.accepted}
    # The queue-depth gauges are set when /metrics is scraped (metrics_page), not on every upload.
    # asyncio.wait never cancels the futures: other uploads share them.
    done, pending = await asyncio.wait(futures, timeout=state.settings.collector_produce_timeout_s)
    if pending or any(f.exception() is not None for f in done):
        m.requests.labels("unavailable").inc()
        m.rejections.labels("kafka_unavailable").inc()
        return _error(
            503, "unavailable", "Kafka did not confirm the events; retry them", RETRY_AFTER_UNAVAILABLE_S
        )
    return None


async def health(request: web.Request) -> web.Response:
    state = request.app[COLLECTOR]
    ready = state.sender.ready.is_set()
    body = {
        "status": "ok" if ready else "starting",
        "kafka_ready": ready,
        "pending_events": state.batcher.pending_events,
        "pending_bytes": state.batcher.pending_bytes,
    }
    return web.Response(status=200 if ready else 503, body=orjson.dumps(body), content_type=JSON)


async def metrics_page(request: web.Request) -> web.Response:
    state = request.app[COLLECTOR]
    state.metrics.pending_events.set(state.batcher.pending_events)
    state.metrics.pending_bytes.set(state.batcher.pending_bytes)
    return web.Response(body=state.metrics.exposition(), content_type="text/plain", charset="utf-8")


async def sdk(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "livecommerce.js", headers={"Content-Type": "text/javascript"})
