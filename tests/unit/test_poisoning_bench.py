"""The poisoning benchmark's attacks do what they say, and its shift ratio compares like with like."""

from __future__ import annotations

import pytest
import torch
from facet.compression.codecs import decode_delta
from facet.federation.aggregation import global_norm
from facet.federation.server import Move, Outcome
from facet.federation.signing import verify
from facet_lab.bench.federation import KEY
from facet_lab.bench.poisoning import SCALE, MoveRecorder, attack_update

from tests.helpers import signed_update


@pytest.mark.parametrize("attack", ["sample_inflation", "scaled_delta", "sign_flip", "random_noise",
                                    "sign_flip_evasive"])
def test_each_attack_is_a_validly_signed_hostile_update(attack: str) -> None:
    honest = signed_update(KEY, trainer_id="trainer-eu", region="eu", base_version=0, seed=1)
    hostile = attack_update(honest, attack, "fp32", torch.Generator().manual_seed(0))
    assert verify(hostile, KEY), "the attacker holds a valid key: only the bounds can stop it"
    before, after = decode_delta(honest.payload), decode_delta(hostile.payload)
    if attack == "sample_inflation":
        assert hostile.num_samples == 1_000_000_000 and hostile.payload == honest.payload
    elif attack == "scaled_delta":
        assert global_norm(after) == pytest.approx(SCALE * global_norm(before), rel=1e-5)
    elif attack == "sign_flip":
        assert all(torch.equal(after[n], -before[n]) for n in before)
    elif attack == "sign_flip_evasive":  # honest where the aggregator checks directions, flipped elsewhere
        assert all(torch.equal(after[n], before[n] if n == "item_bias.weight" else -before[n]) for n in before)
    else:
        assert global_norm(after) == pytest.approx(5.0 * global_norm(before), rel=1e-4)


class _Stub:
    def __init__(self, moves: list[Move]) -> None:
        self.last_moves = moves


def test_shift_ratio_compares_moves_near_the_same_version() -> None:
    recorder = MoveRecorder("eu", window=2)
    early = [Move("trainer-us", 1, 10.0), Move("trainer-eu", 1, 20.0), Move("trainer-uk", 1, 10.0)]
    late = [Move("trainer-us", 50, 0.1), Move("trainer-uk", 50, 0.1), Move("trainer-br", 51, 0.1)]
    for moves in (early, late):
        recorder(_Stub(moves), signed_update(KEY, trainer_id="trainer-us", region="us", base_version=0, seed=0),
                 Outcome("applied", new_version=moves[0].version))
    assert recorder.shift_ratio() == pytest.approx(2.0), "20 against the early honest moves of 10"
    assert recorder.shift_ratio_vs_run_median() == pytest.approx(20.0 / 0.1)


def test_the_honest_regions_figure_leaves_out_only_the_attackers_shoppers() -> None:
    from facet_lab.bench.poisoning import honest_regions_ndcg10

    run = {"attacker": "eu", "final_regions": {"eu": 0.0, "us": 0.2, "br": 0.5},
           "final_region_cases": {"eu": 100, "us": 300, "br": 100}}
    assert honest_regions_ndcg10(run) == pytest.approx((0.2 * 300 + 0.5 * 100) / 400)
    assert honest_regions_ndcg10({"attacker": "eu", "final_regions": {}, "final_region_cases": {}}) is None
