"""Named flush and retry policies of the BatchingSink (values chosen once, referred to by name), and
`classify_failure`: which failed writes are retried (transient) and which refuse their rows for good."""

from __future__ import annotations

import re
from dataclasses import dataclass

from clickhouse_connect.driver.exceptions import DatabaseError, DataError


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


# -- what a failed write means ------------------------------------------------------------------------
TRANSIENT = "transient"  # retry the same batch with backoff: the store may take it later
REFUSED = "refused"  # the store refuses these rows for good: isolate the bad rows, write the others

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that say nothing about the rows: overload,
# timeouts, network, read-only or missing replicas, memory. Also codes that mean the table or the
# credentials are wrong, which every row would hit alike: those wait for an operator (like an outage)
# rather than send the whole stream to the dead-letter topic.
TRANSIENT_CLICKHOUSE_CODES = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        8,  # THERE_IS_NO_COLUMN
        16,  # NO_SUCH_COLUMN_IN_TABLE
        23,  # CANNOT_WRITE_TO_OSTREAM
        24,  # CANNOT_WRITE_TO_OSTREAM
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        47,  # UNKNOWN_IDENTIFIER
        60,  # UNKNOWN_TABLE
        81,  # UNKNOWN_DATABASE
        159,  # TIMEOUT_EXCEEDED
        160,  # TOO_SLOW
        164,  # READONLY
        192,  # UNKNOWN_USER
        193,  # WRONG_PASSWORD
        194,  # REQUIRED_PASSWORD
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        225,  # NO_ZOOKEEPER
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS (but see _TOO_MANY_PARTITIONS)
        285,  # TOO_FEW_LIVE_REPLICAS
        286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
        319,  # UNKNOWN_STATUS_OF_INSERT
        335,  # BARRIER_TIMEOUT
        373,  # SESSION_IS_LOCKED
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        497,  # ACCESS_DENIED
        516,  # AUTHENTICATION_FAILED
        999,  # KEEPER_EXCEPTION
        1000,  # POCO_EXCEPTION
    }
)
# Code 252 also says "Too many partitions for single INSERT block": that block never lands as it is,
# but smaller ones do, so it is refused (and the batch split), not retried.
_TOO_MANY_PARTITIONS = "too many partitions for single insert block"
_CODE_IN_MESSAGE = re.compile(r"\bCode:\s*(\d+)")


class RowsRefused(Exception):
    """A `Writer` raises this (or a subclass) when the store refuses the batch's data for good; the
    sink then isolates the refused rows. ClickHouse's own errors are classified by `classify_failure`."""


def clickhouse_code(exc: BaseException) -> int | None:
    """The ClickHouse error code of `exc`: clickhouse-connect's `code`, else "Code: NNN" in its text."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    match = _CODE_IN_MESSAGE.search(str(exc))
    return int(match.group(1)) if match else None


def classify_failure(exc: BaseException) -> str:
    """TRANSIENT or REFUSED for an exception a write raised.

    REFUSED: `RowsRefused`; clickhouse-connect's `DataError` (the client could not serialize a value,
    e.g. an int out of its column's range); or a ClickHouse error whose code is not in
    `TRANSIENT_CLICKHOUSE_CODES` (a value ClickHouse cannot parse or store, too many partitions in one
    block). Everything else is TRANSIENT: connection failures, timeouts and the codes listed, and any
    exception without a ClickHouse code (a bug or an unknown transport error must not drop data)."""
    if isinstance(exc, RowsRefused | DataError):
        return REFUSED
    if not isinstance(exc, DatabaseError):
        return TRANSIENT
    code = clickhouse_code(exc)
    if code is None:
        return TRANSIENT  # connection-level (OperationalError without a server answer)
    if code == 252 and _TOO_MANY_PARTITIONS in str(exc).lower():
        return REFUSED
    return TRANSIENT if code in TRANSIENT_CLICKHOUSE_CODES else REFUSED
