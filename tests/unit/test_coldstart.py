"""Cold start for launched items: neighbour rows, the cold offset and the launch trend, on a toy world
where a new item's attributes are the only thing that can tell it apart."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import numpy as np
import torch
from facet.contracts import BehaviourEvent, EventType, ItemAttributes
from facet.evaluation.launches import launch_split
from facet.model.coldstart import (
    ColdStartPolicy,
    adjust_cold_scores,
    attribute_neighbours,
    prepare_cold_items,
    top_k_with_launch_slots,
    untrained_items,
)
from facet.model.examples import make_windows
from facet.model.features import FeatureSpace, ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.model.training import catalogue_tensors, train_epochs

SPACE = FeatureSpace(id_buckets=1024, attribute_buckets=256, region_buckets=8)
CONFIG = ModelConfig(id_buckets=1024, attribute_buckets=256, region_buckets=8, dim=16, max_history=8)
METALS = ("gold", "silver", "platinum", "rose-gold")


def _world() -> tuple[ItemCatalogue, list[tuple[int, list[int]]], int]:
    """40 warm items in four metals (10 each) and one new gold ring nobody has touched. Shoppers stay
    within one metal, choosing any of its pieces: what a gold shopper wants next is any gold piece, and
    training teaches every warm gold piece's own row so, while the new ring's row stays empty."""
    catalogue = ItemCatalogue(space=SPACE)
    for index in range(40):
        catalogue.add(f"warm-{index}", ItemAttributes(category="ring", metal=METALS[index % 4]), 100.0, "USD")
    new = catalogue.add("new-gold", ItemAttributes(category="ring", metal="gold"), 100.0, "USD")
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(1500):
        metal = int(rng.integers(4))
        same = [i for i in range(40) if i % 4 == metal]
        sequences.append((0, [int(i) for i in rng.choice(same, size=6, replace=False)]))
    return catalogue, sequences, new


@functools.cache
def _trained() -> tuple[ItemCatalogue, torch.nn.Module, int]:
    catalogue, sequences, new = _world()
    model = new_model(CONFIG, seed=0)
    train_epochs(model, catalogue, make_windows(sequences, CONFIG.max_history), epochs=3, seed=0)
    return catalogue, model, new


def test_neighbours_come_from_the_finest_matching_group_first() -> None:
    # category, metal, gem, colour, gender, brand, price band
    attributes = np.array([
        [1, 1, 1, 1, 1, 1, 1],  # 0: all the same as the new item
        [1, 1, 1, 0, 0, 0, 1],  # 1: same category, metal, gem and price band
        [1, 1, 0, 0, 0, 0, 0],  # 2: same category and metal
        [2, 2, 2, 2, 2, 2, 2],  # 3: nothing in common
        [1, 1, 1, 1, 1, 1, 1],  # 4: the new item
        [1, 0, 0, 0, 0, 0, 0],  # 5: same category
    ])
    cold = np.array([False, False, False, False, True, False])
    assert attribute_neighbours(attributes, cold, 4).tolist() == [[0, 1, 2, 5]]
    assert attribute_neighbours(attributes, cold, 5).tolist() == [[0, 1, 2, 5, 3]]


def test_untrained_items_are_the_ones_training_never_touched() -> None:
    catalogue, model, new = _trained()
    buckets, _ = catalogue_tensors(catalogue)
    untrained = untrained_items(model, buckets)
    assert untrained[new] and not untrained[:new].any()


def test_a_new_item_gets_its_neighbours_rows_without_touching_the_model() -> None:
    catalogue, model, new = _trained()
    items = catalogue_tensors(catalogue)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cold = untrained_items(model, items[0])
    ready = prepare_cold_items(model, items, cold, ColdStartPolicy(neighbours=5, cold_offset=0, trend_weight=0))
    neighbours = attribute_neighbours(items[1].numpy(), cold, 5)[0]
    assert {i % 4 for i in neighbours.tolist()} == {0}  # gold rings
    expected = model.item_id.weight[items[0][neighbours]].mean(dim=0)
    assert torch.allclose(ready.model.item_id.weight[ready.items[0][new]], expected)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Warm items are ranked exactly as before.
    plain = model.rank(items, [[0, 4]], [0])
    assert torch.allclose(ready.rank([[0, 4]], [0])[0, :new], plain[0, :new], atol=1e-5)


def test_the_cold_path_ranks_a_new_gold_ring_with_the_warm_gold_pieces() -> None:
    catalogue, model, new = _trained()
    items = catalogue_tensors(catalogue)
    cold = untrained_items(model, items[0])
    gold_history = [[4, 8, 12]]
    off = prepare_cold_items(model, items, cold, ColdStartPolicy.off()).rank(gold_history, [0])[0]
    rows_only = prepare_cold_items(model, items, cold, ColdStartPolicy(neighbours=5, cold_offset=0.0,
                                                                       trend_weight=0)).rank(gold_history, [0])[0]
    on = prepare_cold_items(model, items, cold, ColdStartPolicy(neighbours=5, cold_offset=0.5,
                                                                trend_weight=0)).rank(gold_history, [0])[0]
    other_gold = [i for i in range(0, 40, 4) if i not in gold_history[0]]

    def rank(scores: torch.Tensor) -> int:
        return int((scores[:new] > scores[new]).sum())

    assert rank(off) >= len(other_gold) // 2  # without it: behind most warm gold pieces
    assert rank(rows_only) < rank(off)  # the neighbours' rows bring it level with them
    assert rank(on) <= 2  # and the offset puts the launch at the top of the gold pieces


def test_offset_and_trend_only_touch_new_items() -> None:
    scores = torch.zeros(2, 4)
    cold = torch.tensor([False, True, False, True])
    # Row 0: warm items average 1 step (log 2), the second launch had 3 (log 4): lifted by 2 × log 2; the
    # first had none: lowered by 2 × log 2. Row 1: nothing happened, nothing moves but the offset.
    recent = np.array([[2.0, 0.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]])
    adjusted = adjust_cold_scores(scores, cold, ColdStartPolicy(cold_offset=1.0, trend_weight=2.0), recent)
    lift = 2 * np.log(2)
    assert np.allclose(adjusted.numpy(), [[0.0, 1.0 - lift, 0.0, 1.0 + lift], [0.0, 1.0, 0.0, 1.0]], atol=1e-6)


def _event(shopper: str, item: str, at: datetime, region: str = "us") -> BehaviourEvent:
    return BehaviourEvent(occurred_at=at, region=region, storefront="s", shopper_id=shopper, session_id="x",
                          item_id=item, event_type=EventType.VIEW, attributes=ItemAttributes(metal="gold"))


def test_launch_split_makes_items_first_seen_after_the_cutoff_new() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [_event("a", "old-1", start), _event("a", "old-2", start + timedelta(hours=1)),
              _event("b", "old-1", start + timedelta(hours=2)), _event("c", "old-2", start + timedelta(hours=3)),
              _event("e", "launch", start + timedelta(hours=4), region="eu"),
              _event("a", "launch", start + timedelta(hours=5)), _event("b", "old-2", start + timedelta(hours=6)),
              _event("d", "launch", start + timedelta(hours=7))]
    launch = launch_split(events, SPACE, test_share=0.5)  # cutoff at 3.5 h
    index = launch.split.catalogue.index
    assert launch.new_items.tolist() == [False, False, True]
    assert all(index["launch"] not in items for _r, items in launch.split.train.values())
    cases = {(c.shopper, launch.split.catalogue.item_ids[c.target]): c for c in launch.split.tests}
    assert set(cases) == {("a", "launch"), ("b", "old-2")}  # d and e have no history to predict from
    assert cases[("a", "launch")].cold_item and not cases[("b", "old-2")].cold_item
    # The launch trend counts the region's steps strictly before the case: at 5 h, a has seen no launch
    # step in its region (e's is in eu); at 6 h, b's region has seen a's.
    counts = launch.recent_interactions([cases[("a", "launch")], cases[("b", "old-2")]])
    assert counts[0, index["launch"]] == 0 and counts[1, index["launch"]] == 1


def _slots(launch_slots: int, margin: float = 100.0) -> ColdStartPolicy:
    return ColdStartPolicy(launch_slots=launch_slots, launch_slot_margin=margin)


def test_launch_slots_put_the_best_launches_at_the_bottom_of_the_top_k() -> None:
    # Items 0-5 warm (scores 10 down to 5), items 6-8 new (scores 4, 3, 0.5).
    scores = torch.tensor([[10.0, 9, 8, 7, 6, 5, 4, 3, 0.5]])
    cold = torch.tensor([False] * 6 + [True] * 3)
    assert top_k_with_launch_slots(scores, cold, _slots(0), 4).tolist() == [[0, 1, 2, 3]]  # no slots
    assert top_k_with_launch_slots(scores, cold, _slots(2), 4).tolist() == [[0, 1, 6, 7]]
    # The margin keeps a launch scored far below the k-th item (7) out: only item 6 (4 ≥ 7 - 3.5) qualifies.
    assert top_k_with_launch_slots(scores, cold, _slots(2, margin=3.5), 4).tolist() == [[0, 1, 2, 6]]
    assert top_k_with_launch_slots(scores, cold, _slots(2, margin=0.5), 4).tolist() == [[0, 1, 2, 3]]


def test_launches_already_in_the_top_k_fill_slots_and_keep_their_place() -> None:
    scores = torch.tensor([[10.0, 9, 8, 7, 6], [10.0, 9, 8, 7, 6]])
    cold = torch.tensor([False, True, False, False, True])
    # Row by row the same: item 1 is new and second; one slot is already filled, so nothing moves.
    assert top_k_with_launch_slots(scores, cold, _slots(1), 3).tolist() == [[0, 1, 2], [0, 1, 2]]
    # Two slots: the other launch (item 4) takes the last place, item 2 (warm) leaves.
    assert top_k_with_launch_slots(scores, cold, _slots(2), 3).tolist() == [[0, 1, 4], [0, 1, 4]]


def test_an_excluded_launch_never_takes_a_slot() -> None:
    scores = torch.tensor([[5.0, 4, 3, -torch.inf]])
    cold = torch.tensor([False, False, False, True])
    assert top_k_with_launch_slots(scores, cold, _slots(1), 2).tolist() == [[0, 1]]
