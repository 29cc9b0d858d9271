"""The collector app in this process against the real Kafka broker: what clients get back, and what
lands in Kafka."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from pipeline.collector.app import build_app
from pipeline.collector.metrics import CollectorMetrics
from pipeline.local.process import find_free_port
from pipeline.settings import Settings, Topics
from pipeline.topics import ensure_topics

pytestmark = pytest.mark.kafka
JS = Path(__file__).resolve().parents[1] / "js"  # tests/js


def now_ms() -> int:
    return int(time.time() * 1000)


def view(i: int, room: int, **extra) -> dict:
    return {"event_id": f"v{i}", "type": "view", "ts": now_ms(), "room_id": room, "creator_id": 1,
            "user_id": i, **extra}  # fmt: skip


@pytest.fixture
def settings(kafka_broker) -> Settings:
    tag = uuid.uuid4().hex[:8]
    topics = Topics(views=f"c{tag}.views", clicks=f"c{tag}.clicks", orders=f"c{tag}.orders")
    return Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        topics=topics,
        topic_partitions=3,
        app_id=f"c{tag}",
        collector_port=find_free_port(),
        collector_linger_ms=30,
    )


@asynccontextmanager
async def collector(settings: Settings, wait_ready: bool = True):
    metrics = CollectorMetrics()
    app = build_app(settings, metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", settings.collector_port)
    await site.start()
    base = f"http://127.0.0.1:{settings.collector_port}"
    async with aiohttp.ClientSession(base) as http:
        if wait_ready:
            for _ in range(100):
                async with http.get("/health") as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)
        try:
            yield http, metrics
        finally:
            await runner.cleanup()


async def read_topic(bootstrap: str, topic: str, events: int, timeout: float = 20) -> list:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    records, seen = [], 0
    try:
        deadline = time.monotonic() + timeout
        while seen < events and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=300)).values():
                records += batch
                seen += sum(len(orjson.loads(r.value)) for r in batch)
    finally:
        await consumer.stop()
    return records


async def test_accepted_events_reach_kafka_as_room_batches_keyed_by_room(settings):
    await ensure_topics(settings)
    async with collector(settings) as (http, metrics):
        uploads = [[view(10 * u + i + 1, room=100 + i % 2) for i in range(5)] for u in range(20)]
        bad = {
            "type": "view",
            "event_id": "bad-1",
            "ts": now_ms(),
            "room_id": 0,
            "creator_id": 1,
            "user_id": 1,
        }
        uploads[0].append(bad)

        async def send(events, compress):
            body = orjson.dumps(events)
            headers = {"Content-Type": "application/json"}
            if compress:
                body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
            async with http.post("/v1/events", data=body, headers=headers) as r:
                return r.status, await r.json()

        answers = await asyncio.gather(*(send(u, i % 2) for i, u in enumerate(uploads)))
        assert [s for s, _ in answers] == [200] * 20, answers[:2]
        first = answers[0][1]
        assert (first["accepted"], first["rejected"]) == (5, 1)
        assert first["results"][5] == {"status": "rejected", "reason": "out_of_range", "event_id": "bad-1",
                                       "message": first["results"][5]["message"]}  # fmt: skip
        text = metrics.exposition().decode()
        assert 'livecommerce_collector_events_total{outcome="accepted"} 100.0' in text
        assert 'livecommerce_collector_rejections_total{reason="out_of_range"} 1.0' in text
    records = await read_topic(settings.kafka_bootstrap_servers, settings.topics.views, 100)
    ids = [ev["event_id"] for r in records for ev in orjson.loads(r.value)]
    assert sorted(ids) == sorted(e["event_id"] for u in uploads for e in u[:5])
    assert len(records) < 20  # batched across uploads, not one message per upload
    for r in records:
        assert {ev["room_id"] for ev in orjson.loads(r.value)} == {int(r.key)}


async def test_admission_errors_are_json_without_internal_detail(settings):
    keyed = replace(
        settings,
        collector_app_keys=(("web", "k" * 20),),
        collector_rate_per_address=2,
        collector_max_body_bytes=2048,
        collector_cors_origins=("https://shop.example.com",),
    )
    await ensure_topics(settings)
    async with collector(keyed) as (http, _metrics):
        body = orjson.dumps([view(1, 5)])
        ok_headers = {"X-App-Key": "k" * 20, "Content-Type": "application/json"}
        async with http.post("/v1/events", data=body, headers={"Content-Type": "application/json"}) as r:
            assert r.status == 401 and (await r.json())["error"] == "unauthorized"
        async with http.post(
            "/v1/events", data=body, headers={**ok_headers, "Content-Type": "text/xml"}
        ) as r:
            assert r.status == 415
        async with http.post("/v1/events", data=b"[" + b" " * 4000 + b"]", headers=ok_headers) as r:
            assert r.status == 413 and (await r.json())["error"] == "body_too_large"
        statuses = []
        for _ in range(3):  # a burst of 2 x 2 per second per address; two were spent above
            async with http.post(
                "/v1/events", data=body, headers={**ok_headers, "Origin": "https://shop.example.com"}
            ) as r:
                statuses.append(r.status)
                assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
        assert statuses == [200, 200, 429] and int(r.headers["Retry-After"]) >= 1
        async with http.options("/v1/events", headers={"Origin": "https://evil.example.com"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
        async with http.options("/v1/events", headers={"Origin": "https://shop.example.com"}) as r:
            assert r.status == 204 and "X-App-Key" in r.headers["Access-Control-Allow-Headers"]
        await asyncio.sleep(1.5)
        async with http.post("/v1/events?app_key=" + "k" * 20, data=b"not json", headers=ok_headers) as r:
            answer = await r.json()
            assert r.status == 400 and answer["error"] == "not_json"
            assert "Traceback" not in answer["message"] and "pipeline" not in answer["message"]
        async with http.get("/nowhere") as r:
            assert r.status == 404 and (await r.json())["error"] == "not_found"


async def test_kafka_down_gives_503_with_retry_after_and_never_200(settings):
    down = replace(settings, kafka_bootstrap_servers=f"127.0.0.1:{find_free_port()}")
    async with collector(down, wait_ready=False) as (http, _metrics):
        async with http.get("/health") as r:
            assert r.status == 503
        async with http.post("/v1/events", json=[view(1, 5)]) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "2"


async def test_a_full_queue_answers_503_and_bad_input_is_still_a_200(settings):
    await ensure_topics(settings)
    small = replace(settings, collector_max_pending_events=3, collector_linger_ms=200)
    async with collector(small) as (http, metrics):
        first = asyncio.ensure_future(http.post("/v1/events", json=[view(i, 5) for i in range(1, 4)]))
        await asyncio.sleep(0.05)  # the first upload's 3 events linger: the queue is full
        async with http.post("/v1/events", json=[view(9, 5)]) as r:
            assert r.status == 503 and r.headers["Retry-After"] == "1"
        async with http.post("/v1/events", json=[{"type": "view"}]) as r:  # nothing to queue: a 200
            assert r.status == 200 and (await r.json())["results"][0]["reason"] == "missing_field"
        response = await first
        assert response.status == 200 and (await response.json())["accepted"] == 3
        response.release()
        assert (
            'livecommerce_collector_rejections_total{reason="queue_full"} 1.0'
            in metrics.exposition().decode()
        )


async def test_js_sdk_sends_through_the_real_collector(settings):
    await ensure_topics(settings)
    async with collector(settings) as (_http, _metrics):
        proc = await asyncio.create_subprocess_exec(
            "node", str(JS / "send_with_sdk.js"), f"http://127.0.0.1:{settings.collector_port}", "30",
            "7300000000000000002", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["rejected"] == ["missing_field"] and report["left"] == 0
    records = await read_topic(settings.kafka_bootstrap_servers, settings.topics.views, 30)
    events = [ev for r in records for ev in orjson.loads(r.value)]
    assert sorted(e["event_id"] for e in events) == sorted(report["ids"])
    assert {e["room_id"] for e in events} == {7300000000000000002}  # a 64-bit id, exact


def test_python_client_against_the_real_collector(settings):
    from pipeline.collector.client import CollectorClient, UploadRefused

    async def main():
        await ensure_topics(settings)
        async with collector(settings):
            client = CollectorClient(f"http://127.0.0.1:{settings.collector_port}")
            order = client.event("order", room_id=3, creator_id=1, user_id=2, order_id="o-1", product_id=4,
                                 amount_fen=9900)  # fmt: skip
            big = [
                client.event("view", room_id=3, creator_id=1, user_id=i + 1, category="x" * 40)
                for i in range(60)
            ]
            results = await asyncio.to_thread(lambda: (client.send([order]), client.send(big)))
            with pytest.raises(UploadRefused) as err:
                await asyncio.to_thread(client.send, [])
            return order, results, err.value

    order, (r1, r2), refused = asyncio.run(main())
    assert (r1.accepted, r1.rejected, r2.accepted) == (1, 0, 60)  # the second one went gzip-compressed
    assert (refused.status, refused.error) == (400, "empty_batch")
    records = asyncio.run(read_topic(settings.kafka_bootstrap_servers, settings.topics.orders, 1))
    assert orjson.loads(records[0].value) == [order | {"quantity": 1}]
