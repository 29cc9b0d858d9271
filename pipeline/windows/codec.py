"""Byte formats of window state: the state table's keys and values, and creator contributions.

The state table (a Faust table, RocksDB locally, a compacted changelog topic in Kafka) holds, per
input partition, its open windows, its watermark and the event ids it remembers for de-duplication.
Keys are prefixed by kind and source so that a partition's state can be found and restored alone.
Values are orjson arrays: compact, and fast to write once a second for every changed window.
"""

from __future__ import annotations

import orjson

from pipeline.windows.aggregate import Window

WINDOW = "w"  # w|<source>|<window_start>|<key> -> window
SOURCE_META = "m"  # m|<source> -> [max_event_ms, next dedup chunk number]
DEDUP_CHUNK = "d"  # d|<source>|<chunk> -> [[event_id, ts], ...]


def source_name(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def window_key(source: str, start: int, key: int) -> bytes:
    return f"{WINDOW}|{source}|{start}|{key}".encode()


def meta_key(source: str) -> bytes:
    return f"{SOURCE_META}|{source}".encode()


def chunk_key(source: str, chunk: int) -> bytes:
    return f"{DEDUP_CHUNK}|{source}|{chunk}".encode()


def parse_key(key: bytes) -> tuple[str, str, list[str]]:
    """(kind, source, rest) of a state key."""
    kind, source, *rest = key.decode().split("|")
    return kind, source, rest


def encode_window(w: Window) -> bytes:
    return orjson.dumps(
        [
            w.creator_id,
            w.views,
            w.clicks,
            w.orders,
            w.gmv_fen,
            w.refunds,
            w.refund_fen,
            list(w.viewers),
            list(w.clickers),
            list(w.buyers),
            w.through,
        ]
    )


def decode_window(value: bytes) -> Window:
    creator, views, clicks, orders, gmv, refunds, refund_fen, viewers, clickers, buyers, through = (
        orjson.loads(value)
    )
    w = Window(creator)
    w.views, w.clicks, w.orders, w.gmv_fen, w.refunds, w.refund_fen = (
        views,
        clicks,
        orders,
        gmv,
        refunds,
        refund_fen,
    )
    w.viewers, w.clickers, w.buyers = set(viewers), set(clickers), set(buyers)
    w.through = through
    return w


# Creator contributions: what the room stage forwards through the repartition topic. Per checkpoint and
# target partition, one or more messages (cut by `encode_contributions`), each
# {"src": source, "wm": watermark, "p": [[offset, [partial, ...]], ...]}
# where a partial (pipeline.windows.aggregate) is what the input message at `offset` added to one window
# of one room. The offsets let the creator stage skip a contribution it already applied when the room
# stage replays after a crash. (Versions before 2026-11-23 sent slimmed events under "m" instead; that
# format is no longer read, see `decode_contribution`.)


def encode_contribution(source: str, watermark: int, messages: list[tuple[int, list[list]]]) -> bytes:
    # Partials hold their users as sets; orjson calls `default` for them.
    return orjson.dumps({"src": source, "wm": watermark, "p": messages}, default=list)


def encode_contributions(
    source: str, earlier_wm: int, final_wm: int, messages: list[tuple[int, list[list]]], max_bytes: int
) -> list[bytes]:
    """`messages` as one or more contribution messages of at most about `max_bytes`, cut only between
    input offsets; every message but the last carries `earlier_wm`, the last one `final_wm`."""
    whole = encode_contribution(source, final_wm, messages)
    if len(whole) <= max_bytes or len(messages) == 1:
        return [whole]
    half = len(messages) // 2
    return encode_contributions(source, earlier_wm, earlier_wm, messages[:half], max_bytes) + (
        encode_contributions(source, earlier_wm, final_wm, messages[half:], max_bytes)
    )


def decode_contribution(value: bytes) -> tuple[str, int, list[tuple[int, list[list]]]]:
    """(source, watermark, partials per offset). A contribution of the format before 2026-11-23
    (slimmed events under "m") is an error rather than skipped: skipping it would count short."""
    doc = orjson.loads(value)
    if "p" not in doc:
        raise ValueError(f"contribution of {doc.get('src')!r} has no partials (format before 2026-11-23?)")
    return doc["src"], doc["wm"], doc["p"]
