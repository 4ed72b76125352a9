"""What a regional recommender knows: the catalogue, shoppers' recent items and purchases (bounded),
regional trends, and the model it serves (swapped atomically as one immutable object)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from facet.contracts import BehaviourEvent, EventType, ItemAttributes
from facet.model.coldstart import (
    ColdReadyModel,
    ColdStartPolicy,
    prepare_cold_items,
    top_k_with_launch_slots,
    untrained_items,
)
from facet.model.features import ItemCatalogue
from facet.model.histories import ShopperHistories
from facet.model.network import ModelConfig, SequenceRecommender
from facet.model.training import catalogue_tensors
from facet.service.announcements import CatalogueFull


@dataclass(frozen=True)
class ServingModel:
    version: int
    model: SequenceRecommender
    #: The model ready to rank the first ``items`` catalogue entries, new items (untrained rows) given
    #: their attribute neighbours' rows (rebuilt as the catalogue grows).
    ready: ColdReadyModel
    items: int


class RegionalState:
    def __init__(
        self,
        config: ModelConfig,
        region: str,
        *,
        max_shoppers: int,
        max_purchases: int,
        max_items: int,
        trend_half_life: float,
        cold_start: ColdStartPolicy | None = None,
    ) -> None:
        self.config = config
        self.region = region
        self.space = config.feature_space()
        self.region_bucket = self.space.region_bucket(region)
        self.catalogue = ItemCatalogue(self.space)
        self.max_purchases = max_purchases
        self.max_items = max_items
        self.histories = ShopperHistories(max_shoppers, config.max_history)
        self.purchases: dict[str, set[int]] = {}
        #: The storefront each remembered shopper was last seen on: only that storefront's keys read them.
        self.storefronts: dict[str, str] = {}
        self.cold_start = cold_start or ColdStartPolicy()
        self.trend = np.zeros(1024, dtype=np.float64)
        #: Steps per item, decayed like the trend: the launch trend of new items (every step counts 1).
        self.steps = np.zeros(1024, dtype=np.float64)
        self._trend_decay = math.exp(math.log(0.5) / trend_half_life)
        self._trend_scale = 1.0
        self.serving: ServingModel | None = None
        self.events_seen = 0
        #: Prequential quality: before an event is learned from, rank its item with the serving model.
        self.online_eval_every = 10
        self.online_ndcg10: float | None = None

    # ---- state from the region's events -------------------------------------------------------
    def observe(self, event: BehaviourEvent) -> None:
        if len(self.catalogue) >= self.max_items and event.item_id not in self.catalogue.index:
            return
        item = self.catalogue.add_event(event)
        self.events_seen += 1
        recorded = self.histories.record(event.shopper_id, item)
        if recorded.is_next_item and self.events_seen % self.online_eval_every == 0:
            self._online_eval(list(recorded.previous), item)
        if not recorded.previous or recorded.previous[-1] != item:
            self.steps = self._bump(self.steps, item, 1.0)
        if recorded.evicted is not None:
            self.purchases.pop(recorded.evicted, None)
            self.storefronts.pop(recorded.evicted, None)
        self.storefronts[event.shopper_id] = event.storefront
        if event.event_type is EventType.PURCHASE:
            bought = self.purchases.setdefault(event.shopper_id, set())
            if len(bought) < self.max_purchases:
                bought.add(item)
        self._bump_trend(item, {"view": 1.0, "search": 1.0, "cart": 3.0, "purchase": 5.0}[event.event_type.value])

    def announce_item(self, item_id: str, attributes: ItemAttributes, price: float | None, currency: str | None) -> int:
        """A brand-new item with attributes: rankable at once, before anyone has touched it.

        Raises :class:`CatalogueFull` when a new id would pass ``max_items`` (re-announcing is fine)."""
        if item_id not in self.catalogue.index and len(self.catalogue) >= self.max_items:
            raise CatalogueFull(f"the catalogue holds its maximum of {self.max_items} items")
        return self.catalogue.add(item_id, attributes, price, currency)

    def shopper_view(self, shopper: str, storefront: str | None) -> tuple[list[int], set[int]]:
        """(recent items, purchases) of a shopper as one storefront may see them: a shopper last seen on
        another storefront looks exactly like an unknown one, so a key learns nothing it does not own."""
        if storefront is None or self.storefronts.get(shopper) != storefront:
            return [], set()
        return self.histories.items_of(shopper), set(self.purchases.get(shopper, ()))

    def _bump_trend(self, item: int, weight: float) -> None:
        # Exponential decay without touching every count: grow the scale of new mass instead.
        self._trend_scale /= self._trend_decay
        if self._trend_scale > 1e100:
            self.trend /= self._trend_scale
            self.steps /= self._trend_scale
            self._trend_scale = 1.0
        self.trend = self._bump(self.trend, item, weight)

    def _bump(self, counts: np.ndarray, item: int, weight: float) -> np.ndarray:
        if item >= counts.size:
            counts = np.concatenate([counts, np.zeros(max(item + 1, counts.size * 2) - counts.size)])
        counts[item] += weight * self._trend_scale
        return counts

    def _online_eval(self, history: list[int], item: int) -> None:
        serving = self.current()
        if serving is None or item >= serving.items:
            return
        top = self._top_k(serving, self._scores(serving, history), 10).tolist()
        gain = 1.0 / math.log2(top.index(item) + 2) if item in top else 0.0
        # Exponential moving average over roughly the last 200 evaluations.
        self.online_ndcg10 = gain if self.online_ndcg10 is None else 0.995 * self.online_ndcg10 + 0.005 * gain

    def trend_scores(self, items: int) -> np.ndarray:
        return self._decayed(self.trend, items)

    def recent_steps(self, items: int) -> np.ndarray:
        """Each item's decayed count of shopper steps in the region: how a launch is taking off."""
        return self._decayed(self.steps, items)

    def _decayed(self, counts: np.ndarray, items: int) -> np.ndarray:
        out = np.zeros(items)
        upto = min(items, counts.size)
        out[:upto] = counts[:upto] / self._trend_scale
        return out

    def _scores(self, serving: ServingModel, history: list[int]) -> torch.Tensor:
        return serving.ready.rank([history], [self.region_bucket], self.recent_steps(serving.items))[0]

    def _top_k(self, serving: ServingModel, scores: torch.Tensor, k: int) -> torch.Tensor:
        """The top k item indices as served: by score, with the cold-start policy's launch slots."""
        return top_k_with_launch_slots(scores[None], serving.ready.cold, serving.ready.policy, k)[0]

    # ---- the model ------------------------------------------------------------------------------
    def load_model(self, parameters: dict[str, torch.Tensor], version: int) -> None:
        model = SequenceRecommender(self.config)
        model.load_state_dict(parameters)
        model.eval()
        self.serving = self._with_vectors(model, version)

    def _with_vectors(self, model: SequenceRecommender, version: int) -> ServingModel:
        items = catalogue_tensors(self.catalogue)
        new = untrained_items(model, items[0])
        return ServingModel(version, model, prepare_cold_items(model, items, new, self.cold_start), len(new))

    def current(self) -> ServingModel | None:
        """The serving model, rebuilt whenever the catalogue has grown: every item a shopper's history or
        exclusions may name must have a row (a rebuild costs ~0.1 s at 10k items, 2k of them new)."""
        serving = self.serving
        if serving is not None and serving.items != len(self.catalogue):
            serving = self.serving = self._with_vectors(serving.model, serving.version)
        return serving

    # ---- ranking --------------------------------------------------------------------------------
    def recommend(
        self, history: list[int], k: int, exclude: set[int], trend_weight: float
    ) -> tuple[ServingModel, list[tuple[str, float]], str]:
        serving = self.current()
        if serving is None:
            raise LookupError("no model loaded yet")
        items = serving.items
        if items == 0:
            raise LookupError("the catalogue is still empty")
        scores = self._scores(serving, history)
        strategy = "sequence"
        if len(history) < 2 and trend_weight > 0:
            # Cold start: the model's regional prior blended with what is trending in the region now.
            trend = torch.from_numpy(np.log1p(self.trend_scores(items))).float()
            weight = trend_weight if not history else trend_weight / 2
            scores = scores + weight * trend / max(float(trend.max()), 1e-6) * float(scores.std() + 1e-6) * 3
            strategy = "cold_start" if not history else "sequence+trend"
        if exclude:
            scores[list(exclude)] = -torch.inf
        top = self._top_k(serving, scores, k)
        ranked = [
            (self.catalogue.item_ids[i], float(s))
            for i, s in zip(top.tolist(), scores[top].tolist(), strict=True)
            if math.isfinite(s)
        ]
        return serving, ranked, strategy
