"""Tumbling event-time windows per key (room or creator), as plain code.

Each window keeps sums and counts plus the set of distinct users per funnel step, because the
distinct counts (viewers, clickers, buyers) must be exact within a window and do not add up across
windows. Every metric only grows while a window is open, so the rows this module emits are
*absolute, monotonic* values: writing a window twice, or an older value after a newer one, is
harmless when the store keeps the maximum per column (see schemas/clickhouse). That is what makes
the sink idempotent and lets different partitions own different columns of one room's row.

Not thread-safe: one aggregator per partition, driven by a single task.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.windows.timing import is_final


class Window:
    """One window of one key. `through` maps a source (an input partition) to the last position from
    it already applied, so that replaying a source after a crash skips what the state already holds."""

    __slots__ = (
        "buyers",
        "clickers",
        "clicks",
        "creator_id",
        "dirty",
        "gmv_fen",
        "orders",
        "refund_fen",
        "refunds",
        "through",
        "viewers",
        "views",
    )

    def __init__(self, creator_id: int):
        self.creator_id = creator_id
        self.views = self.clicks = self.orders = self.refunds = 0
        self.gmv_fen = self.refund_fen = 0
        self.viewers: set[int] = set()
        self.clickers: set[int] = set()
        self.buyers: set[int] = set()
        self.through: dict[str, int] = {}
        self.dirty = True

    def metrics(self) -> tuple[int, ...]:
        return (
            self.views,
            len(self.viewers),
            self.clicks,
            len(self.clickers),
            self.orders,
            len(self.buyers),
            self.gmv_fen,
            self.refunds,
            self.refund_fen,
        )

    def distinct_users(self) -> int:
        return len(self.viewers) + len(self.clickers) + len(self.buyers)


# A partial: what one input message adds to one window of one room. A plain list, indexed by the names
# below: it travels to the creator stage as a JSON array as it is, and the names cost about +0.5% of both
# stages' instructions against literal indices (load_tests/RESULTS.md, "Named partials"). User
# collections are sets while built, lists once through JSON. The room stage builds partials while it
# de-duplicates, applies them to its own windows, and forwards them to the creator stage: a message of
# 60-100 events of one room usually becomes one partial, so nothing downstream touches single events.
(START, ROOM, CREATOR, VIEWS, CLICKS, ORDERS, GMV_FEN, REFUNDS, REFUND_FEN,
 VIEWERS, CLICKERS, BUYERS) = range(12)  # fmt: skip
ROOM_KEY, CREATOR_KEY = ROOM, CREATOR  # where the key of each stage's windows is in a partial


def new_partial(start: int, room_id: int, creator_id: int) -> list:
    return [start, room_id, creator_id, 0, 0, 0, 0, 0, 0, set(), set(), set()]


def count_event(p: list, ev: dict) -> None:
    """Count one validated event into partial `p`: the one place an event becomes partial counts."""
    kind = ev["type"]
    if kind == "view":
        p[VIEWS] += 1
        p[VIEWERS].add(ev["user_id"])
    elif kind == "click":
        p[CLICKS] += 1
        p[CLICKERS].add(ev["user_id"])
    elif kind == "order":
        p[ORDERS] += 1
        p[GMV_FEN] += ev["amount_fen"]
        p[BUYERS].add(ev["user_id"])
    else:  # refund: validated upstream, the only other type
        p[REFUNDS] += 1
        p[REFUND_FEN] += ev["amount_fen"]


def partial_events(p: list) -> int:
    """How many events a partial holds."""
    return p[VIEWS] + p[CLICKS] + p[ORDERS] + p[REFUNDS]


class WindowAggregator:
    """Open windows of one partition, keyed by (window_start_ms, key).

    Rows are `(window_start_ms, key, creator_id, *pipeline.rows.METRIC_COLUMNS)`; for creator windows key and
    creator_id are the same id.
    """

    def __init__(self, size_ms: int):
        self.size_ms = size_ms
        self.windows: dict[tuple[int, int], Window] = {}

    def add_partials(self, partials: Iterable[list], key_index: int, source: str, position: int) -> int:
        """Apply partials that came from `source` at `position`, to the windows of the key at
        `key_index` (ROOM_KEY or CREATOR_KEY). A window that already applied this source up to
        `position` is skipped: that is a replay. Returns the number of events applied."""
        windows = self.windows
        skip: dict[tuple[int, int], bool] = {}
        applied = 0
        for p in partials:
            wkey = (p[START], p[key_index])
            window = windows.get(wkey)
            if window is None:
                window = windows[wkey] = Window(p[CREATOR])
            done = skip.get(wkey)
            if done is None:
                done = skip[wkey] = window.through.get(source, -1) >= position
            if done:
                continue
            window.views += p[VIEWS]
            window.clicks += p[CLICKS]
            window.orders += p[ORDERS]
            window.gmv_fen += p[GMV_FEN]
            window.refunds += p[REFUNDS]
            window.refund_fen += p[REFUND_FEN]
            window.viewers.update(p[VIEWERS])
            window.clickers.update(p[CLICKERS])
            window.buyers.update(p[BUYERS])
            window.dirty = True
            applied += p[VIEWS] + p[CLICKS] + p[ORDERS] + p[REFUNDS]
        for wkey, done in skip.items():
            if not done:
                windows[wkey].through[source] = position
        return applied

    def take_changed(self) -> list[tuple]:
        """Rows of every window changed since the last call; marks them clean."""
        rows = []
        for (start, key), window in self.windows.items():
            if window.dirty:
                window.dirty = False
                rows.append((start, key, window.creator_id, *window.metrics()))
        return rows

    def pop_final(self, watermark_ms: int) -> list[tuple]:
        """Rows of every window that ended at or before the watermark, and forget those windows.

        The caller writes these rows as the windows' final values; memory then holds only open windows.
        """
        size = self.size_ms
        final = [wkey for wkey in self.windows if is_final(wkey[0], size, watermark_ms)]
        rows = []
        for wkey in final:
            window = self.windows.pop(wkey)
            rows.append((wkey[0], wkey[1], window.creator_id, *window.metrics()))
        return rows

    def state_size(self) -> tuple[int, int]:
        """(open windows, distinct user ids held) — what the state-size metric reports."""
        return len(self.windows), sum(w.distinct_users() for w in self.windows.values())


__all__ = [
    "CREATOR_KEY",
    "ROOM_KEY",
    "Window",
    "WindowAggregator",
    "new_partial",
    "partial_events",
]
