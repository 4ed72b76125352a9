"""``facet audit privacy``: checks the privacy accounting by attacking it (one-run auditing, Steinke, Nasr
and Jagielski 2023; the statistics are in :mod:`facet.privacy.audit`).

A region's shoppers (the synthetic workload) are joined by canary shoppers, each with two items of their
own bought back and forth; a secret half of the canaries is trained on, through the production code path
(:class:`LocalLearner` under DP-SGD with its budget's noise). From the final model alone the auditor scores
each canary by how likely the model finds its second item after its first, guesses the most and least
likely as in and out, and turns the number of right guesses into a lower bound on epsilon. The accountant's
epsilon must be at least that bound; the audit fails when it is not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from facet.federation.client import LocalLearner
from facet.model.features import ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.model.training import catalogue_tensors
from facet.privacy.accounting import Accountant, spent_epsilon
from facet.privacy.audit import audit
from facet.privacy.settings import PrivacySettings
from facet.privacy.shoppers import shopper_windows
from facet.workload.generator import JewelryWorkload, WorkloadConfig
from rich.progress import Progress

REGION = "eu"


@dataclass(frozen=True)
class AuditSetup:
    sessions: int = 1_500
    canaries: int = 500
    #: Events of each canary: its two items alternating (a, b, a, b, …).
    canary_length: int = 4
    privacy: PrivacySettings = field(default_factory=lambda: PrivacySettings(
        epsilon=8.0, sample_rate=0.05, steps_per_period=100, pace=False))
    model: ModelConfig = field(default_factory=lambda: ModelConfig(id_buckets=8_192, max_history=20))
    seed: int = 0


def _population(setup: AuditSetup) -> tuple[ItemCatalogue, list[list[int]]]:
    catalogue = ItemCatalogue(setup.model.feature_space())
    sequences: dict[str, list[int]] = {}
    workload = JewelryWorkload(WorkloadConfig(sessions=setup.sessions, seed=setup.seed + 11, regions=(REGION,)))
    for event in workload.events():
        items = sequences.setdefault(event.shopper_id, [])
        index = catalogue.add_event(event)
        if not items or items[-1] != index:
            items.append(index)
    return catalogue, list(sequences.values())


def run_privacy_audit(setup: AuditSetup, accountant: Accountant = spent_epsilon,
                      show_progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    rng = np.random.default_rng(setup.seed)
    catalogue, shoppers = _population(setup)
    pairs = np.array([(catalogue.add(f"canary-{i}-first", None, None, None),
                       catalogue.add(f"canary-{i}-second", None, None, None)) for i in range(setup.canaries)])
    included = rng.random(setup.canaries) < 0.5  # the secret
    canary_sequences = [[int(pairs[i, step % 2]) for step in range(setup.canary_length)]
                        for i in np.flatnonzero(included)]
    region_bucket = setup.model.feature_space().region_bucket(REGION)
    pool = shopper_windows([(region_bucket, items) for items in shoppers + canary_sequences], setup.model.max_history)
    learner = LocalLearner(setup.model, "fp32", privacy=setup.privacy, seed=setup.seed)
    learner.load_global(new_model(setup.model, seed=setup.seed).state_dict(), version=1)
    steps = setup.privacy.steps_per_period
    with torch.random.fork_rng(devices=[]), Progress(transient=True, disable=not show_progress) as progress:
        torch.manual_seed(setup.seed)
        task = progress.add_task("DP-SGD with canaries", total=steps)
        for done in range(0, steps, 10):
            learner.train_private(catalogue, pool, min(10, steps - done))
            progress.advance(task, min(10, steps - done))
    training_seconds = time.perf_counter() - started
    model = learner.model
    scores = model.rank(catalogue_tensors(catalogue), [[int(a)] for a in pairs[:, 0]],
                        [region_bucket] * setup.canaries)
    log_probabilities = torch.log_softmax(scores, dim=1)[torch.arange(setup.canaries), torch.from_numpy(pairs[:, 1])]
    result = audit(log_probabilities.numpy(), included, setup.privacy.delta)
    epsilon = accountant(setup.privacy, steps)
    summary = {
        "epsilon_accountant": epsilon,
        "epsilon_empirical_lower_bound": result.epsilon_lower_bound,
        "accounting_holds": result.epsilon_lower_bound <= epsilon,
        "bound_over_accountant": result.epsilon_lower_bound / epsilon if epsilon else None,
    }
    return {
        "summary": summary,
        "audit": {"canaries": result.canaries, "included": result.included, "guesses": result.guesses,
                  "correct": result.correct, "accuracy": result.accuracy, "confidence": 0.95,
                  "method": "one-run auditing (Steinke, Nasr, Jagielski 2023), black box: final model only"},
        "training": {"shoppers": pool.shoppers, "steps": steps, "noise_multiplier": setup.privacy.noise_multiplier(),
                     "seconds": training_seconds},
        "privacy": setup.privacy.model_dump(),
        "model": setup.model.model_dump(),
    }
