"""`Writer` implementation for ClickHouse over clickhouse-connect's sync client, run in a thread.

Contract:
- `write` never blocks the event loop: the insert runs in the writer's own single thread.
- Each batch is inserted with `insert_deduplication_token = dedup_token`, so a retry of a batch that
  did land (timeout after the server committed) is dropped by ClickHouse, also for materialized views.
  The tables set `non_replicated_deduplication_window` for this (Replicated tables have it by default).
- `NATIVE` rows go through an insert context (clickhouse-connect encodes them); `JSON_EACH_ROW` rows are
  joined by newlines and sent as they are (`raw_insert`): ClickHouse parses them, and the insert thread
  (which shares the GIL with the event loop) does no per-row Python. Retries resend identical bytes,
  hence identical blocks, so the token still drops a batch that landed.
- The client is created lazily and re-created after a connection failure, so a writer built while
  ClickHouse is down starts working when it comes back. `reachable` says how the last attempt went.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.clickhouse.clients import ClickHouseUnavailable, Profile, make_client
from pipeline.settings import Settings
from pipeline.sink.writer import JSON_EACH_ROW, NATIVE, RowFormat

# Spelled out rather than left to the server profile: they make the writer contract's JSON rules hold
# (unknown keys ignored; missing or null keys take the column DEFAULT).
_JSON_INPUT_SETTINGS = {
    "input_format_skip_unknown_fields": 1,
    "input_format_defaults_for_omitted_fields": 1,
    "input_format_null_as_default": 1,
}


class ClickHouseWriter:
    """Inserts batches; `reachable` is None before the first attempt, then True/False."""

    def __init__(self, client_factory: Callable[[], Client]):
        self._factory = client_factory
        self._client: Client | None = None
        self._contexts: dict[tuple[str, tuple[str, ...]], object] = {}
        self._lock = threading.Lock()  # one insert at a time per writer: contexts are not shareable
        # Its own thread: inserts never queue behind other blocking work in asyncio's shared pool, and
        # a stuck insert (bounded by the driver's timeout) cannot starve anything else.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-insert")
        self.reachable: bool | None = None
        self.last_insert_seconds: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickHouseWriter:
        return cls(lambda: make_client(settings, Profile.INSERT))

    async def write(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Any],
        dedup_token: str,
        fmt: RowFormat = NATIVE,
    ) -> None:
        if fmt not in (NATIVE, JSON_EACH_ROW):
            raise ValueError(f"unknown row format {fmt!r}")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, self._insert, table, tuple(columns), rows, dedup_token, fmt
        )

    def _insert(
        self, table: str, columns: tuple[str, ...], rows: Sequence[Any], token: str, fmt: RowFormat
    ) -> None:
        with self._lock:
            started = time.monotonic()
            try:
                client = self._connected()
                if fmt == JSON_EACH_ROW:
                    client.raw_insert(
                        table,
                        columns,
                        b"\n".join(rows),
                        settings={"insert_deduplication_token": token, **_JSON_INPUT_SETTINGS},
                        fmt=JSON_EACH_ROW,
                    )
                else:
                    self._insert_native(client, table, columns, rows, token)
            except (OperationalError, ClickHouseUnavailable, OSError):
                # Connection-level failure: forget the client so the next attempt reconnects.
                self.reachable = False
                self._client = None
                self._contexts.clear()
                raise
            except Exception:
                # The server answered (bad data, unknown table...): reachable, but the batch failed.
                self.reachable = True
                self._contexts.pop((table, columns), None)
                raise
            self.reachable = True
            self.last_insert_seconds = time.monotonic() - started

    def _insert_native(
        self, client: Client, table: str, columns: tuple[str, ...], rows: Sequence[tuple], token: str
    ) -> None:
        key = (table, columns)
        context = self._contexts.get(key)
        if context is None:
            # Reused: saves a DESCRIBE TABLE round trip per batch.
            context = client.create_insert_context(table, column_names=list(columns))
            self._contexts[key] = context
        context.data = rows
        client.insert(context=context, settings={"insert_deduplication_token": token})

    def _connected(self) -> Client:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
