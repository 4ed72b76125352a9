"""The trainer's bounded example buffer: each shopper's recent items (LRU-capped) and the next-item
examples not yet trained on, handed out as ``Windows`` (the model's right-padded rows of predictions).
Memory is bounded by the shopper cap × history length, whatever the stream size."""

from __future__ import annotations

import numpy as np
from facet.contracts import BehaviourEvent
from facet.model.examples import PAD, Windows
from facet.model.features import ItemCatalogue
from facet.model.histories import ShopperHistories
from facet.privacy.shoppers import ShopperWindows, shopper_windows


class ExampleBuffer:
    def __init__(self, catalogue: ItemCatalogue, history: int, max_shoppers: int, max_items: int,
                 replay_examples: int = 0, seed: int = 0, collect_examples: bool = True) -> None:
        self.catalogue = catalogue
        self.history = history
        self.max_shoppers = max_shoppers
        self.max_items = max_items
        self._histories = ShopperHistories(max_shoppers, history)
        self._inputs: list[list[int]] = []
        self._targets: list[int] = []
        self._regions: list[int] = []
        #: A bounded ring of recent examples replayed next to new ones: a stream is seen once, and one
        #: pass is too little for a fresh model to learn from (memory: replay_examples × history ints).
        self.replay_examples = replay_examples
        self._replay_inputs = np.full((replay_examples, history), PAD, dtype=np.int64)
        self._replay_targets = np.full((replay_examples, history), PAD, dtype=np.int64)
        self._replay_regions = np.zeros(replay_examples, dtype=np.int64)
        self._replay_filled = 0
        self._replay_next = 0
        self._rng = np.random.default_rng(seed)
        #: False under DP: training reads whole shoppers (:meth:`shopper_windows`), not pending examples.
        self.collect_examples = collect_examples

    def __len__(self) -> int:
        return len(self._targets)

    @property
    def shoppers(self) -> int:
        return len(self._histories)

    def add(self, event: BehaviourEvent, region_bucket: int) -> bool:
        """Remember the event; True when it produced a training example (a next item after a history)."""
        if len(self.catalogue) >= self.max_items and event.item_id not in self.catalogue.index:
            return False  # catalogue full: the item is still ranked by attributes where it is known
        recorded = self._histories.record(event.shopper_id, self.catalogue.add_event(event))
        if not recorded.is_next_item or not self.collect_examples:
            return recorded.is_next_item
        self._inputs.append(list(recorded.previous))
        self._targets.append(recorded.item)
        self._regions.append(region_bucket)
        return True

    def shopper_windows(self, region_bucket: int) -> ShopperWindows:
        """Every shopper in the window with their recent items as one window: the population DP-SGD samples."""
        return shopper_windows([(region_bucket, items) for items in self._histories.sequences()], self.history)

    def take(self) -> Windows:
        """The pending examples as single-target windows; the pending list empties."""
        count = len(self._targets)
        inputs = np.full((count, self.history), PAD, dtype=np.int64)
        targets = np.full((count, self.history), PAD, dtype=np.int64)
        for row, (history, target) in enumerate(zip(self._inputs, self._targets, strict=True)):
            inputs[row, : len(history)] = history
            targets[row, len(history) - 1] = target
        regions = np.asarray(self._regions, dtype=np.int64)
        self._inputs, self._targets, self._regions = [], [], []
        if self.replay_examples == 0:
            return Windows(inputs, targets, regions)
        replayed = self._rng.integers(0, self._replay_filled, size=min(count, self._replay_filled)) \
            if self._replay_filled else np.zeros(0, dtype=np.int64)
        windows = Windows(
            np.concatenate([inputs, self._replay_inputs[replayed]]),
            np.concatenate([targets, self._replay_targets[replayed]]),
            np.concatenate([regions, self._replay_regions[replayed]]),
        )
        for row in range(count):
            slot = self._replay_next
            self._replay_inputs[slot], self._replay_targets[slot] = inputs[row], targets[row]
            self._replay_regions[slot] = regions[row]
            self._replay_next = (slot + 1) % self.replay_examples
            self._replay_filled = min(self._replay_filled + 1, self.replay_examples)
        return windows
