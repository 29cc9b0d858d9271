"""Hostile client clocks and keys, and quiet partitions, against the room and creator stages as plain code.

Event time is bounded by a trusted clock (the broker's append time, or the worker's clock); one client's
clock must not make other rooms' on-time events late; a message without its room as key is rejected;
an idle input partition follows the trusted clock so creator windows become final.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import orjson

from pipeline.events import contract as c
from pipeline.runtime import LOG_APPEND_TIME, trusted_time_ms
from pipeline.settings import Settings
from pipeline.stages.creators import CreatorPartition
from pipeline.stages.rooms import IngestProcessor, RoomPartition
from pipeline.windows.timing import NO_WATERMARK

SETTINGS = Settings.from_env({"TOPIC_PARTITIONS": "2"})  # window 60 s, lateness 120 s, skew 60 s, idle 60 s
T0 = 1_750_000_000_020  # not on a window boundary
WINDOW = SETTINGS.window_ms


def view(i: int, ts: int, room: int = 1, creator: int = 100) -> dict:
    return {
        "event_id": f"v{i}",
        "type": "view",
        "ts": ts,
        "room_id": room,
        "creator_id": creator,
        "user_id": i + 1,
    }


def send(part: RoomPartition, offset: int, ev: dict, now_ms: int, key: bytes | None = b"auto"):
    key = str(ev["room_id"]).encode() if key == b"auto" else key
    return part.process(offset, key, orjson.dumps(ev), now_ms)


# --- the trusted clock of a message -----------------------------------------------------------------------


def test_the_broker_append_time_is_trusted_as_is_so_replays_classify_alike():
    msg = SimpleNamespace(timestamp=T0 / 1000, timestamp_type=LOG_APPEND_TIME)
    assert trusted_time_ms(msg) == T0  # long ago: a replay uses the same clock as the first pass


def test_a_producer_timestamp_is_never_later_than_the_worker_clock(monkeypatch):
    monkeypatch.setattr("pipeline.runtime.time.time", lambda: T0 / 1000)
    year_ahead = SimpleNamespace(timestamp=(T0 + 365 * 86_400_000) / 1000, timestamp_type=0)
    assert trusted_time_ms(year_ahead) == T0
    behind = SimpleNamespace(timestamp=(T0 - 5_000) / 1000, timestamp_type=0)
    assert trusted_time_ms(behind) == T0 - 5_000
    assert trusted_time_ms(SimpleNamespace(timestamp=None, timestamp_type=None)) == T0


# --- future skew ------------------------------------------------------------------------------------------


def test_the_default_skew_is_within_the_lateness():
    assert SETTINGS.max_clock_skew_ms == 60_000 <= SETTINGS.allowed_lateness_ms


def test_a_fast_phone_is_a_dead_letter_and_leaves_other_rooms_on_time():
    part = IngestProcessor(SETTINGS).partition("live.views", 0)
    now = T0
    assert send(part, 0, view(0, now - 1_000, room=2), now).accepted
    fast = send(part, 1, view(1, now + 240_000, room=1), now)  # 4 minutes fast: the phone
    assert [r.reason for r in fast.rejections] == [c.TS_IN_FUTURE]
    assert part.watermark.max_event_ms == now - 1_000
    # Just within the skew: accepted, and the watermark stays behind the trusted clock.
    assert send(part, 2, view(2, now + 60_000, room=1), now).accepted
    assert part.watermark.value <= now
    # Another room's event that is 50 s old (on time by the 120 s lateness) is still on time.
    other = send(part, 3, view(3, now - 50_000, room=3), now + 1_000)
    assert other.accepted and not other.late


def test_a_producer_a_year_ahead_cannot_move_the_watermark(monkeypatch):
    monkeypatch.setattr("pipeline.runtime.time.time", lambda: T0 / 1000)
    part = IngestProcessor(SETTINGS).partition("live.orders", 1)
    year = 365 * 86_400_000
    order = {**view(0, T0 + year), "type": "order", "order_id": "o", "product_id": 1, "amount_fen": 100}
    out = send(
        part, 0, order, trusted_time_ms(SimpleNamespace(timestamp=(T0 + year) / 1000, timestamp_type=0))
    )
    # The record timestamp is the producer's (a year ahead), but the trusted clock is the worker's.
    assert [r.reason for r in out.rejections] == [c.TS_IN_FUTURE]
    assert part.watermark.max_event_ms == NO_WATERMARK


def test_a_persisted_watermark_ahead_of_the_clock_is_corrected_at_start(caplog):
    year = 365 * 86_400_000
    old = IngestProcessor(SETTINGS).partition("live.views", 0)
    assert send(old, 0, view(0, T0 + year), T0 + year).accepted  # written before time was bounded
    state = old.checkpoint().state
    restored = IngestProcessor(SETTINGS).partition("live.views", 0)
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.rooms"):
        restored.restore(state.items(), now_ms=T0)
    assert restored.watermark.max_event_ms == T0 + SETTINGS.max_clock_skew_ms
    assert "live.views/0" in caplog.text and "corrected" in caplog.text
    on_time = send(restored, 1, view(1, T0 - 30_000, room=5), T0)
    assert on_time.accepted and not on_time.late
    # The correction is made durable with the next checkpoint.
    meta = [v for k, v in restored.checkpoint().state.items() if k.startswith(b"m|")]
    assert orjson.loads(meta[0])[0] == T0 + SETTINGS.max_clock_skew_ms


def test_a_persisted_creator_source_watermark_ahead_of_the_clock_is_corrected_at_start(caplog):
    year = 365 * 86_400_000
    room = IngestProcessor(SETTINGS).partition("live.views", 0)
    assert send(room, 0, view(0, T0 + year), T0 + year).accepted  # written before time was bounded
    creator = CreatorPartition(0, SETTINGS.window_ms, expected_sources=1)
    for value in room.checkpoint().forwards.get(0, []):
        creator.apply(value)
    assert max(creator.source_watermarks.values()) > T0 + year // 2
    limit = T0 + SETTINGS.max_clock_skew_ms - SETTINGS.allowed_lateness_ms
    restored = CreatorPartition(0, SETTINGS.window_ms, expected_sources=1)
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.creators"):
        restored.restore(creator.checkpoint().state.items(), max_watermark_ms=limit)
    assert restored.source_watermarks == {source: limit for source in creator.source_watermarks}
    assert "corrected" in caplog.text
    meta = [v for k, v in restored.checkpoint().state.items() if k.startswith(b"m|")]
    assert orjson.loads(meta[0]) == restored.source_watermarks  # made durable with the next checkpoint


def test_a_watermark_behind_the_clock_is_restored_unchanged():
    old = IngestProcessor(SETTINGS).partition("live.views", 0)
    send(old, 0, view(0, T0), T0)
    restored = IngestProcessor(SETTINGS).partition("live.views", 0)
    restored.restore(old.checkpoint().state.items(), now_ms=T0 + 3_600_000)  # a restart an hour later
    assert restored.watermark.max_event_ms == T0


# --- keys -------------------------------------------------------------------------------------------------


def test_a_single_event_without_key_is_rejected_as_bad_key():
    part = IngestProcessor(SETTINGS).partition("live.views", 0)
    for offset, key in enumerate([None, b""]):
        out = send(part, offset, view(offset, T0), T0, key=key)
        assert not out.accepted and [r.reason for r in out.rejections] == [c.BAD_KEY]
        assert "key is missing" in out.rejections[0].message
    assert part.watermark.max_event_ms == NO_WATERMARK
    assert part.checkpoint().window_rows == []  # nothing written for the room on this partition


def test_an_event_keyed_by_another_room_is_rejected_as_key_mismatch():
    part = IngestProcessor(SETTINGS).partition("live.views", 0)
    out = send(part, 0, view(0, T0, room=3), T0, key=b"4")
    assert [r.reason for r in out.rejections] == [c.KEY_MISMATCH]


# --- idle partitions ---------------------------------------------------------------------------------------


LATE: list[int] = []  # what the creator partitions of `run_hours` dropped as late


def run_hours(hours: int, advance_idle: bool) -> tuple[CreatorPartition, list[int], RoomPartition]:
    """One busy partition (views/0) and three quiet ones (views/1 and clicks/0, clicks/1, which never see
    an event), two creator partitions; 10 s steps of simulated time. Returns creator partition 0, its
    open windows after each hour, and a quiet room partition."""
    settings = Settings.from_env({"TOPIC_PARTITIONS": "2", "TOPIC_ORDERS": "unused.orders"})
    rooms = IngestProcessor(settings, creator_partitions=2)
    LATE.clear()
    sources = [("live.views", 0), ("live.views", 1), ("live.clicks", 0), ("live.clicks", 1)]
    creators = {
        q: CreatorPartition(q, settings.window_ms, expected_sources=len(sources), on_late=LATE.append)
        for q in (0, 1)
    }
    quiet = rooms.partition("live.views", 1)
    send(quiet, 0, view(0, T0, room=3, creator=101), T0)  # one event, then silence
    busy = rooms.partition("live.views", 0)
    open_per_hour = []
    for step in range(hours * 360):
        now = T0 + step * 10_000
        send(busy, step, view(step, now - 500, room=2, creator=100 + step % 2), now)
        for tp in sources:
            part = rooms.partition(*tp)
            if advance_idle and part is not busy:
                part.advance_idle(now)  # what the worker's timer does once nothing is pending
            for q, msgs in part.checkpoint().forwards.items():
                for msg in msgs:
                    creators[q].apply(msg)
        for creator in creators.values():
            creator.checkpoint()
        if step % 360 == 359:
            open_per_hour.append(len(creators[0].windows.windows))
    return creators[0], open_per_hour, quiet


def test_without_idle_advance_creator_windows_stay_open_for_hours():
    creator, open_per_hour, _ = run_hours(3, advance_idle=False)
    assert creator.watermark == NO_WATERMARK  # clicks partitions were never heard from
    assert open_per_hour[-1] > open_per_hour[0] >= 60  # one more open window every minute


def test_idle_partitions_follow_the_trusted_clock_so_creator_windows_become_final():
    creator, open_per_hour, quiet = run_hours(3, advance_idle=True)
    end = T0 + (3 * 360 - 1) * 10_000
    idle, lateness = SETTINGS.idle_partition_ms, SETTINGS.allowed_lateness_ms
    assert quiet.watermark.value == end - idle - lateness
    # The creator watermark is the slowest source: an idle one, idle + lateness behind the clock (heard
    # once per window: heartbeats go out when a source's watermark enters a new window).
    assert 0 <= end - idle - lateness - creator.watermark < WINDOW
    # State stays bounded: only windows within idle + lateness (+ the current window) are open.
    assert max(open_per_hour) <= (idle + lateness) // WINDOW + 2
    assert LATE == []  # no creator window lost an event
    assert quiet.windows.state_size()[0] == 0  # the quiet room's own window was final long ago


def test_after_an_idle_advance_only_events_behind_it_are_late():
    part = IngestProcessor(SETTINGS).partition("live.views", 1)
    assert part.advance_idle(T0) and not part.advance_idle(T0)  # moves once per clock value
    floor = T0 - SETTINGS.idle_partition_ms - SETTINGS.allowed_lateness_ms
    assert part.watermark.value == floor
    # A message appended after the advance: an event as old as idle + lateness minus a window is on time.
    recent = send(part, 0, view(0, floor + WINDOW, room=1), T0 + 1_000)
    assert recent.accepted and not recent.late
    stale = send(part, 1, view(1, floor - WINDOW, room=1), T0 + 1_000)
    assert stale.late and not stale.accepted
    # A busy partition is never pulled forward: its own events are ahead of the idle floor.
    busy = IngestProcessor(SETTINGS).partition("live.views", 0)
    send(busy, 0, view(0, T0, room=2), T0)
    assert not busy.advance_idle(T0 + 1_000)


def test_an_idle_advance_is_persisted_and_sends_heartbeats():
    part = IngestProcessor(SETTINGS, creator_partitions=2).partition("live.clicks", 0)
    part.advance_idle(T0)
    cp = part.checkpoint()
    assert sorted(cp.forwards) == [0, 1]  # a heartbeat to every creator partition
    restored = IngestProcessor(SETTINGS).partition("live.clicks", 0)
    restored.restore(cp.state.items(), now_ms=T0)
    assert restored.watermark.max_event_ms == T0 - SETTINGS.idle_partition_ms
