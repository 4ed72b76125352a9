"""The network's exact-item terms and the training loop's candidate mask, on toy data where each one
is the only way to do well."""

from __future__ import annotations

import numpy as np
import torch
from facet.contracts import ItemAttributes
from facet.model.examples import make_windows
from facet.model.features import FeatureSpace, ItemCatalogue
from facet.model.network import ModelConfig, new_model
from facet.model.training import candidates_seen_in, catalogue_tensors, make_optimizer, train_epochs

SPACE = FeatureSpace(id_buckets=1024, attribute_buckets=256, region_buckets=8)
SMALL = {"id_buckets": 1024, "attribute_buckets": 256, "region_buckets": 8, "dim": 16, "max_history": 8}


def _catalogue(size: int) -> ItemCatalogue:
    catalogue = ItemCatalogue(space=SPACE)
    for index in range(size):
        # Identical attributes: only the id and the exact-item terms can tell items apart.
        catalogue.add(f"item-{index}", ItemAttributes(category="ring"), 100.0, "USD")
    return catalogue


def _rank_of(scores: torch.Tensor, item: int) -> int:
    return int((scores > scores[item]).sum())


def test_repeat_term_learns_that_shoppers_rebuy_what_they_just_bought() -> None:
    # Each sequence is five random items and then a repeat of one of them: nothing but the shopper's own
    # history predicts the last item.
    rng = np.random.default_rng(0)
    catalogue = _catalogue(200)
    sequences = []
    for _ in range(1000):
        items = [int(i) for i in rng.choice(200, size=5, replace=False)]
        sequences.append((0, [*items, items[-2]]))
    probe = [[int(i) for i in rng.choice(200, size=5, replace=False)] for _ in range(50)]

    def mean_rank(repeat: bool) -> float:
        model = new_model(ModelConfig(**SMALL, repeat_scores=repeat, companion_dim=0), seed=1)
        # A high learning rate: one weight per distance has to travel far in a few hundred steps.
        optimizer = make_optimizer(model, lr=0.03)
        train_epochs(model, catalogue, make_windows(sequences, 8), epochs=6, seed=1, optimizer=optimizer)
        scores = model.rank(catalogue_tensors(catalogue), probe, [0] * len(probe))
        return float(np.mean([_rank_of(scores[row], history[-2]) for row, history in enumerate(probe)]))

    with_repeat, without = mean_rank(True), mean_rank(False)
    assert with_repeat < 2, with_repeat
    assert without > 20, without


def test_companion_term_serves_a_pair_in_the_direction_never_seen() -> None:
    # Items form one random cycle and each is only ever followed by its successor; asked after an item's
    # successor, the shared companion table should still put the item itself near the top. (Every item
    # is a target equally often, so popularity cannot help.)
    catalogue = _catalogue(200)
    successor = np.random.default_rng(2).permutation(200)
    sequences = [(0, [item, int(successor[item])]) for item in range(200) for _ in range(4)]
    probe = [[int(successor[item])] for item in range(200)]

    def mean_rank(companion_dim: int) -> float:
        model = new_model(ModelConfig(**SMALL, companion_dim=companion_dim, repeat_scores=False), seed=2)
        train_epochs(model, catalogue, make_windows(sequences, 8), epochs=8, seed=2)
        scores = model.rank(catalogue_tensors(catalogue), probe, [0] * len(probe))
        return float(np.mean([_rank_of(scores[item], item) for item in range(200)]))

    with_companion, without = mean_rank(16), mean_rank(0)
    assert with_companion < 20, with_companion
    assert without > 2 * with_companion, (without, with_companion)


def test_items_never_seen_in_training_are_not_taught_to_lose() -> None:
    catalogue = _catalogue(60)
    sequences = [(0, [i % 30, (i + 1) % 30, (i + 2) % 30]) for i in range(300)]
    model = new_model(ModelConfig(**SMALL), seed=3)
    train_epochs(model, catalogue, make_windows(sequences, 8), epochs=2, seed=3)
    buckets, _ = catalogue_tensors(catalogue)
    bias = model.item_bias(buckets).squeeze(-1).detach()
    # Items 30..59 are catalogue-only: their bias stays exactly where it started, the trained ones moved.
    assert torch.count_nonzero(bias[30:]) == 0
    assert torch.count_nonzero(bias[:30]) == 30


def test_the_loss_ranks_targets_only_against_the_candidates() -> None:
    catalogue = _catalogue(20)
    windows = make_windows([(0, [0, 1, 2, 3]), (0, [2, 1, 0])], 8)
    model = new_model(ModelConfig(**SMALL), seed=4)
    items = catalogue_tensors(catalogue)
    candidates = torch.zeros(20, dtype=torch.bool)
    candidates[:4] = True
    model.train()
    loss, predictions = model.loss(items, windows, candidates)
    assert predictions == 5
    loss.backward()
    # Items outside the candidates get no gradient at all: nothing teaches them "never chosen".
    bias = model.item_bias.weight.grad
    assert bias is not None
    buckets = items[0]
    assert bias[buckets[4:]].abs().sum() == 0 and bias[buckets[:4]].abs().sum() > 0
    model.zero_grad()
    model.loss(items, windows, None)[0].backward()
    assert model.item_bias.weight.grad[buckets[4:]].abs().sum() > 0  # the whole catalogue, when unmasked


def test_rank_scores_every_item_for_each_history_and_a_cold_shopper() -> None:
    catalogue = _catalogue(12)
    model = new_model(ModelConfig(**SMALL), seed=5)
    scores = model.rank(catalogue_tensors(catalogue), [[1, 2, 3], []], [0, 0])
    assert scores.shape == (2, 12) and torch.isfinite(scores).all()
    again = model.rank(catalogue_tensors(catalogue), [[1, 2, 3]], [0])
    assert torch.allclose(again[0], scores[0])  # eval mode: no dropout, same ranking every call


def test_the_candidates_are_the_items_the_training_windows_hold() -> None:
    windows = [make_windows([(0, [0, 3, 5])], 8), make_windows([(1, [5, 7])], 8), make_windows([], 8)]
    assert candidates_seen_in(windows, 10).nonzero().flatten().tolist() == [0, 3, 5, 7]


def test_the_dense_forward_dp_sgd_batches_is_the_training_loss() -> None:
    """DP-SGD's per-shopper loss (every position, an unrolled GRU) must be the loss every other path trains."""
    import numpy as np
    import pytest
    import torch
    from facet.model.examples import make_windows
    from facet.model.network import ModelConfig, new_model

    config = ModelConfig(id_buckets=512, attribute_buckets=128, dim=16, max_history=6, dropout=0.0, id_dropout=0.0,
                         companion_dim=8)
    model = new_model(config, seed=1)
    with torch.no_grad():
        model.recency.normal_()
        model.item_id.weight.normal_()
    rng = np.random.default_rng(0)
    windows = make_windows([(1, list(rng.integers(0, 40, rng.integers(2, 15)))) for _ in range(10)], 6)
    items = (torch.from_numpy(rng.integers(0, 512, 40)), torch.from_numpy(rng.integers(0, 128, (40, 7))))
    with torch.no_grad():
        loss, count = model.loss(items, windows)
        total, dense_count = model(items, torch.from_numpy(windows.inputs), torch.from_numpy(windows.targets),
                                   torch.from_numpy(windows.regions))
    assert int(dense_count) == count
    assert float(total / dense_count) == pytest.approx(float(loss), rel=1e-5)


def test_per_shopper_gradients_of_the_dense_forward_match_the_training_loss() -> None:
    """DP-SGD's per-shopper gradients (vmap over the dense forward, which reaches the attribute rows without
    forming the item vectors) must be what autograd gives for each shopper's windows through the training
    loss, for every parameter, trained id rows included."""
    import pytest
    from torch.func import functional_call, grad, vmap

    config = ModelConfig(id_buckets=512, attribute_buckets=128, dim=16, max_history=6, dropout=0.0, id_dropout=0.0,
                         companion_dim=8)
    model = new_model(config, seed=2)
    with torch.no_grad():
        model.recency.normal_()
        model.item_id.weight.normal_(std=0.3)
        model.item_bias.weight.normal_()
    rng = np.random.default_rng(3)
    items = (torch.from_numpy(rng.integers(0, 512, 40)), torch.from_numpy(rng.integers(0, 128, (40, 7))))
    candidates = torch.from_numpy(rng.random(40) < 0.8)
    shoppers = [make_windows([(1, [i for i in rng.integers(0, 40, 9) if candidates[i]])], 6) for _ in range(4)]
    depth = max(len(w) for w in shoppers)
    inputs = torch.full((len(shoppers), depth, 6), -1, dtype=torch.int64)
    targets = inputs.clone()
    regions = torch.ones((len(shoppers), depth), dtype=torch.int64)
    for s, windows in enumerate(shoppers):
        inputs[s, : len(windows)] = torch.from_numpy(windows.inputs)
        targets[s, : len(windows)] = torch.from_numpy(windows.targets)
    parameters = {name: p.detach() for name, p in model.named_parameters()}

    def shopper_loss(params: dict[str, torch.Tensor], i: torch.Tensor, t: torch.Tensor, r: torch.Tensor
                     ) -> torch.Tensor:
        total, count = functional_call(model, params, (items, i, t, r, candidates))
        return total / count

    batched = vmap(grad(shopper_loss), in_dims=(None, 0, 0, 0))(parameters, inputs, targets, regions)
    for s, windows in enumerate(shoppers):
        model.zero_grad()
        loss, _count = model.loss(items, windows, candidates)
        loss.backward()
        for name, parameter in model.named_parameters():
            expected = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
            assert batched[name][s] == pytest.approx(expected, abs=1e-5), name
        assert float(batched["attribute.weight"][s].abs().sum()) > 0
        assert float(batched["item_id.weight"][s].abs().sum()) > 0
