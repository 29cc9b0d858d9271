"""`Writer` implementation for ClickHouse over clickhouse-connect's sync client, run in a thread.

Contract:
- `write` never blocks the event loop: the insert runs in `asyncio.to_thread`.
- Each batch is inserted with `insert_deduplication_token = dedup_token`, so a retry of a batch that
  did land (timeout after the server committed) is dropped by ClickHouse, also for materialized views.
  The tables set `non_replicated_deduplication_window` for this (Replicated tables have it by default).
- The client is created lazily and re-created after a connection failure, so a writer built while
  ClickHouse is down starts working when it comes back. `reachable` says how the last attempt went.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError

from pipeline.clickhouse.clients import ClickHouseUnavailable, Profile, make_client
from pipeline.settings import Settings


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
        self, table: str, columns: Sequence[str], rows: Sequence[tuple], dedup_token: str
    ) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._insert, table, tuple(columns), rows, dedup_token)

    def _insert(self, table: str, columns: tuple[str, ...], rows: Sequence[tuple], token: str) -> None:
        with self._lock:
            started = time.monotonic()
            try:
                client = self._connected()
                key = (table, columns)
                context = self._contexts.get(key)
                if context is None:
                    # Reused: saves a DESCRIBE TABLE round trip per batch.
                    context = client.create_insert_context(table, column_names=list(columns))
                    self._contexts[key] = context
                context.data = rows
                client.insert(context=context, settings={"insert_deduplication_token": token})
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

    def _connected(self) -> Client:
        if self._client is None:
            self._client = self._factory()
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, client.close)
        self._executor.shutdown(wait=False, cancel_futures=True)
