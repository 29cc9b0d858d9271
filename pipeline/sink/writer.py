"""The one write interface of the sink, and an in-memory implementation for unit tests.

Contract of `Writer.write`:
- Writes `rows` into the fully qualified `table` (`db.table`) as one batch, or raises. It must not block
  the event loop (blocking drivers run in a thread).
- `fmt` says what a row is. `NATIVE` (the default): a tuple of Python values in `columns` order, encoded
  by the driver. `JSON_EACH_ROW`: `bytes` holding one JSON object (no newline) keyed by column name,
  already encoded by the caller so the server parses it, not Python; keys not in `columns` are ignored,
  and a missing or null key takes the column's DEFAULT.
- `dedup_token` identifies the batch: writing the same token again (a retry after an error whose
  outcome was unknown) must not store the rows twice. ClickHouse does this with
  `insert_deduplication_token`; `ListWriter` imitates it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

RowFormat = Literal["Native", "JSONEachRow"]  # named like the ClickHouse formats they are sent as
NATIVE: RowFormat = "Native"
JSON_EACH_ROW: RowFormat = "JSONEachRow"


@runtime_checkable
class Writer(Protocol):
    async def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Any],
        dedup_token: str,
        fmt: RowFormat = NATIVE,
    ) -> None:
        """Store one batch; raise on failure (the caller retries with the same token)."""
        ...


class ListWriter:
    """Keeps written batches in memory, ignoring a token already written (like ClickHouse).

    `JSON_EACH_ROW` rows are kept decoded, as dicts of their keys that are in `columns` (the others are
    ignored, as ClickHouse does); `NATIVE` rows as the tuples given."""

    def __init__(self) -> None:
        self.tables: dict[str, list[tuple | dict]] = defaultdict(list)
        self.batches: list[tuple[str, str, int]] = []  # (table, token, row count) in write order
        self.columns: dict[str, tuple[str, ...]] = {}
        self._tokens: set[tuple[str, str]] = set()

    async def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Any],
        dedup_token: str,
        fmt: RowFormat = NATIVE,
    ) -> None:
        if fmt == JSON_EACH_ROW:
            rows = [_json_row(row, columns) for row in rows]  # decoded first: bad rows store nothing
        elif fmt != NATIVE:
            raise ValueError(f"unknown row format {fmt!r}")
        if (table, dedup_token) in self._tokens:
            return
        self._tokens.add((table, dedup_token))
        self.columns[table] = tuple(columns)
        self.tables[table].extend(rows)
        self.batches.append((table, dedup_token, len(rows)))

    def rows(self, table: str) -> list[tuple | dict]:
        return list(self.tables.get(table, []))


def _json_row(row: bytes, columns: Sequence[str]) -> dict:
    obj = orjson.loads(row)
    if not isinstance(obj, dict) or b"\n" in row:
        raise ValueError(f"a JSONEachRow row must be one JSON object on one line, got {row[:80]!r}")
    return {name: obj[name] for name in columns if name in obj}


class InstrumentedWriter:
    """Wraps a `Writer` and records batch sizes, insert latency and failures in the pipeline metrics."""

    def __init__(self, writer: Writer, metrics) -> None:
        self.writer = writer
        self.metrics = metrics

    async def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Any],
        dedup_token: str,
        fmt: RowFormat = NATIVE,
    ) -> None:
        name = table.rsplit(".", 1)[-1]
        started = time.perf_counter()
        try:
            await self.writer.write(table, columns, rows, dedup_token, fmt)
        except Exception:
            self.metrics.sink_errors.labels(table=name).inc()
            raise
        self.metrics.sink_insert_duration.labels(table=name).observe(time.perf_counter() - started)
        self.metrics.sink_batch_rows.labels(table=name).observe(len(rows))
        self.metrics.sink_rows.labels(table=name).inc(len(rows))

    def __getattr__(self, name: str):
        return getattr(self.writer, name)  # reachable, last_insert_seconds, close, ...
