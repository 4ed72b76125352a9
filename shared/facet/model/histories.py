"""The one bounded store of shoppers' recent items, used by the trainer (to cut examples) and the
recommender (to rank): each shopper's last ``length`` items, consecutive repeats collapsed (view → cart
→ buy of one item is one step), for at most ``max_shoppers`` shoppers, the least recently seen evicted.
Memory is bounded by max_shoppers × length, whatever the stream."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Recorded:
    """What recording one event did: the shopper's items before it, the item, and who was evicted."""

    previous: tuple[int, ...]
    item: int
    evicted: str | None

    @property
    def is_next_item(self) -> bool:
        """A next-item example: the shopper had a history and this item is not a repeat of its last."""
        return bool(self.previous) and self.previous[-1] != self.item


class ShopperHistories:
    def __init__(self, max_shoppers: int, length: int) -> None:
        if max_shoppers < 1 or length < 1:
            raise ValueError("max_shoppers and length must be positive")
        self.max_shoppers = max_shoppers
        self.length = length
        self._recent: OrderedDict[str, deque[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._recent)

    def __contains__(self, shopper: object) -> bool:
        return shopper in self._recent

    def items_of(self, shopper: str) -> list[int]:
        """The shopper's recent items, oldest first; empty when unknown (or evicted)."""
        return list(self._recent.get(shopper, ()))

    def sequences(self) -> list[list[int]]:
        """Every shopper's recent items, oldest first (least recently seen shopper first)."""
        return [list(recent) for recent in self._recent.values()]

    def record(self, shopper: str, item: int) -> Recorded:
        recent = self._recent.get(shopper)
        evicted = None
        if recent is None:
            recent = self._recent[shopper] = deque(maxlen=self.length)
            if len(self._recent) > self.max_shoppers:
                evicted, _ = self._recent.popitem(last=False)
        else:
            self._recent.move_to_end(shopper)
        previous = tuple(recent)
        if not recent or recent[-1] != item:
            recent.append(item)
        return Recorded(previous, item, evicted)
