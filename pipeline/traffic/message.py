"""`Message`: one generated Kafka message, the type the generator, the invalid-message maker and the
producer share (kept apart from `generator` so that `invalid` needs no import of it)."""

from __future__ import annotations

from typing import Any, NamedTuple


class Message(NamedTuple):
    """One Kafka message. `kind` is the expected rejection reason of an invalid message, else None."""

    topic: str
    key: bytes
    value: bytes
    events: list[dict[str, Any]]
    invalid: bool = False
    kind: str | None = None
    duplicates: int = 0
