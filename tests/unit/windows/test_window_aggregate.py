import itertools

from pipeline.rows import METRIC_COLUMNS
from pipeline.windows.aggregate import CREATOR_KEY, ROOM_KEY, WindowAggregator, count_event, new_partial
from pipeline.windows.timing import window_start

W = 60_000
POS = itertools.count()


def ev(kind, ts, user, room=7, creator=70, amount=0):
    e = {"type": kind, "ts": ts, "room_id": room, "creator_id": creator, "user_id": user}
    if amount:
        e["amount_fen"] = amount
    return e


def add_events(agg, events, key_field, source, position):
    """Apply events as the room stage does: as the partials they make, one per (window, room, creator)."""
    partials = {}
    for e in events:
        k = (window_start(e["ts"], agg.size_ms), e["room_id"], e["creator_id"])
        count_event(partials.get(k) or partials.setdefault(k, new_partial(*k)), e)
    key = ROOM_KEY if key_field == "room_id" else CREATOR_KEY
    return agg.add_partials(partials.values(), key, source, position)


def metrics(row):
    return dict(zip(METRIC_COLUMNS, row[3:], strict=True))


def test_metrics_follow_the_domain_definitions():
    agg = WindowAggregator(W)
    add_events(
        agg,
        [
            ev("view", 1_000, 1),
            ev("view", 2_000, 1),  # same viewer again: a view, not a new viewer
            ev("view", 3_000, 2),
            ev("click", 4_000, 1),
            ev("click", 4_500, 1),
            ev("order", 5_000, 1, amount=9_900),
            ev("order", 6_000, 1, amount=100),
            ev("refund", 7_000, 1, amount=100),  # refunds are not netted out of GMV
        ],
        "room_id",
        "src",
        next(POS),
    )
    [row] = agg.take_changed()
    assert row[:3] == (0, 7, 70)
    assert metrics(row) == {
        "views": 3, "viewers": 2, "clicks": 2, "clickers": 1, "orders": 2, "buyers": 1,
        "gmv_fen": 10_000, "refunds": 1, "refund_fen": 100,
    }  # fmt: skip


def test_windows_are_tumbling_and_keyed():
    agg = WindowAggregator(W)
    add_events(
        agg,
        [ev("view", 59_999, 1), ev("view", 60_000, 1), ev("view", 60_001, 2, room=8)],
        "room_id",
        "src",
        next(POS),
    )
    rows = sorted(agg.take_changed())
    assert [(r[0], r[1], r[3]) for r in rows] == [(0, 7, 1), (60_000, 7, 1), (60_000, 8, 1)]


def test_creator_key_merges_rooms_and_counts_users_once():
    agg = WindowAggregator(W)
    add_events(
        agg,
        [ev("view", 1, 1, room=1), ev("view", 2, 1, room=2), ev("view", 3, 2, room=2)],
        "creator_id",
        "src",
        1,
    )
    [row] = agg.take_changed()
    assert row[1] == 70 and metrics(row)["views"] == 3 and metrics(row)["viewers"] == 2


def test_only_changed_windows_are_emitted_again():
    agg = WindowAggregator(W)
    add_events(agg, [ev("view", 1, 1), ev("view", 61_000, 1)], "room_id", "src", next(POS))
    assert len(agg.take_changed()) == 2
    assert agg.take_changed() == []
    add_events(agg, [ev("view", 61_001, 3)], "room_id", "src", next(POS))
    [row] = agg.take_changed()
    assert row[0] == 60_000 and metrics(row)["viewers"] == 2


def test_final_windows_are_emitted_once_and_dropped():
    agg = WindowAggregator(W)
    add_events(agg, [ev("view", 1, 1), ev("view", 61_000, 1)], "room_id", "src", next(POS))
    assert agg.pop_final(59_999) == []
    [final] = agg.pop_final(60_000)
    assert final[0] == 0
    assert agg.state_size() == (1, 1)
    assert [r[0] for r in agg.take_changed()] == [60_000]


def test_replaying_a_position_already_applied_changes_nothing():
    agg = WindowAggregator(W)
    batch = [ev("view", 1, 1), ev("view", 2, 2), ev("view", 61_000, 3)]
    assert add_events(agg, batch, "room_id", "live.views/0", 10) == 3
    before = sorted(agg.take_changed())
    # The same message again (a replay after a crash), then an older one: both skipped.
    assert add_events(agg, batch, "room_id", "live.views/0", 10) == 0
    assert add_events(agg, batch, "room_id", "live.views/0", 9) == 0
    assert agg.take_changed() == []
    # Another source, or a later position, is applied.
    assert add_events(agg, [ev("view", 3, 4)], "room_id", "live.views/1", 10) == 1
    assert add_events(agg, [ev("view", 4, 5)], "room_id", "live.views/0", 11) == 1
    [row] = agg.take_changed()
    assert row[0] == 0 and metrics(row)["viewers"] == before[0][4] + 2


def partial(start, room, creator, views=0, clicks=0, orders=0, gmv=0, refunds=0, refund_fen=0,
            viewers=(), clickers=(), buyers=()):  # fmt: skip
    return [start, room, creator, views, clicks, orders, gmv, refunds, refund_fen,
            set(viewers), set(clickers), set(buyers)]  # fmt: skip


def test_partials_add_up_like_the_events_they_summarise():
    events = [
        ev("view", 1_000, 1),
        ev("view", 2_000, 1),
        ev("click", 3_000, 1),
        ev("order", 5_000, 2, amount=900),
        ev("refund", 6_000, 2, amount=900),
        ev("view", 61_000, 3),
    ]
    by_events = WindowAggregator(W)
    add_events(by_events, events, "room_id", "live.views/0", 1)
    by_partials = WindowAggregator(W)
    parts = [
        partial(
            0,
            7,
            70,
            views=2,
            clicks=1,
            orders=1,
            gmv=900,
            refunds=1,
            refund_fen=900,
            viewers=[1],
            clickers=[1],
            buyers=[2],
        ),
        partial(60_000, 7, 70, views=1, viewers=[3]),
    ]
    assert by_partials.add_partials(parts, ROOM_KEY, "live.views/0", 1) == len(events)
    assert sorted(by_partials.take_changed()) == sorted(by_events.take_changed())


def test_partials_keyed_by_creator_merge_rooms_and_users():
    agg = WindowAggregator(W)
    agg.add_partials([partial(0, 7, 70, views=2, viewers=[1, 2])], CREATOR_KEY, "live.views/0", 5)
    agg.add_partials([partial(0, 8, 70, views=2, viewers=[2, 3])], CREATOR_KEY, "live.views/1", 9)
    [row] = agg.take_changed()
    assert row[:3] == (0, 70, 70)
    assert metrics(row)["views"] == 4 and metrics(row)["viewers"] == 3  # user 2 once


def test_replaying_a_partial_already_applied_changes_nothing():
    agg = WindowAggregator(W)
    parts = [partial(0, 7, 70, views=1, viewers=[1]), partial(0, 7, 70, views=1, viewers=[2])]
    assert agg.add_partials(parts, ROOM_KEY, "live.views/0", 10) == 2  # one offset, two pieces
    assert agg.add_partials(parts, ROOM_KEY, "live.views/0", 10) == 0
    assert agg.add_partials(parts, ROOM_KEY, "live.views/0", 3) == 0
    assert agg.add_partials(parts[:1], ROOM_KEY, "live.views/0", 11) == 1
    [row] = agg.take_changed()
    assert metrics(row)["views"] == 3 and metrics(row)["viewers"] == 2
