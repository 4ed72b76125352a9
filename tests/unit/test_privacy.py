"""Shopper-level DP-SGD: one shopper's influence is bounded by the clip norm, the noise covers every
coordinate (an update shows nothing about which rows were touched), and the budget stops a region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facet.compression.codecs import decode_delta
from facet.federation.client import LocalLearner
from facet.model.features import FeatureSpace, ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.model.training import catalogue_tensors
from facet.privacy.accounting import PrivacyBudget, spent_epsilon
from facet.privacy.dpsgd import private_step
from facet.privacy.settings import PrivacySettings
from facet.privacy.shoppers import shopper_windows
from facet.workload.generator import JewelryWorkload, WorkloadConfig

SMALL = ModelConfig(id_buckets=512, attribute_buckets=128, region_buckets=8, dim=16, max_history=6, dropout=0.0,
                    id_dropout=0.0, companion_dim=8)


def _catalogue_and_sequences(sessions: int = 120, seed: int = 4) -> tuple[ItemCatalogue, list[list[int]]]:
    catalogue = ItemCatalogue(SMALL.feature_space())
    sequences: dict[str, list[int]] = {}
    for event in JewelryWorkload(WorkloadConfig(sessions=sessions, seed=seed, regions=("eu",))).events():
        items = sequences.setdefault(event.shopper_id, [])
        index = catalogue.add_event(event)
        if not items or items[-1] != index:
            items.append(index)
    return catalogue, [items for items in sequences.values() if len(items) >= 2]


def test_shopper_windows_group_every_window_with_its_shopper() -> None:
    pool = shopper_windows([(0, [1, 2, 3]), (0, [4]), (1, list(range(20)))], max_history=6)
    assert pool.shoppers == 2  # the one-item shopper makes no example
    assert pool.owners.tolist() == [0, 1, 1, 1, 1]  # 19 predictions in windows of 6
    windows, owners = pool.windows_of(np.array([1]), limit=2, rng=np.random.default_rng(0))
    assert len(windows) == 2 and owners.tolist() == [0, 0]


def _summed_gradient(sequences: list[list[int]], catalogue: ItemCatalogue, settings: PrivacySettings,
                     seed: int) -> dict[str, torch.Tensor]:
    """The noisy sum of clipped gradients of one step (plain SGD with lr 1 shows it exactly)."""
    model = new_model(SMALL, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    pool = shopper_windows([(0, items) for items in sequences], SMALL.max_history)
    private_step(model, optimizer, catalogue_tensors(catalogue), pool, settings, np.random.default_rng(seed),
                 torch.Generator().manual_seed(seed))
    expected = settings.sample_rate * pool.shoppers
    return {k: (before[k] - v) * expected for k, v in model.state_dict().items()}


def test_one_shopper_moves_the_step_by_at_most_the_clip_norm() -> None:
    catalogue, sequences = _catalogue_and_sequences()
    # Every window of every shopper (no random choice among them), so both runs draw the same randomness.
    settings = PrivacySettings(sample_rate=1.0, steps_per_period=10, clip_norm=0.05, epsilon=50,
                               max_windows_per_shopper=1_000)
    with_everyone = _summed_gradient(sequences, catalogue, settings, seed=1)
    without_one = _summed_gradient(sequences[:-1], catalogue, settings, seed=1)
    moved = float(torch.sqrt(sum(((with_everyone[k] - without_one[k]) ** 2).sum() for k in with_everyone)))
    assert 0 < moved <= 0.05 * (1 + 1e-4)
    # And the clip is what bounds it: the same shopper's unclipped gradient is larger.
    loose = settings.model_copy(update={"clip_norm": 1e3})
    unclipped = {k: a - b for k, a, b in zip(with_everyone, _summed_gradient(sequences, catalogue, loose, 1).values(),
                                             _summed_gradient(sequences[:-1], catalogue, loose, 1).values(),
                                             strict=True)}
    assert float(torch.sqrt(sum((v ** 2).sum() for v in unclipped.values()))) > 0.05


def test_how_shoppers_are_chunked_changes_only_the_compute() -> None:
    """Chunks are cut from shoppers ordered by size and padded only to their own longest window; each
    shopper's clipped gradient, and so the step, must be the same as one shopper at a time."""
    catalogue, sequences = _catalogue_and_sequences()
    settings = PrivacySettings(sample_rate=1.0, steps_per_period=10, clip_norm=0.05, epsilon=50,
                               max_windows_per_shopper=1_000)
    together = _summed_gradient(sequences, catalogue, settings.model_copy(update={"chunk_shoppers": 64}), seed=2)
    alone = _summed_gradient(sequences, catalogue, settings.model_copy(update={"chunk_shoppers": 1}), seed=2)
    for name in together:
        assert torch.allclose(together[name], alone[name], atol=1e-5), name


def test_an_update_moves_every_coordinate_so_touched_rows_do_not_show() -> None:
    catalogue, sequences = _catalogue_and_sequences(sessions=30)
    settings = PrivacySettings(sample_rate=0.5, steps_per_period=100, epsilon=8)
    learner = LocalLearner(SMALL, "rows+int8+zstd", privacy=settings, seed=3)
    learner.load_global(new_model(SMALL, seed=0).state_dict(), version=1)
    pool = shopper_windows([(0, items) for items in sequences], SMALL.max_history)
    touched = np.unique(np.asarray(catalogue.arrays()[0])[pool.windows.items()])
    assert len(touched) < SMALL.id_buckets / 2  # most rows untouched by anyone
    learner.train_private(catalogue, pool, steps=2)
    update = learner.prepare_update()
    assert update is not None
    delta = decode_delta(update.payload)
    for name in ("item_bias.weight", "attribute.weight"):
        rows_moved = (delta[name] != 0).any(dim=1)
        assert bool(rows_moved.all()), f"{name}: {int((~rows_moved).sum())} rows left out"
    for name in settings.frozen_parameters:  # not trained under DP: no row moves, touched or not
        assert not bool(delta[name].any()), name
    untouched = np.setdiff1d(np.arange(SMALL.id_buckets), touched)
    spread_untouched = float(delta["item_bias.weight"][untouched].std())
    spread_touched = float(delta["item_bias.weight"][touched].std())
    assert spread_touched == pytest.approx(spread_untouched, rel=0.25)  # noise dominates: rows look alike
    # Trained, the per-item rows would be noised everywhere too.
    everything = PrivacySettings(sample_rate=0.5, steps_per_period=100, epsilon=8, frozen_parameters=())
    learner = LocalLearner(SMALL, "rows+int8+zstd", privacy=everything, seed=3)
    learner.load_global(new_model(SMALL, seed=0).state_dict(), version=1)
    learner.train_private(catalogue, pool, steps=1)
    prepared = learner.prepare_update()
    assert prepared is not None
    assert bool((decode_delta(prepared.payload)["item_id.weight"] != 0).any(dim=1).all())
    # Nothing data-dependent is published beside the delta.
    assert update.loss == 0.0 and update.samples_per_second == 0.0
    assert update.num_samples == 2 * round(0.5 * pool.shoppers)


def test_a_private_learner_refuses_the_non_private_loop() -> None:
    catalogue, sequences = _catalogue_and_sequences(sessions=10)
    learner = LocalLearner(SMALL, "fp32", privacy=PrivacySettings(), seed=0)
    learner.load_global(new_model(SMALL).state_dict(), version=1)
    pool = shopper_windows([(0, items) for items in sequences], SMALL.max_history)
    with pytest.raises(RuntimeError):
        learner.train(catalogue, pool.windows)


def test_dp_sgd_steps_at_the_privacy_rate_and_plain_training_at_the_trainers() -> None:
    """DP-SGD's few, large steps need their own rate (`PrivacySettings.lr`); turning DP off goes back to
    the trainer's rate."""
    private = LocalLearner(SMALL, "fp32", lr=1e-3, privacy=PrivacySettings(lr=0.04), seed=0)
    plain = LocalLearner(SMALL, "fp32", lr=1e-3, privacy=PrivacySettings(enabled=False, lr=0.04), seed=0)
    assert {group["lr"] for group in private.optimizer.param_groups} == {0.04}
    assert {group["lr"] for group in plain.optimizer.param_groups} == {1e-3}


def test_noise_is_derived_from_the_budget_and_spending_it_all_costs_epsilon() -> None:
    settings = PrivacySettings(epsilon=4.0, delta=1e-7, sample_rate=0.02, steps_per_period=1_000)
    assert settings.noise_multiplier() > 0.5
    assert spent_epsilon(settings, 1_000) == pytest.approx(4.0, abs=0.05)
    assert spent_epsilon(settings, 100) < spent_epsilon(settings, 500) < 4.0
    # A tighter budget needs more noise.
    assert PrivacySettings(epsilon=1.0, delta=1e-7, sample_rate=0.02, steps_per_period=1_000).noise_multiplier() \
        > settings.noise_multiplier()


def test_a_pool_trains_only_when_its_steps_carry_no_more_noise_than_allowed() -> None:
    settings = PrivacySettings(epsilon=8.0, sample_rate=0.05, steps_per_period=2_000, max_step_noise=0.05)
    needed = settings.shoppers_needed()
    # The noise on a step's mean gradient is the multiplier over the expected shoppers sampled.
    assert settings.step_noise(1_000) == pytest.approx(settings.noise_multiplier() / 50)
    assert settings.step_noise(needed) <= 0.05 < settings.step_noise(needed - 1)
    assert settings.too_few_shoppers(needed - 1) and not settings.too_few_shoppers(needed)
    assert settings.too_few_shoppers(0)
    # A tighter budget needs more noise, so more shoppers before its steps are worth taking.
    assert PrivacySettings(epsilon=1.0, sample_rate=0.05, steps_per_period=2_000).shoppers_needed() > needed


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_spent_budget_allows_nothing_until_the_period_rolls() -> None:
    settings = PrivacySettings(epsilon=2.0, sample_rate=0.05, steps_per_period=50, period_seconds=100, pace=False)
    clock = _Clock(1_000.0)
    budget = PrivacyBudget(settings, clock=clock)
    assert budget.steps_allowed() == 50
    budget.spend(30)
    clock.now = 1_050.0
    budget.spend(20)
    assert budget.exhausted and budget.steps_allowed() == 0
    assert budget.epsilon() == pytest.approx(2.0, abs=0.02)
    with pytest.raises(RuntimeError):
        budget.spend(1)
    clock.now = 1_100.0  # the next period
    assert not budget.exhausted and budget.steps_allowed() == 50 and budget.epsilon() == 0.0


def test_pacing_spreads_the_period_over_its_length() -> None:
    settings = PrivacySettings(sample_rate=0.05, steps_per_period=1_000, period_seconds=1_000, burst_steps=5)
    clock = _Clock(10_000.0)
    budget = PrivacyBudget(settings, clock=clock)
    assert budget.steps_allowed() == 5
    budget.spend(5)
    assert budget.steps_allowed() == 0
    clock.now = 10_100.0  # a tenth of the period
    assert budget.steps_allowed() == 100
    clock.now = 10_999.0
    assert budget.steps_allowed() == 995  # never beyond the period's steps


def test_a_budget_no_noise_can_meet_fails_at_start_up() -> None:
    with pytest.raises(ValueError):
        PrivacySettings(epsilon=0.01, delta=1e-9, sample_rate=1.0, steps_per_period=100_000)


def test_the_accountant_reports_opacus_figures_for_the_true_sampling_rate() -> None:
    from opacus.accountants import RDPAccountant

    settings = PrivacySettings(epsilon=8.0, sample_rate=0.01, steps_per_period=500)
    reference = RDPAccountant()
    for _ in range(200):
        reference.step(noise_multiplier=settings.noise_multiplier(), sample_rate=0.01)
    assert spent_epsilon(settings, 200) <= reference.get_epsilon(delta=settings.delta) + 1e-6


def test_the_default_space_has_room_for_small_tests() -> None:
    assert FeatureSpace(id_buckets=SMALL.id_buckets).id_buckets == SMALL.id_buckets
