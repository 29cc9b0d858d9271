"""The Faust consumer as the stages and the health document see it: assignment, end offsets,
committed offsets and lag (the `pipeline.runtime.Partitions` protocol).

Faust has no public accessor for the offsets it committed; they are read from the private
`Consumer._committed_offset` (a mapping TP -> offset, kept by Faust itself after every commit and
seek).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def committed_offset(consumer, tp) -> int | None:
    """The offset Faust last committed (or was sought to) for `tp`, None if none yet."""
    return consumer._committed_offset.get(tp)  # Faust exposes no public accessor for this


class AppPartitions:
    """`pipeline.runtime.Partitions` over a Faust app's consumer (looked up at each call: Faust creates
    the consumer when the worker starts)."""

    def __init__(self, app) -> None:
        self.app = app

    def assignment(self) -> set:
        return self.app.consumer.assignment()

    async def end_offsets(self, tps: Iterable) -> Mapping:
        return await self.app.consumer.highwaters(*tps)

    def committed_offset(self, tp) -> int | None:
        return committed_offset(self.app.consumer, tp)


def consumer_progress(app, topics: frozenset[str]) -> list[dict]:
    """Per assigned partition of `topics`: committed offset, high watermark and lag (None when unknown).

    Faust also assigns the state table's changelog partitions (it reads them to recover), but never
    commits offsets there, so they are left out rather than reported as lag."""
    consumer = app.consumer
    rows = []
    for tp in sorted(tp for tp in consumer.assignment() if tp.topic in topics):
        try:
            highwater = consumer.highwater(tp)
        except Exception:  # not fetched yet for this partition
            highwater = None
        committed = committed_offset(consumer, tp)
        lag = None if highwater is None else max(0, highwater - (committed or 0))
        rows.append(
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "committed": committed,
                "highwater": highwater,
                "lag": lag,
            }
        )
    return rows
