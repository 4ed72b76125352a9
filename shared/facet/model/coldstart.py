"""Cold start for new items: how a launched item the model has never trained on gets ranked.

Three measured pieces (``facet eval --cold-start``), one policy object, used the same way offline and by
the regional recommender:

- **neighbour rows**: a new item's id embedding, bias and "bought together" vector start as the mean of
  those of warm items from its finest matching attribute group (meta-embedding style), so it is ranked
  like the pieces it resembles instead of like an item with no history at all (its hashed row is
  untrained, or belongs to another item it collided with);
- **a cold offset**: one score added to every new item, calibrating "never trained on" against warm
  items whose scores the training has pushed up;
- **a launch trend**: new items gain ``trend_weight ×`` how much more they were stepped to in the region
  recently than the average warm item (:func:`launch_trend`), so a launch that shoppers take to rises
  before the next model version has learned it;
- **launch slots** (:func:`top_k_with_launch_slots`): the top K holds at least ``launch_slots`` new items,
  each the shopper's best-scored launch, at the bottom of the list, as long as its score is within
  ``launch_slot_margin`` of the K-th item's. Unlike the offset, which lifts every launch above warm
  pieces at every position, a slot only ever displaces the last warm pieces of the list, so its cost
  to warm quality is bounded by the hits at those positions; the margin keeps launches the shopper's
  own history scores far below out of it.

``facet eval --cold-start`` chooses the policy on a validation split inside the training period (the
most launch exposure whose cost to overall NDCG@10 stays inside a budget) and measures it on the test
period; the defaults below come from that measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from facet.model.features import ATTRIBUTE_FIELDS, NUM_ITEM_FEATURES, PRICE_SLOT
from facet.model.network import ItemTensors, SequenceRecommender

CATEGORY, METAL, GEM = (ATTRIBUTE_FIELDS.index(name) for name in ("category", "metal", "gem"))
#: Where a new item's neighbours come from, finest first (the attribute slots that must match).
NEIGHBOUR_LEVELS = (tuple(range(NUM_ITEM_FEATURES)), (CATEGORY, METAL, GEM, PRICE_SLOT), (CATEGORY, METAL, GEM),
                    (CATEGORY, METAL), (CATEGORY,))


class ColdStartPolicy(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Defaults: the policy ``facet eval --cold-start --dataset synthetic`` chose on its validation split
    # for seed 0 (2026-12-03): neighbour rows, the launch trend and three launch slots, no offset. On the
    # test periods of seeds 0, 1 and 2 (the last two chose differently on their own validation, so for
    # them this choice is out of sample): launch HR@10 0.45 / 0.52 / 0.50 (the model alone 0.003), overall
    # NDCG@10 0.989 / 1.016 / 0.995 of the model alone. The offset alone reached 0.41 at 0.952.
    #: Warm items averaged into a new item's rows; 0 leaves its hashed rows as they are.
    neighbours: int = Field(default=20, ge=0, le=1000)
    cold_offset: float = Field(default=0.0, ge=-20, le=20)
    trend_weight: float = Field(default=1.0, ge=0, le=20)
    #: New items the top K always holds (when they score close enough to the K-th item); 0: none.
    launch_slots: int = Field(default=3, ge=0, le=10)
    #: How far (in score) below the K-th item a launch may be and still take a slot.
    launch_slot_margin: float = Field(default=2.0, ge=0, le=100)

    @classmethod
    def off(cls) -> ColdStartPolicy:
        """The model as trained: no neighbour rows, no offset, no trend, no slots."""
        return cls(neighbours=0, cold_offset=0.0, trend_weight=0.0, launch_slots=0)


def attribute_neighbours(attributes: np.ndarray, cold: np.ndarray, k: int) -> np.ndarray:
    """For each cold item (in index order), ``k`` warm items like it: those with all the same attributes
    first, then the same category, metal, gem and price band, then category, metal and gem, then category
    and metal, then category, then any; the lowest indices first within a level. int64 [cold items, k].

    Grouping instead of scoring every pair keeps this linear in the catalogue: the recommender runs it
    whenever its model or catalogue changes (an all-pairs search took a second at 10k items)."""
    warm_index = np.flatnonzero(~cold)
    cold_index = np.flatnonzero(cold)
    k = min(k, len(warm_index))
    if k == 0 or not len(cold_index):
        return np.zeros((len(cold_index), k), dtype=np.int64)
    levels = [list(level) for level in NEIGHBOUR_LEVELS] + [[]]
    # Per level: warm items sorted by group (by index within it), and where each cold item's group sits.
    spans = []
    for level in levels:
        group = (np.unique(attributes[:, level], axis=0, return_inverse=True)[1].reshape(-1) if level
                 else np.zeros(len(attributes), dtype=np.int64))
        order = np.argsort(group[warm_index], kind="stable")
        grouped = group[warm_index][order]
        wanted = group[cold_index]
        spans.append((warm_index[order], np.searchsorted(grouped, wanted, "left"),
                      np.searchsorted(grouped, wanted, "right")))
    chosen = np.empty((len(cold_index), k), dtype=np.int64)
    for row in range(len(cold_index)):
        picked: dict[int, None] = {}
        for members, starts, ends in spans:
            picked.update(dict.fromkeys(members[starts[row] : min(ends[row], starts[row] + k)].tolist()))
            if len(picked) >= k:
                break
        chosen[row] = list(picked)[:k]
    return chosen


@dataclass(frozen=True)
class ColdReadyModel:
    """A model ready to rank a catalogue with new items: its tables extended by one row per new item
    (the neighbours' mean), the catalogue's buckets pointing new items at those rows, and the item
    vectors computed once."""

    model: SequenceRecommender
    items: ItemTensors
    vectors: torch.Tensor
    cold: torch.Tensor
    policy: ColdStartPolicy

    def rank(self, histories: Sequence[Sequence[int]], regions: Sequence[int],
             recent_interactions: np.ndarray | None = None) -> torch.Tensor:
        """Scores [len(histories), N]; ``recent_interactions`` ([N] or [len(histories), N]) feeds the
        launch trend."""
        scores = self.model.rank(self.items, histories, regions, self.vectors)
        return adjust_cold_scores(scores, self.cold, self.policy, recent_interactions)


def launch_trend(recent_interactions: np.ndarray, cold: np.ndarray) -> np.ndarray:
    """float32 [M, N] (or [N]): how much more a new item was stepped to recently than the average warm
    item in the same window, ``log(1 + c) - log(1 + mean warm c)``, and 0 for warm items. Relative, so
    the same weight means the same thing at 10 and at 10,000 events a minute (a raw count would lift
    launches further the busier the region is)."""
    counts = np.asarray(recent_interactions, dtype=np.float32)
    warm = ~np.asarray(cold, dtype=bool)
    typical = counts[..., warm].mean(axis=-1, keepdims=True) if warm.any() else np.zeros_like(counts[..., :1])
    return ((np.log1p(counts) - np.log1p(typical)) * ~warm).astype(np.float32)


def cold_lift(cold: np.ndarray, policy: ColdStartPolicy, trend: np.ndarray | None = None) -> np.ndarray:
    """What the policy adds to each item's score: the offset on new items, plus ``trend_weight`` times
    their :func:`launch_trend` (already computed, so a search over weights computes it once)."""
    lift = policy.cold_offset * np.asarray(cold, dtype=np.float32)
    if trend is not None and policy.trend_weight:
        lift = lift + policy.trend_weight * trend
    return lift.astype(np.float32)


def adjust_cold_scores(scores: torch.Tensor, cold: torch.Tensor, policy: ColdStartPolicy,
                       recent_interactions: np.ndarray | None = None) -> torch.Tensor:
    """Add the cold offset and the launch trend to new items' scores (pure; returns a new tensor)."""
    trend = launch_trend(recent_interactions, cold.numpy()) if recent_interactions is not None else None
    return scores + torch.from_numpy(cold_lift(cold.numpy(), policy, trend)).to(scores.dtype)


def untrained_items(model: SequenceRecommender, buckets: torch.Tensor) -> np.ndarray:
    """bool [N]: items whose hashed id row the federation has never trained (still all zeros). Rows start
    at zero and only move when a learner trains on the item, and the update codecs send untouched rows
    as exactly zero, so this is "new to the global model" (an item sharing its row with a trained one
    by a hash collision counts as trained, as it is ranked with that row)."""
    with torch.no_grad():
        return (model.item_id.weight[buckets].abs().sum(dim=1) == 0).numpy()


def _sharing_copy(model: SequenceRecommender) -> SequenceRecommender:
    """A copy that shares every parameter with ``model`` but has its own table of submodules, so
    replacing its item tables leaves ``model`` untouched (a deep copy would duplicate the encoder on
    every catalogue change)."""
    clone = copy.copy(model)
    clone._modules = dict(model._modules)
    clone._parameters = dict(model._parameters)
    return clone


def prepare_cold_items(model: SequenceRecommender, items: ItemTensors, cold: np.ndarray,
                       policy: ColdStartPolicy) -> ColdReadyModel:
    """Build the ranking-ready model for a catalogue whose ``cold`` items (bool [N]) are new."""
    buckets, attributes = items
    cold_tensor = torch.from_numpy(np.asarray(cold, dtype=bool))
    ready = model
    if policy.neighbours and cold.any() and (~cold).any():
        neighbours = torch.from_numpy(attribute_neighbours(attributes.numpy(), cold, policy.neighbours))
        ready = _sharing_copy(model)
        first_new_row = ready.item_id.num_embeddings
        with torch.no_grad():
            for name in ("item_id", "item_bias", "companion"):
                table: nn.Embedding | None = getattr(ready, name, None)
                if table is None:
                    continue
                rows = table.weight[buckets[neighbours]].mean(dim=1)
                setattr(ready, name, nn.Embedding.from_pretrained(torch.cat([table.weight, rows]), freeze=True))
        buckets = buckets.clone()
        buckets[cold_tensor] = first_new_row + torch.arange(int(cold_tensor.sum()))
    ready.eval()
    with torch.no_grad():
        vectors = ready.item_vectors(buckets, attributes)
    return ColdReadyModel(ready, (buckets, attributes), vectors, cold_tensor, policy)


def top_k_with_launch_slots(scores: torch.Tensor, cold: torch.Tensor, policy: ColdStartPolicy, k: int,
                            order: torch.Tensor | None = None) -> torch.Tensor:
    """int64 [B, min(k, N)]: each row's top k items, best first, holding at least ``policy.launch_slots``
    new items where enough new items score within ``launch_slot_margin`` of the row's k-th item (never
    one scored -inf, e.g. excluded). The list is the best ``c`` new items and the best ``k - c`` warm ones,
    ordered by score, with ``c`` the larger of how many new items the plain top k holds and how many
    qualify for a slot: a slotted launch scored below every item it joins, so it sits at the bottom and
    displaces only the last warm items. Without slots (or without new items) this is ``topk``.

    ``order`` is the scores' descending stable argsort, when the caller already has it (a search over
    several slot settings for the same scores sorts once)."""
    rows, items = scores.shape
    k = min(k, items)
    cold = cold.to(torch.bool)
    new_items = int(cold.sum())
    slots = min(policy.launch_slots, k, new_items)
    if slots == 0 or new_items == items:
        return torch.topk(scores, k, dim=1).indices
    if order is None:
        order = torch.argsort(scores, dim=1, descending=True, stable=True)
    ordered = scores.gather(1, order)
    is_new = cold[order]
    rank_in_class = torch.where(is_new, is_new.cumsum(dim=1), (~is_new).cumsum(dim=1)) - 1
    # New items already in the plain top k, and the best `slots` new items close enough to its k-th item.
    already = is_new[:, :k].sum(dim=1, keepdim=True)
    qualifying = (is_new & (rank_in_class < slots) & torch.isfinite(ordered)
                  & (ordered >= ordered[:, k - 1 : k] - policy.launch_slot_margin)).sum(dim=1, keepdim=True)
    new_quota = torch.maximum(already, qualifying)
    kept = torch.where(is_new, rank_in_class < new_quota, rank_in_class < k - new_quota)
    positions = torch.arange(items).expand(rows, items)
    # Kept positions first, in score order; if a class runs short, the next items by score fill the list.
    chosen = torch.sort(torch.where(kept, positions, positions + items), dim=1).values[:, :k] % items
    return order.gather(1, chosen)
