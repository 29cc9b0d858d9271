"""The naive Faust baseline of the stream benchmark: one event per message, one table update per event.

This is the shape Faust's documentation teaches (`examples/windowed_aggregation.py`, the "Windowing"
user guide): an agent iterates `async for event in stream`, decodes the value, and does
`table[key] += value` on a tumbling table, so every event costs one trip through Faust's consumer
path and one table write (with its changelog message). No batching anywhere.

Run by `load_tests.bench_pipeline` as `python -m load_tests.naive_faust worker`, configured by:
  KAFKA_BOOTSTRAP_SERVERS, NAIVE_APP_ID, NAIVE_TOPICS (comma-separated input topics),
  NAIVE_EXPECTED (messages to consume), NAIVE_DATADIR, WEB_PORT, TOPIC_PARTITIONS.
When it has consumed NAIVE_EXPECTED messages it prints one line
  `NAIVE_DONE messages=<n> first=<epoch s> last=<epoch s>`
(the wall time of the first and the last message handled); the benchmark reads its rate from it.
"""

from __future__ import annotations

import os
import sys
import time

import faust
import orjson

app = faust.App(
    os.environ.get("NAIVE_APP_ID", "naive-faust"),
    broker=f"kafka://{os.environ.get('KAFKA_BOOTSTRAP_SERVERS', '127.0.0.1:9092')}",
    datadir=os.environ.get("NAIVE_DATADIR", "/tmp/naive-faust"),
    topic_partitions=int(os.environ.get("TOPIC_PARTITIONS", "6")),
    consumer_auto_offset_reset="earliest",
    web_port=int(os.environ.get("WEB_PORT", "6067")),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    worker_redirect_stdouts=False,
)
source = app.topic(*os.environ.get("NAIVE_TOPICS", "live.views").split(","), value_serializer="raw")
# Event counts per (room, type) in tumbling one-minute windows, as in Faust's windowing guide.
events_per_room = app.Table("events-per-room", default=int, key_type=str, value_type=int).tumbling(
    60, expires=3600
)


class Progress:
    def __init__(self, expected: int):
        self.expected, self.seen, self.first = expected, 0, 0.0

    def tick(self) -> None:
        self.seen += 1
        if self.seen == 1:
            self.first = time.time()
        if self.seen == self.expected:
            print(
                f"NAIVE_DONE messages={self.seen} first={self.first:.6f} last={time.time():.6f}", flush=True
            )


progress = Progress(int(os.environ.get("NAIVE_EXPECTED", "0")))


@app.agent(source)
async def count_events(stream):
    async for value in stream:
        progress.tick()
        try:
            event = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if type(event) is dict and "room_id" in event:
            events_per_room[f"{event['room_id']}:{event.get('type')}"] += 1


if __name__ == "__main__":
    sys.argv[1:] = sys.argv[1:] or ["worker", "--loglevel", "warn"]
    app.main()
