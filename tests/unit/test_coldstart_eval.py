"""The launch evaluation's baselines and its policy choice, on hand-made data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
from facet.contracts import BehaviourEvent, EventType, ItemAttributes
from facet.evaluation.launches import LaunchSplit, launch_split
from facet.evaluation.scoring import ranks_for
from facet.model.coldstart import ColdStartPolicy
from facet.model.features import FeatureSpace
from facet_lab.coldstart import choose_policy
from facet_lab.coldstart_baselines import content_similarity, newest_matching

SPACE = FeatureSpace(id_buckets=1024, attribute_buckets=256, region_buckets=8)
START = datetime(2026, 1, 1, tzinfo=UTC)


def _event(shopper: str, item: str, hour: float, category: str, metal: str) -> BehaviourEvent:
    return BehaviourEvent(occurred_at=START + timedelta(hours=hour), region="us", storefront="s",
                          shopper_id=shopper, session_id="x", item_id=item, event_type=EventType.VIEW,
                          attributes=ItemAttributes(category=category, metal=metal, gem="none"))


def _launch() -> LaunchSplit:
    # Before the cutoff: gold rings and silver earrings, bought in pairs. After it: a gold ring and a
    # silver earring launch; shoppers move from a gold ring to the new gold ring.
    events = []
    for k in range(10):
        events += [_event(f"g{k}", "gold-ring-1", k, "ring", "gold"),
                   _event(f"g{k}", "gold-ring-2", k + 0.1, "ring", "gold"),
                   _event(f"s{k}", "silver-ear-1", k, "earring", "silver"),
                   _event(f"s{k}", "silver-ear-2", k + 0.1, "earring", "silver")]
    events += [_event("x", "silver-ear-new", 20, "earring", "silver")]
    for k in range(10):
        events += [_event(f"n{k}", "gold-ring-1", 21 + k, "ring", "gold"),
                   _event(f"n{k}", "gold-ring-new", 21.1 + k, "ring", "gold")]
    return launch_split(events, SPACE, test_share=0.35)


def test_newest_matching_puts_the_matching_launch_first() -> None:
    launch = _launch()
    cold = launch.cold_cases
    assert cold and all(launch.split.catalogue.item_ids[c.target] == "gold-ring-new" for c in cold)
    ranks = ranks_for(newest_matching(launch), cold)
    assert (ranks == 0).all()  # the one new gold ring beats the older gold rings and the new earring


def test_content_similarity_prefers_shared_attributes_and_co_occurrence() -> None:
    launch = _launch()
    index = launch.split.catalogue.index
    scores = content_similarity(launch)(launch.cold_cases[:1])[0]
    assert scores[index["gold-ring-new"]] > scores[index["silver-ear-new"]]  # attributes
    assert scores[index["gold-ring-2"]] > scores[index["gold-ring-new"]]  # co-occurrence for warm items


def test_the_chosen_policy_is_the_best_for_launches_within_the_budget() -> None:
    cold = np.array([True, False, False, False])
    off, mild, bold = ColdStartPolicy.off(), ColdStartPolicy(cold_offset=1), ColdStartPolicy(cold_offset=3)
    ranks = {
        off: np.array([30.0, 0, 0, 0]),       # overall NDCG 0.75, the launch missed
        mild: np.array([5.0, 0, 0, 0.2]),     # launch hit, warm ranks barely move
        bold: np.array([0.0, 9, 9, 9]),       # launch first, warm cases pushed down
    }
    chosen, table = choose_policy(ranks, cold, budget=0.01)
    assert chosen == mild and len(table) == 3
    assert choose_policy({off: ranks[off], bold: ranks[bold]}, cold, budget=0.01)[0] == off


def test_the_policy_search_includes_the_model_alone_and_slots_with_and_without_an_offset() -> None:
    from facet_lab.coldstart import policy_grid

    grid = policy_grid()
    assert ColdStartPolicy.off() in grid  # the reference every cost is measured against
    assert any(p.launch_slots == 0 and p.cold_offset > 0 for p in grid)
    assert any(p.launch_slots > 0 and p.cold_offset == 0 for p in grid)
    assert len(set(grid)) == len(grid)
