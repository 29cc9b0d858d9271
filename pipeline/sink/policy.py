"""Named flush and retry policies of the BatchingSink (values chosen once, referred to by name)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FlushPolicy:
    """Flush when `max_rows` are buffered or the oldest buffered row is `max_seconds` old.

    `max_buffered_rows` bounds memory: `put` waits while that many rows are buffered (backpressure), so
    a consumer pauses instead of buffering without bound while ClickHouse is slow or down.
    """

    max_rows: int = 1000
    max_seconds: float = 1.0
    max_buffered_rows: int = 100_000

    def __post_init__(self) -> None:
        if self.max_rows < 1 or self.max_seconds <= 0 or self.max_buffered_rows < self.max_rows:
            raise ValueError(f"invalid flush policy {self}")


# Window rows: dashboards show second-level freshness; about one insert per second per table.
ONCE_PER_SECOND = FlushPolicy(max_rows=1000, max_seconds=1.0, max_buffered_rows=100_000)
# Raw events at campaign peaks: bigger, rarer inserts keep the part count low.
BULK = FlushPolicy(max_rows=20_000, max_seconds=2.0, max_buffered_rows=200_000)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts of one batch: initial * multiplier**n, capped.

    Attempts never stop by default (`max_attempts=None`): dropping a batch would lose data whose offsets
    may be committed later; a stuck batch shows as rising `errors` and backpressure instead.
    """

    initial_seconds: float = 0.1
    multiplier: float = 2.0
    max_seconds: float = 5.0
    max_attempts: int | None = None

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th consecutive failure (1-based)."""
        return min(self.max_seconds, self.initial_seconds * self.multiplier ** max(0, failures - 1))


DEFAULT_RETRY = RetryPolicy()
