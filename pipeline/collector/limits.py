"""Admission rules of the collector that need no I/O: app keys, token-bucket rate limits, the
loopback rule for anonymous uploads.

All pure code, unit-tested with an injected clock.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Callable

from pipeline.errors import UserFacingError
from pipeline.settings import Settings

ANONYMOUS = "anonymous"


def is_loopback(host: str) -> bool:
    """True when `host` (an address or 'localhost') only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class CollectorConfigError(UserFacingError):
    exit_code = 2


def check_startup(settings: Settings) -> None:
    """Refuse to serve anonymous uploads anywhere but loopback (UserFacingError, exit code 2)."""
    if not settings.collector_app_keys and not is_loopback(settings.collector_host):
        raise CollectorConfigError(
            f"COLLECTOR_HOST={settings.collector_host} is reachable from other machines, so the collector "
            "needs app keys: set COLLECTOR_APP_KEYS (comma-separated app=key pairs); anonymous uploads "
            "are accepted only on a loopback address"
        )


class AppKeys:
    """Maps an `X-App-Key` value to its app name in constant time per configured key."""

    def __init__(self, pairs: tuple[tuple[str, str], ...]):
        self._pairs = tuple((app, key.encode()) for app, key in pairs)
        self._cache: dict[str, str] = {}

    @property
    def required(self) -> bool:
        return bool(self._pairs)

    def app_for(self, presented: str | None) -> str | None:
        """The app name of a valid key; ANONYMOUS when no keys are configured; None when refused."""
        if not self._pairs:
            return ANONYMOUS
        if not presented:
            return None
        app = self._cache.get(presented)
        if app is not None:
            return app
        raw = presented.encode("utf-8", "replace")
        found = None
        for name, key in self._pairs:  # compare against every key: no early exit to time
            if hmac.compare_digest(raw, key):
                found = name
        if found is not None and len(self._cache) < 1024:
            self._cache[presented] = found  # only valid keys are cached, so the cache stays small
        return found


class TokenBuckets:
    """One token bucket per name (an app, a client address): `rate` tokens per second, `burst` at most.

    `rate` 0 disables the limit. Idle buckets are forgotten after they would be full again, so memory
    follows the number of recently active clients."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic, max_names=100_000
    ):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self.max_names = max_names
        self._buckets: dict[str, list[float]] = {}  # name -> [tokens, last refill time]
        self._next_sweep = 0.0

    def take(self, name: str, cost: float = 1.0) -> float:
        """0 when allowed (tokens taken); else the seconds until `cost` tokens will be there."""
        if not self.rate:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= self.max_names:
                self._sweep(now)
            bucket = self._buckets[name] = [self.burst, now]
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        if bucket[0] >= cost:
            bucket[0] -= cost
            return 0.0
        return (min(cost, self.burst) - bucket[0]) / self.rate

    def _sweep(self, now: float) -> None:
        full_after = self.burst / self.rate
        for name in [n for n, (_t, last) in self._buckets.items() if now - last >= full_after]:
            del self._buckets[name]
        if len(self._buckets) >= self.max_names:  # a flood of distinct names: start over, fail open
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)
