"""The fixed cast of a generated campaign: rooms, creators, agencies, merchants, products and users.

Built once from the model's seeded RNG, so the same seed gives the same cast. Room index 0 is the head
room (largest Zipf weight, or the `hot_room_share` room) and is hosted by creator index 0, the head
creator. Ids are large positive integers shaped like real platform ids and always within 1..2^63-1.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

ROOM_BASE = 7_300_000_000_000_000_000  # 19-digit room ids, like Douyin's
CREATOR_BASE = 3_000_000_000
MCN_BASE = 90_000
MERCHANT_BASE = 1_000_000
PRODUCT_BASE = 3_600_000_000_000_000_000
USER_BASE = 100_000_000
MCN_SHARE = 0.65  # share of creators signed to an agency (MCN 机构); the rest are independent
# category -> median price in CNY; prices are log-normal around it (a long tail up to a few thousand)
CATEGORIES = {
    "美妆个护": 129,
    "服饰内衣": 99,
    "食品饮料": 39,
    "家居日用": 59,
    "数码家电": 399,
    "母婴宠物": 89,
    "珠宝文玩": 599,
    "图书教育": 29,
}
_CATEGORY_NAMES = tuple(CATEGORIES)
# entry that brought the viewer (the `source` field): mostly the live feed and short videos (content field)
SOURCE_WEIGHTS = {"live_feed": 45, "short_video": 25, "search": 8, "mall": 6, "follow": 12, "other": 4}
# The named cast of deploy/dimensions.toml (pipeline/traffic/dimensions.py writes it from these rules):
# the first NAMED_CREATORS creators have a fixed kind and agency, brand accounts sell their own shop's
# products.
NAMED_CREATORS, MCNS, MERCHANTS = 200, 12, 300


def creator_kind(i: int) -> str:
    """Creator index i's kind: a few celebrities (明星) and brand self-broadcasts (商家自播) among 达人."""
    if i % 13 == 3:
        return "celebrity"
    if i % 9 == 5:
        return "brand"
    return "creator"


def creator_mcn_of(i: int) -> int:
    """The agency of creator index i (0 = independent); brand accounts have none."""
    if creator_kind(i) == "brand" or i % 3 == 2:
        return 0
    return MCN_BASE + 1 + (i // 3 * 5 + i % 3) % MCNS


def brand_merchant(i: int) -> int:
    return MERCHANT_BASE + 1 + (i * 11) % MERCHANTS


class Product(NamedTuple):
    product_id: int
    merchant_id: int
    category: str
    price_fen: int


class Population:
    """Rooms (by index), their creators, agencies and product lists, and the user pool."""

    def __init__(self, rng: random.Random, cfg: Any):
        rooms, creators = cfg.rooms, cfg.creators
        self.users = cfg.users
        self.room_ids = [ROOM_BASE + i + 1 for i in range(rooms)]
        self.keys = [str(room_id).encode() for room_id in self.room_ids]
        # Every creator hosts at least one room (room i -> creator i for the first `creators` rooms);
        # the remaining rooms go to creators by Zipf, so head creators host many rooms.
        creator_weights = list(itertools.accumulate(zipf_weights(creators, cfg.zipf_s)))
        extra = rng.choices(range(creators), cum_weights=creator_weights, k=rooms - creators)
        room_creator = list(range(creators)) + extra
        agencies = max(1, creators // 20)
        creator_mcn = [
            MCN_BASE + 1 + int(agencies * rng.random() ** 2) if rng.random() < MCN_SHARE else 0
            for _ in range(creators)
        ]
        # The named cast's agencies come from the registry rules, so events agree with deploy/dimensions.toml
        # (the random draws above still happen: the same seed gives the same traffic otherwise).
        creator_mcn[:NAMED_CREATORS] = [creator_mcn_of(c) for c in range(min(creators, NAMED_CREATORS))]
        self.room_creator_ids = [CREATOR_BASE + c + 1 for c in room_creator]
        self.room_mcn = [creator_mcn[c] for c in room_creator]
        self.room_creator = dict(zip(self.room_ids, self.room_creator_ids, strict=True))
        merchants = max(1, rooms // 2)
        self.products: list[list[Product]] = []
        self.product_by_id: dict[int, Product] = {}
        for _ in range(rooms):
            catalogue = []
            for _ in range(5 + int(rng.random() * 20)):
                category = _CATEGORY_NAMES[int(rng.random() * len(_CATEGORY_NAMES))]
                yuan = math.exp(rng.gauss(math.log(CATEGORIES[category]), 0.9))
                # Prices end in .90 (9.9, 99.9 ...) as shop prices do; 9.90 CNY to 4999.90 CNY.
                price_fen = min(4999, max(9, int(yuan))) * 100 + 90
                merchant = MERCHANT_BASE + 1 + int(merchants * rng.random() ** 2)
                owner = room_creator[len(self.products)]
                if owner < NAMED_CREATORS and creator_kind(owner) == "brand":
                    merchant = brand_merchant(owner)  # 商家自播: a brand's room sells its own shop
                product = Product(PRODUCT_BASE + len(self.product_by_id) + 1, merchant, category, price_fen)
                catalogue.append(product)
                self.product_by_id[product.product_id] = product
            self.products.append(catalogue)
        self._room_weights = room_weights(rooms, cfg.zipf_s, cfg.hot_room_share)

    def room_stream(self, rng: random.Random) -> Iterator[int]:
        """Endless room indexes drawn by traffic weight."""
        return weighted_stream(rng, range(len(self.room_ids)), self._room_weights)

    def user(self, u: float) -> int:
        """The user for a uniform draw `u`: skewed so that regulars come back (viewers < views)."""
        return USER_BASE + 1 + int(self.users * u * u)

    def product(self, room: int, u: float) -> Product:
        """A product of the room's catalogue for a uniform draw `u`; the first ones are the hot items."""
        catalogue = self.products[room]
        return catalogue[int(len(catalogue) * u * u)]


def weighted_stream(rng: random.Random, values: Sequence[Any], weights: Sequence[float]) -> Iterator[Any]:
    """Endless weighted draws, made 4096 at a time: one `choices` call is far cheaper than 4096 bisects."""
    cum_weights = list(itertools.accumulate(weights))
    while True:
        yield from rng.choices(values, cum_weights=cum_weights, k=4096)


def zipf_weights(n: int, s: float) -> list[float]:
    """Weights 1/rank^s for ranks 1..n."""
    return [1.0 / math.pow(rank, s) for rank in range(1, n + 1)]


def room_weights(rooms: int, s: float, hot_share: float | None) -> list[float]:
    """Zipf weights; with `hot_share`, room 0's weight is raised so it gets that share of the total."""
    weights = zipf_weights(rooms, s)
    if hot_share is not None and rooms > 1:
        weights[0] = hot_share / (1 - hot_share) * sum(weights[1:])
    return weights
