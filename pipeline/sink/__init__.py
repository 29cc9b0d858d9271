"""Batching writer from the stream to ClickHouse: `Writer` protocol (rows as `NATIVE` tuples or
`JSON_EACH_ROW` bytes), `ClickHouseWriter`, `ListWriter`, `BatchingSink` (size/time batches, retry with
backoff, backpressure, commit-after-write, refused rows isolated and handed on), and the sinks of the
three tables the stream writes (`tables`; what their rows hold is `pipeline.rows`)."""

from pipeline.sink.batching import BatchingSink, RefusedRow, SinkFailed, SinkStats
from pipeline.sink.policy import BULK, DEFAULT_RETRY, ONCE_PER_SECOND, FlushPolicy, RetryPolicy, RowsRefused
from pipeline.sink.writer import JSON_EACH_ROW, NATIVE, ListWriter, RowFormat, Writer

__all__ = [
    "BULK",
    "DEFAULT_RETRY",
    "JSON_EACH_ROW",
    "NATIVE",
    "ONCE_PER_SECOND",
    "BatchingSink",
    "FlushPolicy",
    "ListWriter",
    "RefusedRow",
    "RetryPolicy",
    "RowFormat",
    "RowsRefused",
    "SinkFailed",
    "SinkStats",
    "Writer",
]
