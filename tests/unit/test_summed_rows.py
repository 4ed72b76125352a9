"""The attribute sum's hand-written backward is autograd's, alone and batched over shoppers (DP-SGD)."""

from __future__ import annotations

import torch
from facet.model.summed_rows import _incidence, _transposed_incidence, summed_rows
from torch.func import grad, vmap


def _reference(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.embedding(codes, table).sum(dim=1)


def test_the_gradient_is_autograds_for_repeated_and_unused_rows() -> None:
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(30, 8, generator=generator)
    codes = torch.randint(0, 20, (50, 7), generator=generator)  # rows 20..29 unused, many repeated
    codes[0] = 3  # one item's codes all the same row
    weights = torch.randn(50, 8, generator=generator)
    ours = grad(lambda t: (summed_rows(t, codes) * weights).sum())(table)
    theirs = grad(lambda t: (_reference(t, codes) * weights).sum())(table)
    assert torch.allclose(summed_rows(table, codes), _reference(table, codes))
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert float(ours[20:].abs().sum()) == 0.0 and float(ours[3].abs().sum()) > 0


def test_per_shopper_gradients_under_vmap_match_autograds() -> None:
    generator = torch.Generator().manual_seed(1)
    table = torch.randn(40, 16, generator=generator)
    codes = torch.randint(0, 40, (60, 7), generator=generator)
    per_shopper = torch.randn(5, 60, 16, generator=generator)

    def loss(function, t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return (torch.tanh(function(t, codes)) * weights).sum()

    ours = vmap(grad(lambda t, w: loss(summed_rows, t, w)), in_dims=(None, 0))(table, per_shopper)
    theirs = vmap(grad(lambda t, w: loss(_reference, t, w)), in_dims=(None, 0))(table, per_shopper)
    assert ours.shape == (5, 40, 16)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_a_table_per_shopper_under_vmap_gives_autograds_sums_and_gradients() -> None:
    """The model's dense forward sums a batched table (each shopper's scores against the rows) over the
    items' codes: one sparse product for the batch, the same values and gradients as the plain gather."""
    generator = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 25, (60, 7), generator=generator)
    tables = torch.randn(5, 30, 4, generator=generator)  # rows 25..29 unused
    weights = torch.randn(5, 60, 4, generator=generator)

    def loss(function, t: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return (torch.tanh(function(t, codes)) * w).sum()

    assert torch.allclose(vmap(lambda t: summed_rows(t, codes))(tables), vmap(lambda t: _reference(t, codes))(tables),
                          atol=1e-5)
    ours = vmap(grad(lambda t, w: loss(summed_rows, t, w)))(tables, weights)
    theirs = vmap(grad(lambda t, w: loss(_reference, t, w)))(tables, weights)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert float(ours[:, 25:].abs().sum()) == 0.0


def test_the_incidence_matrix_keeps_the_sparse_invariants_and_counts_repeats() -> None:
    codes = torch.tensor([[2, 2, 0], [1, 2, 0]])
    matrix = _transposed_incidence(codes, rows=4, dtype=torch.float32, check=True)
    assert matrix.to_dense().tolist() == [[1, 1], [0, 1], [2, 1], [0, 0]]
    assert _incidence(codes, rows=4, dtype=torch.float32, check=True).to_dense().tolist() == [[1, 0, 2, 0],
                                                                                           [1, 1, 1, 0]]
