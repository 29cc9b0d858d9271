"""Reconciliation: recompute window aggregates from raw_events inside ClickHouse and compare them with
the window tables the stream wrote.

Contract: `reconcile(client, database, window_ms, from_ms, to_ms)` widens [from_ms, to_ms) to whole
windows, compares every (window_start, room) and (window_start, creator) row on every metric, and
returns a `Report` of differences (a missing row on either side is reported as column `row`, 1 vs 0).
Raw rows are read with FINAL so replayed events count once. Blocking; run from the CLI. Keys (room_id,
creator_id) are the integer ids of the event contract (UInt64 columns); `Difference.key` is an int.
The window side is read from the `*_window_stats` views (one row per window and key, each column the
maximum of what the stream's writers wrote), i.e. what BI users see.

Only closed windows reconcile: windows still open (newer than window + allowed lateness) and events the
stream dropped as too late (they are in raw_events only if the stream stored them) show as differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.rows import METRIC_COLUMNS as _METRICS
from pipeline.windows import timing

# Same definitions as the stream (domain.md): refunds are counted apart, never netted out of GMV.
_EXPECTED = """
SELECT
    toDateTime(intDiv(toUnixTimestamp64Milli(ts), {{w:Int64}}) * {{w:Int64}} DIV 1000, 'UTC') AS window_start,
    {key} AS key,
    countIf(type = 'view') AS views, uniqExactIf(user_id, type = 'view') AS viewers,
    countIf(type = 'click') AS clicks, uniqExactIf(user_id, type = 'click') AS clickers,
    countIf(type = 'order') AS orders, uniqExactIf(user_id, type = 'order') AS buyers,
    sumIf(amount_fen, type = 'order') AS gmv_fen,
    countIf(type = 'refund') AS refunds, sumIf(amount_fen, type = 'refund') AS refund_fen,
    1 AS present
FROM {db}.raw_events FINAL
WHERE ts >= fromUnixTimestamp64Milli({{from_ms:Int64}}, 'UTC')
    AND ts < fromUnixTimestamp64Milli({{to_ms:Int64}}, 'UTC')
    AND type IN ('view', 'click', 'order', 'refund')
GROUP BY window_start, key
"""

_ACTUAL = """
SELECT window_start, {key} AS key, {metrics}, 1 AS present
FROM {db}.{view}
WHERE window_start >= toDateTime({{from_ms:Int64}} DIV 1000, 'UTC')
    AND window_start < toDateTime({{to_ms:Int64}} DIV 1000, 'UTC')
"""

_JOINED = """
SELECT
    if(e.present = 1, e.window_start, a.window_start) AS window_start,
    if(e.present = 1, e.key, a.key) AS key,
    e.present AS e_present, a.present AS a_present,
    {e_cols}, {a_cols}
FROM ({expected}) AS e
FULL OUTER JOIN ({actual}) AS a ON e.window_start = a.window_start AND e.key = a.key
SETTINGS join_use_nulls = 0
"""

_DIFFS = """
SELECT window_start, key, col, expected, actual
FROM ({joined})
ARRAY JOIN
    ['row', {names}] AS col,
    [toInt64(e_present), {e_vals}] AS expected,
    [toInt64(a_present), {a_vals}] AS actual
WHERE expected != actual AND (col = 'row' OR (e_present = 1 AND a_present = 1))
ORDER BY window_start, key, col
"""


@dataclass(frozen=True)
class Difference:
    kind: str  # "room" or "creator"
    window_start: datetime
    key: int
    column: str
    expected: int
    actual: int


@dataclass
class Report:
    from_ms: int
    to_ms: int
    rows_compared: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)

    @property
    def windows_compared(self) -> int:
        return sum(self.rows_compared.values())


def align(from_ms: int, to_ms: int, window_ms: int) -> tuple[int, int]:
    """[from, to) widened to whole windows."""
    last = timing.window_start(to_ms, window_ms)
    end = to_ms if last == to_ms else timing.window_end(last, window_ms)
    return timing.window_start(from_ms, window_ms), end


def build_queries(database: str, kind: str) -> tuple[str, str]:
    """(count query, differences query) for kind 'room' or 'creator'."""
    key = {"room": "room_id", "creator": "creator_id"}[kind]
    expected = _EXPECTED.format(db=database, key=key)
    actual = _ACTUAL.format(db=database, key=key, view=f"{kind}_window_stats", metrics=", ".join(_METRICS))
    joined = _JOINED.format(
        expected=expected,
        actual=actual,
        e_cols=", ".join(f"e.{m} AS e_{m}" for m in _METRICS),
        a_cols=", ".join(f"a.{m} AS a_{m}" for m in _METRICS),
    )
    diffs = _DIFFS.format(
        joined=joined,
        names=", ".join(f"'{m}'" for m in _METRICS),
        e_vals=", ".join(f"toInt64(e_{m})" for m in _METRICS),
        a_vals=", ".join(f"toInt64(a_{m})" for m in _METRICS),
    )
    return f"SELECT count() FROM ({joined})", diffs


def reconcile(client, database: str, window_ms: int, from_ms: int, to_ms: int) -> Report:
    start, end = align(from_ms, to_ms, window_ms)
    params = {"w": window_ms, "from_ms": start, "to_ms": end}
    report = Report(start, end)
    for kind in ("room", "creator"):
        count_sql, diff_sql = build_queries(database, kind)
        report.rows_compared[kind] = int(client.query(count_sql, parameters=params).result_rows[0][0])
        for window_start, key, column, expected, actual in client.query(
            diff_sql, parameters=params
        ).result_rows:
            ws = window_start if window_start.tzinfo else window_start.replace(tzinfo=UTC)
            report.differences.append(Difference(kind, ws, int(key), column, int(expected), int(actual)))
    return report


def format_report(report: Report, limit: int = 200) -> str:
    """A fixed-width table of differences, or the one-line all-clear."""
    if not report.differences:
        return f"no differences in {report.windows_compared} windows"
    header = ("window_start", "kind", "key", "column", "expected", "actual")
    lines = [
        (
            d.window_start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            d.kind,
            str(d.key),
            d.column,
            str(d.expected),
            str(d.actual),
        )
        for d in report.differences[:limit]
    ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in [header, *lines]]
    if len(report.differences) > limit:
        out.append(f"... and {len(report.differences) - limit} more")
    out.append(f"{len(report.differences)} differences in {report.windows_compared} windows")
    return "\n".join(out)
