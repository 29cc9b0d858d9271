"""Pure-code parts of the collector: upload checks, the room batcher, app keys and rate limits."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
from pathlib import Path

import orjson
import pytest

from pipeline.collector import intake
from pipeline.collector.batcher import RoomBatcher
from pipeline.collector.limits import ANONYMOUS, AppKeys, CollectorConfigError, TokenBuckets, check_startup
from pipeline.events import contract as c
from pipeline.events.decode import allowed_types_for_topic, decode_message
from pipeline.settings import Settings, SettingsError, Topics

NOW = 1_760_000_000_000
TOPIC_OF = intake.topic_by_type(Topics())


def view(i: int = 1, room: int = 7, **extra) -> dict:
    return {
        "event_id": f"e{i}",
        "type": "view",
        "ts": NOW,
        "room_id": room,
        "creator_id": 3,
        "user_id": i,
        **extra,
    }


def test_check_events_gives_the_contract_reasons_and_topics():
    order = {**view(2), "type": "order", "order_id": "o1", "product_id": 5, "amount_fen": 990}
    items = [
        view(1),
        order,
        {**view(3), "type": "click"},  # no product_id
        {**view(4), "type": "like"},
        "not an event",
        {**view(5), "ts": NOW + 3_600_000},
        {**view(6), "pad": "x" * 70_000},
    ]
    checked = intake.check_events(items, TOPIC_OF, NOW, 300_000)
    assert [r["status"] for r in checked.results] == ["accepted"] * 2 + ["rejected"] * 5
    assert checked.rejected_reasons == [
        c.MISSING_FIELD, c.UNKNOWN_EVENT_TYPE, c.NOT_OBJECT, c.TS_IN_FUTURE, c.EVENT_TOO_LARGE
    ]  # fmt: skip
    assert checked.results[2]["event_id"] == "e3" and checked.results[2]["message"]
    assert [(t, r) for t, r, _ in checked.accepted] == [("live.views", 7), ("live.orders", 7)]
    assert orjson.loads(checked.accepted[1][2])["quantity"] == 1  # the contract's default is in the bytes


def test_what_the_collector_accepts_the_worker_accepts_in_a_room_batch():
    events = [view(i, room=9) for i in range(1, 6)]
    checked = intake.check_events(events, TOPIC_OF, NOW, 300_000)
    value = b"[" + b",".join(p for _, _, p in checked.accepted) + b"]"
    decoded = decode_message(value, b"9", allowed_types_for_topic("live.views", Topics()), NOW, 300_000)
    assert len(decoded.events) == 5 and not decoded.rejections


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{", 400, intake.NOT_JSON),
        (b"\xff\xfe", 400, intake.NOT_UTF8),
        (b'{"type": "view"}', 400, intake.NOT_ARRAY),
        (b"[]", 400, intake.EMPTY_BATCH),
        (orjson.dumps([{}] * 11), 413, intake.TOO_MANY_EVENTS),
    ],
)
def test_parse_array_refuses_whole_uploads(body, status, code):
    with pytest.raises(intake.UploadError) as err:
        intake.parse_array(body, max_events=10)
    assert (err.value.status, err.value.code) == (status, code)


def test_gunzip_is_bounded_and_strict():
    body = orjson.dumps([view(1)])
    assert intake.gunzip(gzip.compress(body), 1000) == body
    bomb = gzip.compress(b" " * 10_000_000)
    with pytest.raises(intake.UploadError) as err:
        intake.gunzip(bomb, 1_000_000)
    assert err.value.status == 413
    for bad in (b"not gzip", gzip.compress(body)[:-5], gzip.compress(body) + b"junk"):
        with pytest.raises(intake.UploadError) as err:
            intake.gunzip(bad, 1000)
        assert err.value.code == intake.BAD_GZIP


class FakeKafka:
    def __init__(self):
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    async def send(self, topic, key, value):
        return asyncio.ensure_future(self._deliver(topic, key, value))

    async def _deliver(self, topic, key, value):
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key, value))


def batcher(kafka, **kw) -> RoomBatcher:
    options = {"linger_s": 0.02, "max_message_bytes": 2000, "max_pending_events": 1000,
               "max_pending_bytes": 100_000} | kw  # fmt: skip
    return RoomBatcher(kafka.send, **options)


async def test_events_are_batched_per_topic_and_room_after_the_linger():
    kafka = FakeKafka()
    b = batcher(kafka)
    futures = [b.add("v", room, orjson.dumps(view(i, room))) for i, room in enumerate((1, 2, 1, 1, 2), 1)]
    futures.append(b.add("c", 1, b'{"x":1}'))
    assert len(set(futures)) == 3 and b.pending_events == 6
    await asyncio.sleep(0)
    assert kafka.sent == []  # lingering
    await asyncio.wait_for(asyncio.gather(*futures), 1)
    by_slot = {(t, k): orjson.loads(v) for t, k, v in kafka.sent}
    assert {s: len(v) for s, v in by_slot.items()} == {("v", b"1"): 3, ("v", b"2"): 2, ("c", b"1"): 1}
    assert [e["event_id"] for e in by_slot[("v", b"1")]] == ["e1", "e3", "e4"]  # order kept
    assert (b.pending_events, b.pending_bytes) == (0, 0)


async def test_a_batch_is_produced_before_it_would_exceed_the_message_bound():
    kafka = FakeKafka()
    b = batcher(kafka, max_message_bytes=500, linger_s=5)
    part = orjson.dumps(view(1, pad="x" * 100))
    futures = [b.add("v", 1, part) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert kafka.sent and all(len(v) <= 500 for _, _, v in kafka.sent)
    assert futures[0].done() and not futures[-1].done()  # the last batch still lingers
    await b.close()
    assert sum(len(orjson.loads(v)) for _, _, v in kafka.sent) == 10


async def test_a_failed_produce_fails_every_waiting_upload_and_frees_the_queue():
    kafka = FakeKafka()
    kafka.fail = True
    b = batcher(kafka, linger_s=0)
    f1, f2 = b.add("v", 1, b"{}"), b.add("v", 1, b"{}")
    assert f1 is f2
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(f1, 1)
    assert b.pending_events == 0


async def test_has_room_bounds_the_pending_events_and_bytes():
    kafka = FakeKafka()
    kafka.gate.clear()  # Kafka does not answer
    b = batcher(kafka, linger_s=0, max_pending_events=3, max_pending_bytes=1000)
    for _ in range(3):
        b.add("v", 1, b"{}")
    await asyncio.sleep(0.01)
    assert b.pending_events == 3 and not b.has_room(1, 3) and b.has_room(0, 0)
    kafka.gate.set()
    await b.close()
    assert b.has_room(3, 900) and not b.has_room(1, 2000)


def test_app_keys_map_to_app_names_and_refuse_others():
    keys = AppKeys((("web", "k" * 16), ("orders", "o" * 20)))
    assert keys.app_for("k" * 16) == "web" and keys.app_for("o" * 20) == "orders"
    assert keys.app_for("k" * 15) is None and keys.app_for(None) is None and keys.app_for("é") is None
    assert AppKeys(()).app_for(None) == ANONYMOUS


def test_app_keys_setting_parses_and_never_echoes_a_key():
    s = Settings.from_env({"COLLECTOR_APP_KEYS": "web=abcdefghijklmnop, qrstuvwxyz0123456789"})
    assert s.collector_app_keys == (("web", "abcdefghijklmnop"), ("app2", "qrstuvwxyz0123456789"))
    assert "abcdefghijklmnop" not in repr(s)
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"COLLECTOR_APP_KEYS": "web=short-secret"})
    assert "short-secret" not in str(err.value)
    with pytest.raises(SettingsError):
        Settings.from_env({"COLLECTOR_CORS_ORIGINS": "https://shop.example.com/path"})


def test_anonymous_uploads_only_on_loopback():
    check_startup(Settings())  # 127.0.0.1, no keys
    check_startup(Settings(collector_host="::1"))
    with pytest.raises(CollectorConfigError, match="COLLECTOR_APP_KEYS"):
        check_startup(Settings(collector_host="0.0.0.0"))
    check_startup(Settings(collector_host="0.0.0.0", collector_app_keys=(("web", "k" * 16),)))


def test_token_buckets_allow_a_burst_then_the_rate():
    now = [0.0]
    buckets = TokenBuckets(rate=10, burst=20, clock=lambda: now[0])
    assert all(buckets.take("a") == 0 for _ in range(20))
    wait = buckets.take("a")
    assert wait == pytest.approx(0.1)
    assert buckets.take("b") == 0  # names are independent
    now[0] += 0.5
    assert sum(buckets.take("a") == 0 for _ in range(10)) == 5
    assert TokenBuckets(rate=0, burst=0).take("a") == 0  # 0 disables


def test_token_buckets_forget_idle_names():
    now = [0.0]
    buckets = TokenBuckets(rate=10, burst=10, clock=lambda: now[0], max_names=100)
    for i in range(100):
        buckets.take(str(i))
    now[0] += 5
    buckets.take("new")
    assert len(buckets) == 1


def test_js_sdk_unit_tests_pass_under_node():
    """tests/js/livecommerce.test.js: batching, retries with the same ids, page hide, 64-bit ids."""
    js = Path(__file__).resolve().parents[2] / "js"  # tests/js
    result = subprocess.run(
        ["node", "--test", str(js)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_event_loop_choice():
    from pipeline.collector.cli import event_loop

    assert event_loop("asyncio") is None  # aiohttp's default loop
    loop = event_loop("auto")  # uvloop when installed (a pinned dependency), else the default
    try:
        pytest.importorskip("uvloop")
        assert type(loop).__module__.startswith("uvloop")
    finally:
        if loop is not None:
            loop.close()
