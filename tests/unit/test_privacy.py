from __future__ import annotations

import pytest
import torch
from facet.federation.aggregation import global_norm
from facet.federation.privacy import PrivacyLedger, PrivacySettings, privatize
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState
from facet.federation.updates import signed_update


def test_clipping_bounds_the_norm_and_noise_has_the_stated_scale() -> None:
    delta = {"w": torch.full((100, 100), 5.0)}
    clipped = privatize(delta, PrivacySettings(enabled=True, clip_norm=1.0, noise_multiplier=0.0),
                        torch.Generator().manual_seed(0))
    assert global_norm(clipped) == pytest.approx(1.0, rel=1e-5)
    noisy = privatize({"w": torch.zeros(200, 200)}, PrivacySettings(enabled=True, clip_norm=2.0, noise_multiplier=0.5),
                      torch.Generator().manual_seed(0))
    assert float(noisy["w"].std()) == pytest.approx(1.0, rel=0.02)  # sigma = 0.5 * 2.0


def test_the_accountant_reports_growing_epsilon() -> None:
    ledger = PrivacyLedger(PrivacySettings(enabled=True, noise_multiplier=1.1, target_delta=1e-5))
    assert ledger.epsilon() == 0.0
    first = ledger.record(0.01)
    for _ in range(99):
        last = ledger.record(0.01)
    assert 0 < first < last < 10


def test_server_step_decay_shrinks_late_steps_only_when_asked() -> None:
    from facet.compression.codecs import CodecSpec, encode_delta

    def run(decay: float | None) -> float:
        aggregator = Aggregator(AggregatorState(parameters={"w": torch.zeros(3)}),
                                AggregationPolicy(mode="fedasync", alpha=1.0, require_signatures=False,
                                                  server_lr_decay_versions=decay, max_staleness=10**6), {})
        for _index in range(50):
            payload = encode_delta({"w": torch.ones(3)}, CodecSpec.parse("fp32"))
            aggregator.handle(signed_update(None, trainer_id="t", region="eu", num_samples=1, codec="fp32",
                                            base_version=aggregator.state.version, payload=payload))
        return float(aggregator.state.parameters["w"][0])

    assert run(None) == pytest.approx(50.0)
    assert 10.0 < run(10.0) < 30.0
