"""Python clients of the collector, for server-side producers (the order service) and simulations.

`CollectorClient` is synchronous and needs only the standard library; `AsyncCollectorClient` uses
aiohttp. Both stamp `event_id` (a UUID) and `ts` (epoch ms, this machine's clock) when `event()`
builds an event, send JSON arrays to `POST /v1/events`, and retry refusals that say "try again"
(429, 503, connection errors, timeouts) with exponential backoff, honouring Retry-After, always with
the same events and ids: the pipeline removes duplicates, so a retry after a lost answer is safe.
A 4xx other than 429 is the caller's bug and raises `UploadRefused` at once.

    client = CollectorClient("http://collector:8088", app_key=os.environ["COLLECTOR_APP_KEY"])
    result = client.send([client.event("order", room_id=1, creator_id=2, user_id=3,
                                       order_id="o-1", product_id=4, amount_fen=9900)])
    assert result.rejected == 0, result.rejections
"""

from __future__ import annotations

import gzip
import random
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

RETRYABLE = frozenset((429, 502, 503, 504))
GZIP_FROM_BYTES = 2048


class UploadRefused(Exception):
    """The collector refused the whole upload for a reason a retry cannot fix (or retries ran out)."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(f"{status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


@dataclass
class UploadResult:
    accepted: int
    rejected: int
    results: list[dict[str, Any]]
    attempts: int = 1
    rejections: list[dict[str, Any]] = field(default_factory=list)


def make_event(event_type: str, *, room_id: int, creator_id: int, user_id: int, **fields: Any) -> dict:
    """A new event with a unique `event_id` and `ts` = now (epoch ms UTC), plus the given fields."""
    return {
        "event_id": uuid.uuid4().hex,
        "type": event_type,
        "ts": int(time.time() * 1000),
        "room_id": room_id,
        "creator_id": creator_id,
        "user_id": user_id,
        **fields,
    }


def _body(events: list[dict]) -> tuple[bytes, dict[str, str]]:
    body = orjson.dumps(events)
    headers = {"Content-Type": "application/json"}
    if len(body) >= GZIP_FROM_BYTES:
        body, headers["Content-Encoding"] = gzip.compress(body, 5), "gzip"
    return body, headers


def _result(payload: bytes, attempts: int) -> UploadResult:
    doc = orjson.loads(payload)
    rejections = [r for r in doc["results"] if r["status"] != "accepted"]
    return UploadResult(doc["accepted"], doc["rejected"], doc["results"], attempts, rejections)


def _refused(status: int, payload: bytes) -> UploadRefused:
    try:
        doc = orjson.loads(payload)
        return UploadRefused(status, str(doc.get("error")), str(doc.get("message")))
    except (orjson.JSONDecodeError, AttributeError):
        return UploadRefused(status, "http_error", payload[:200].decode("utf-8", "replace"))


@dataclass
class Backoff:
    """Exponential backoff with full jitter; a server's Retry-After wins when it is longer."""

    base_s: float = 0.5
    max_s: float = 30.0
    attempts: int = 8

    def delay(self, attempt: int, retry_after: str | None) -> float:
        wait = random.uniform(0, min(self.max_s, self.base_s * 2**attempt))
        if retry_after and retry_after.isdigit():
            wait = max(wait, float(retry_after))
        return wait


class CollectorClient:
    """Blocking client; one instance may be shared by threads (it keeps no per-request state)."""

    def __init__(self, base_url: str, app_key: str | None = None, timeout_s: float = 15, backoff=None):
        self.url = base_url.rstrip("/") + "/v1/events"
        self.app_key = app_key
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()

    event = staticmethod(make_event)

    def send(self, events: list[dict]) -> UploadResult:
        body, headers = _body(events)
        if self.app_key:
            headers["X-App-Key"] = self.app_key
        for attempt in range(self.backoff.attempts):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return _result(response.read(), attempt + 1)
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                if exc.code not in RETRYABLE or attempt + 1 == self.backoff.attempts:
                    raise _refused(exc.code, payload) from None
                time.sleep(self.backoff.delay(attempt, exc.headers.get("Retry-After")))
            except OSError:  # refused, reset, timed out: the events may or may not be in; resend them
                if attempt + 1 == self.backoff.attempts:
                    raise
                time.sleep(self.backoff.delay(attempt, None))
        raise AssertionError("unreachable")


class AsyncCollectorClient:
    """The same protocol on aiohttp; pass a session to share connections between many clients."""

    def __init__(self, base_url: str, app_key: str | None = None, timeout_s: float = 15, backoff=None,
                 session=None):  # fmt: skip
        self.url = base_url.rstrip("/") + "/v1/events"
        self.app_key = app_key
        self.timeout_s = timeout_s
        self.backoff = backoff or Backoff()
        self._session = session
        self._own_session = session is None

    event = staticmethod(make_event)

    async def send(self, events: list[dict]) -> UploadResult:
        import asyncio

        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        body, headers = _body(events)
        if self.app_key:
            headers["X-App-Key"] = self.app_key
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        for attempt in range(self.backoff.attempts):
            last = attempt + 1 == self.backoff.attempts
            try:
                async with self._session.post(self.url, data=body, headers=headers, timeout=timeout) as r:
                    payload = await r.read()
                    if r.status == 200:
                        return _result(payload, attempt + 1)
                    if r.status not in RETRYABLE or last:
                        raise _refused(r.status, payload)
                    retry_after = r.headers.get("Retry-After")
            except (TimeoutError, aiohttp.ClientError):
                if last:
                    raise
                retry_after = None
            await asyncio.sleep(self.backoff.delay(attempt, retry_after))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
