"""Reachability of Kafka and ClickHouse, checked in the background and read by `/health`.

Checks run on a timer so that a `/health` request never waits on a slow dependency; the page
reports the last result and when it was taken. Nothing secret (password, URL user-info) is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient

from pipeline.kafka_options import client_options
from pipeline.settings import Settings, redact_url

log = logging.getLogger(__name__)
CHECK_TIMEOUT_S = 3.0


@dataclass
class DependencyStatus:
    name: str
    target: str
    reachable: bool = False
    checked_at_ms: int | None = None
    error: str | None = None

    def as_json(self) -> dict:
        return {
            "reachable": self.reachable,
            "target": self.target,
            "checked_at_ms": self.checked_at_ms,
            "error": self.error,
        }


class DependencyChecker:
    """Owns one Kafka admin client and one ClickHouse client, created lazily and reused."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.kafka = DependencyStatus("kafka", settings.kafka_bootstrap_servers)
        self.clickhouse = DependencyStatus("clickhouse", redact_url(settings.clickhouse_url))
        self._admin: AIOKafkaAdminClient | None = None
        self._ch_client = None
        # Its own thread, so a hanging check can neither starve the sink's inserts nor pile up threads.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="health-check")
        self._running = False

    async def check_all(self) -> None:
        await asyncio.gather(
            self._check(self.kafka, self._kafka_ok), self._check(self.clickhouse, self._ch_ok)
        )

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
        if self._ch_client is not None:
            self._ch_client.close()
            self._ch_client = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _check(self, status: DependencyStatus, probe) -> None:
        try:
            await asyncio.wait_for(probe(), CHECK_TIMEOUT_S)
        except Exception as exc:  # any failure means "not reachable"; the reason is shown, not raised
            if status.reachable:
                log.warning("%s at %s became unreachable: %s", status.name, status.target, exc)
            status.reachable, status.error = False, f"{type(exc).__name__}: {exc}"[:300]
        else:
            status.reachable, status.error = True, None
        status.checked_at_ms = int(time.time() * 1000)

    async def _kafka_ok(self) -> None:
        if self._admin is None:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.settings.kafka_bootstrap_servers,
                request_timeout_ms=3000,
                **client_options(self.settings),
            )
            await admin.start()
            self._admin = admin
        await self._admin.describe_cluster()

    async def _ch_ok(self) -> None:
        loop = asyncio.get_running_loop()
        if self._ch_client is None:
            from pipeline.clickhouse.clients import Profile, make_client

            self._ch_client = await loop.run_in_executor(
                self._executor, make_client, self.settings, Profile.HEALTH
            )
        if not await loop.run_in_executor(self._executor, self._ch_client.ping):
            raise ConnectionError("ping failed")
