"""Pure, deterministic model of live-room traffic (直播间流量) for the three input topics.

Contract:
- The same `TrafficConfig` (seed included) and the same `clock` (None = simulated) give the identical
  sequence of `Message(topic, key, value)` bytes, on any machine. No I/O, no wall clock unless passed in.
- A message with `invalid=False` holds events that all follow event contract v1, all of the room named
  by its key (`str(room_id)`), all of a type that belongs on its topic. With `batch_size == 1` its value
  is one JSON object, otherwise a JSON array (at most `MAX_BATCH_SIZE` events, far below 1 MiB).
- A message with `invalid=True` carries exactly ONE rejection whose expected reason code is `kind` (the
  codes of `pipeline.events.contract`), and no valid event: bad records are never mixed into valid
  batches, so expected counts do not depend on whether a validator rejects per message or per event.
- Time: the model runs a simulated clock that advances `1000 / rate` ms per record (each event,
  duplicate re-send or invalid message is one record). Follow-ups (clicks, orders, refunds, retries) are
  scheduled on that clock, so the structure of the stream never depends on `clock`; only `ts` does.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.settings import Topics
from pipeline.traffic.invalid import INVALID_KINDS, make_invalid
from pipeline.traffic.message import Message
from pipeline.traffic.population import SOURCE_WEIGHTS, Population, weighted_stream

MAX_BATCH_SIZE = 2000  # an event is < 400 bytes, so a batch stays well under the 1 MiB message limit
VIEW, CLICK, ORDER, REFUND, RETRY = range(5)
TYPE_NAMES = ("view", "click", "order", "refund")
_TOPIC_OF = (0, 1, 2, 2)  # index into Topics.inputs by event type
_QUANTITIES = (1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 5)


@dataclass(frozen=True)
class TrafficConfig:
    """Every knob of the model; `__post_init__` rejects impossible values with ValueError."""

    seed: int = 42
    rooms: int = 2000
    creators: int = 500
    users: int = 1_000_000
    zipf_s: float = 1.1
    hot_room_share: float | None = None  # room #1 carries this share of all records
    batch_size: int = 100
    linger_ms: int = 200  # simulated ms a room's buffer may wait before it is flushed
    rate: float = 5000.0  # records per simulated second
    start_ts_ms: int = 1_700_000_000_000  # simulated clock start (2023-11-14T22:13:20Z)
    ctr: float = 0.15  # P(a view is followed by a click)
    order_rate: float = 0.03  # P(a view is followed by an order); orders only follow clicks
    refund_rate: float = 0.03  # P(an order is refunded later)
    duplicate_share: float = 0.01  # P(an event is re-sent by a client retry)
    invalid_share: float = 0.005  # P(a record is an invalid message instead of an event)
    jitter_ms: int = 3000  # events' ts lag their send time by up to this (out-of-order delivery)
    click_delay_ms: int = 4000  # mean extra delay view -> click (after a 1 s minimum)
    order_delay_ms: int = 8000  # mean extra delay click -> order (after 2 s)
    refund_delay_ms: int = 45_000  # mean extra delay order -> refund (after 15 s)
    retry_delay_ms: int = 3000  # a retry is re-sent up to this long after the original

    def __post_init__(self) -> None:
        checks = [
            (min(self.rooms, self.creators, self.users) >= 1, "rooms, creators, users must be >= 1"),
            (self.creators <= self.rooms, "creators must be <= rooms (every creator hosts a room)"),
            (self.zipf_s >= 0, "zipf_s must be >= 0"),
            (self.hot_room_share is None or 0 < self.hot_room_share < 1, "hot_room_share must be in (0, 1)"),
            (1 <= self.batch_size <= MAX_BATCH_SIZE, f"batch_size must be 1..{MAX_BATCH_SIZE}"),
            (self.linger_ms >= 0 and self.jitter_ms >= 0, "linger_ms and jitter_ms must be >= 0"),
            (self.rate > 0, "rate must be > 0"),
            (0 < self.start_ts_ms < 2**63, "start_ts_ms must be positive epoch ms"),
            (0 <= self.order_rate <= self.ctr <= 1, "need 0 <= order_rate <= ctr <= 1"),
        ]
        for name in ("refund_rate", "duplicate_share", "invalid_share"):
            checks.append((0 <= getattr(self, name) < 1, f"{name} must be in [0, 1)"))
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class Counts:
    """What the model generated. Exact for everything yielded once the iterator is exhausted."""

    by_type: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TYPE_NAMES, 0))
    duplicates: int = 0  # re-sends of an event already generated (same event_id, same bytes)
    invalid: int = 0  # invalid messages
    invalid_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(INVALID_KINDS, 0))
    messages: int = 0
    gmv_fen: int = 0  # sum of distinct orders' amount_fen
    refund_fen: int = 0  # sum of distinct refunds' amount_fen

    @property
    def events(self) -> int:
        """Distinct valid events."""
        return sum(self.by_type.values())

    @property
    def records(self) -> int:
        """Everything sent: distinct events + duplicate re-sends + invalid messages."""
        return self.events + self.duplicates + self.invalid


class TrafficModel:
    """Generates messages; see the module docstring for the determinism contract.

    `clock`, if given, returns epoch ms used as the send time of each event (live traffic); without it
    the simulated clock is used. Use one `messages()` iteration per model.
    """

    def __init__(
        self,
        config: TrafficConfig | None = None,
        topics: Topics | None = None,
        clock: Callable[[], int] | None = None,
    ):
        self.config = cfg = config or TrafficConfig()
        self.topics = topics or Topics()
        self.counts = Counts()
        self._clock = clock
        self._rng = rng = random.Random(cfg.seed)
        self.population = Population(rng, cfg)
        self._rooms = self.population.room_stream(rng)
        self._sources = weighted_stream(rng, tuple(SOURCE_WEIGHTS), tuple(SOURCE_WEIGHTS.values()))
        self._heap: list[tuple[float, int, int, Any]] = []
        self._buffers: dict[int, list[Any]] = {}  # room_index * 3 + topic index -> [created, events, dups]
        self._lingering: deque[tuple[float, int, list[Any]]] = deque()
        self._seq = 0
        self._now = float(cfg.start_ts_ms)
        self._prefix = f"g{cfg.seed}-"

    @property
    def rng(self) -> random.Random:
        """The model's only source of randomness (helpers draw from it, in a fixed order)."""
        return self._rng

    @property
    def room_creator(self) -> dict[int, int]:
        """room_id -> creator_id of every room the model may use."""
        return self.population.room_creator

    def messages(self, max_records: int | None = None) -> Iterator[Message]:
        """Yield messages until `max_records` records were generated (None: forever), then the rest."""
        cfg, rng, heap, counts = self.config, self._rng, self._heap, self.counts
        r, step, linger, lingering = rng.random, 1000.0 / cfg.rate, cfg.linger_ms, self._lingering
        buffered = cfg.batch_size > 1
        n = 0
        while max_records is None or n < max_records:
            now = self._now = cfg.start_ts_ms + n * step
            n += 1
            if heap and heap[0][0] <= now:
                _, _, action, data = heapq.heappop(heap)
                if action == RETRY:
                    counts.duplicates += 1
                    msg = self._add(data[0], data[1], data[2], True)
                else:
                    msg = self._follow_up(action, data, now)
            elif r() < cfg.invalid_share:
                counts.invalid += 1
                msg = make_invalid(self, next(self._rooms), now)
                counts.invalid_by_kind[msg.kind] += 1
                counts.messages += 1
            else:
                msg = self._view(next(self._rooms), now)
            if msg is not None:
                yield msg
            while buffered and lingering and lingering[0][0] <= now - linger:
                _, slot, buf = lingering.popleft()
                if self._buffers.get(slot) is buf:
                    yield self._flush(slot)
        yield from self.drain()

    def drain(self) -> Iterator[Message]:
        """Flush every partly filled buffer (oldest first); call when stopping early."""
        while self._lingering:
            _, slot, buf = self._lingering.popleft()
            if self._buffers.get(slot) is buf:
                yield self._flush(slot)

    # -- events ---------------------------------------------------------------------------------------

    def next_event_id(self) -> str:
        self._seq += 1
        return f"{self._prefix}{self._seq:x}"

    def event_ts(self, now: float) -> int:
        """Send time minus a lag skewed towards small values: most events in order, some seconds late."""
        r = self._rng.random
        base = self._clock() if self._clock is not None else int(now)
        return base - int(r() * r() * self.config.jitter_ms)

    def base_event(self, kind: int, room: int, user_id: int, now: float) -> dict[str, Any]:
        """A valid event of type `kind` with the common fields, in the contract's field order."""
        pop = self.population
        return {
            "event_id": self.next_event_id(),
            "type": TYPE_NAMES[kind],
            "ts": self.event_ts(now),
            "room_id": pop.room_ids[room],
            "creator_id": pop.room_creator_ids[room],
            "user_id": user_id,
        }

    def _view(self, room: int, now: float) -> Message | None:
        cfg, r = self.config, self._rng.random
        ev = self.base_event(VIEW, room, self.population.user(r()), now)
        mcn = self.population.room_mcn[room]
        if mcn:
            ev["mcn_id"] = mcn
        if r() < 0.9:  # the entry is unknown for some views: optional fields must stay optional
            ev["source"] = next(self._sources)
        if r() < cfg.ctr:
            self._schedule(now + 1000 + self._rng.expovariate(1.0 / cfg.click_delay_ms), CLICK, (room, ev))
        return self._add(room, VIEW, ev, False)

    def _follow_up(self, action: int, data: Any, now: float) -> Message | None:
        cfg, rng = self.config, self._rng
        room, prev = data
        ev = self.base_event(action, room, prev["user_id"], now)
        copied: tuple[str, ...] = ("mcn_id", "source")
        if action == REFUND:
            copied = ("merchant_id", "mcn_id", "category", "source")
            ev["order_id"] = prev["order_id"]
            unit = prev["amount_fen"] // prev["quantity"]
            # Partial refunds return some of the items of a multi-item order; never more than paid.
            k = (
                prev["quantity"]
                if prev["quantity"] == 1 or rng.random() < 0.6
                else rng.randint(1, prev["quantity"] - 1)
            )
            ev["amount_fen"] = prev["amount_fen"] if k == prev["quantity"] else unit * k
            self.counts.refund_fen += ev["amount_fen"]
        else:
            if action == CLICK:
                product = self.population.product(room, rng.random())
            else:
                product = self.population.product_by_id[prev["product_id"]]
                ev["order_id"] = f"{self._prefix}o{self._seq:x}"
            ev["product_id"] = product.product_id
            if action == ORDER:
                quantity = _QUANTITIES[int(rng.random() * len(_QUANTITIES))]
                ev["amount_fen"] = product.price_fen * quantity
                ev["quantity"] = quantity
                self.counts.gmv_fen += ev["amount_fen"]
            ev["merchant_id"] = product.merchant_id
            ev["category"] = product.category
        for name in copied:
            if name in prev:
                ev[name] = prev[name]
        if action == CLICK and rng.random() < cfg.order_rate / cfg.ctr:
            self._schedule(now + 2000 + rng.expovariate(1.0 / cfg.order_delay_ms), ORDER, (room, ev))
        elif action == ORDER and rng.random() < cfg.refund_rate:
            self._schedule(now + 15_000 + rng.expovariate(1.0 / cfg.refund_delay_ms), REFUND, (room, ev))
        return self._add(room, action, ev, False)

    def _schedule(self, due: float, action: int, data: Any) -> None:
        self._seq += 1  # tie-breaker: the heap never compares payloads
        heapq.heappush(self._heap, (due, self._seq, action, data))

    # -- batching -------------------------------------------------------------------------------------

    def _add(self, room: int, kind: int, ev: dict[str, Any], dup: bool) -> Message | None:
        """Buffer one event (or re-send); return the message if its buffer became full."""
        cfg = self.config
        if not dup:
            self.counts.by_type[TYPE_NAMES[kind]] += 1
            if self._rng.random() < cfg.duplicate_share:
                self._schedule(self._now + self._rng.random() * cfg.retry_delay_ms, RETRY, (room, kind, ev))
        slot = room * 3 + _TOPIC_OF[kind]
        buf = self._buffers.get(slot)
        if buf is None:
            buf = self._buffers[slot] = [self._now, [], 0]
            self._lingering.append((self._now, slot, buf))
        buf[1].append(ev)
        buf[2] += dup
        return self._flush(slot) if len(buf[1]) >= cfg.batch_size else None

    def _flush(self, slot: int) -> Message:
        _, events, dups = self._buffers.pop(slot)
        room, topic = divmod(slot, 3)
        self.counts.messages += 1
        value = orjson.dumps(events if self.config.batch_size > 1 else events[0])
        return Message(
            self.topics.inputs[topic], self.population.keys[room], value, events, False, None, dups
        )
