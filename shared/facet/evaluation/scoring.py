"""Scoring a model on a split: rank every test case's target among all items, sliced by cold items, new
shoppers and region; and training a model on some of a split's shoppers (centralized or one region)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from facet.evaluation.metrics import K, list_ranks, summarize, target_ranks
from facet.evaluation.split import Split, TestCase
from facet.model.coldstart import ColdStartPolicy, top_k_with_launch_slots
from facet.model.examples import make_windows
from facet.model.network import ModelConfig, SequenceRecommender, new_model
from facet.model.training import catalogue_tensors, train_epochs

NEW_SHOPPER_MAX_PRIOR = 2
SCORE_BATCH = 512

#: Scores [len(cases), items] for a batch of test cases.
Scorer = Callable[[Sequence[TestCase]], np.ndarray]


def ranks_for(scorer: Scorer, cases: Sequence[TestCase]) -> np.ndarray:
    ranks = [
        target_ranks(scorer(cases[i : i + SCORE_BATCH]), np.asarray([c.target for c in cases[i : i + SCORE_BATCH]]))
        for i in range(0, len(cases), SCORE_BATCH)
    ]
    return np.concatenate(ranks) if ranks else np.zeros(0)


def policy_target_ranks(scores: np.ndarray, cold: np.ndarray, policy: ColdStartPolicy, targets: np.ndarray,
                        order: torch.Tensor | None = None) -> np.ndarray:
    """Each row's target rank as the recommender would serve it: by score, or, when ``policy`` reserves
    launch slots, its position in the top K with those slots (K when it is not there; metrics at K).
    ``order``: the scores' descending argsort, when already computed."""
    if not policy.launch_slots:
        return target_ranks(scores, targets)
    ranked = top_k_with_launch_slots(torch.from_numpy(scores), torch.from_numpy(np.asarray(cold, dtype=bool)),
                                     policy, K, order)
    return list_ranks(ranked.numpy(), targets)


def sliced_metrics(cases: Sequence[TestCase], ranks: np.ndarray) -> dict[str, Any]:
    cold = np.asarray([c.cold_item for c in cases], dtype=bool)
    new = np.asarray([c.prior_events <= NEW_SHOPPER_MAX_PRIOR for c in cases], dtype=bool)
    regions = np.asarray([c.region for c in cases])
    return {
        "overall": summarize(ranks),
        "cold_items": summarize(ranks[cold]),
        "new_shoppers": summarize(ranks[new]),
        "regions": {str(r): summarize(ranks[regions == r]) for r in dict.fromkeys(regions.tolist())},
    }


def model_scorer(model: SequenceRecommender, split: Split) -> Scorer:
    items = catalogue_tensors(split.catalogue)
    space = model.config.feature_space()
    with torch.no_grad():
        model.eval()
        vectors = model.item_vectors(*items)

    def score(cases: Sequence[TestCase]) -> np.ndarray:
        regions = [space.region_bucket(c.region) for c in cases]
        return model.rank(items, [c.history for c in cases], regions, vectors).numpy()

    return score


def train_on(split: Split, shoppers: Sequence[str], config: ModelConfig, epochs: int, seed: int) -> tuple[
    SequenceRecommender, float
]:
    space = config.feature_space()
    sequences = [(space.region_bucket(split.train[s][0]), split.train[s][1]) for s in shoppers]
    windows = make_windows(sequences, config.max_history)
    model = new_model(config, seed)
    started = time.perf_counter()
    if len(windows):
        train_epochs(model, split.catalogue, windows, epochs=epochs, seed=seed)
    return model, time.perf_counter() - started


