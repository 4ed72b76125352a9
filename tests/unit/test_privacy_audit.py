"""The one-run privacy audit: its statistics, and catching a broken accountant on a small configuration."""

from __future__ import annotations

import numpy as np
import pytest
from facet.model.network import ModelConfig
from facet.privacy.accounting import spent_epsilon
from facet.privacy.audit import audit, epsilon_lower_bound, p_value
from facet.privacy.settings import RDP_ORDERS, PrivacySettings
from facet_lab.privacy_audit import AuditSetup, run_privacy_audit


def test_the_bound_grows_with_right_guesses_and_is_zero_for_chance() -> None:
    assert epsilon_lower_bound(1_000, 100, 50, 1e-6) == 0.0
    weak, strong = epsilon_lower_bound(1_000, 100, 70, 1e-6), epsilon_lower_bound(1_000, 100, 95, 1e-6)
    assert 0 < weak < strong < 5
    # At the bound, the p-value is the significance level: no larger epsilon is rejected.
    assert p_value(1_000, 100, 95, strong, 1e-6) == pytest.approx(0.05, abs=0.002)
    # A larger delta explains more right guesses away.
    assert epsilon_lower_bound(1_000, 100, 95, 1e-3) < strong


def test_random_scores_give_no_evidence_against_privacy() -> None:
    rng = np.random.default_rng(0)
    bounds = [audit(rng.random(1_000), rng.random(1_000) < 0.5, 1e-6).epsilon_lower_bound for _ in range(20)]
    assert sum(b > 0 for b in bounds) <= 2  # 95 % confidence, Bonferroni over the guess counts


def _under_reporting_accountant(settings: PrivacySettings, steps: int) -> float:
    """A broken accountant: the true noise and steps, but the sampling rate taken a thousand times smaller."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [(settings.noise_multiplier(), settings.sample_rate / 1_000, steps)]
    return float(accountant.get_epsilon(delta=settings.delta, alphas=RDP_ORDERS))


def test_the_audit_catches_an_accountant_that_under_reports_the_sampling_rate() -> None:
    privacy = PrivacySettings(epsilon=50, delta=1e-5, sample_rate=0.5, steps_per_period=30, pace=False,
                              chunk_shoppers=16, lr=0.05)
    setup = AuditSetup(sessions=50, canaries=800, privacy=privacy,
                       model=ModelConfig(id_buckets=4_096, dim=16, companion_dim=8, max_history=6))
    result = run_privacy_audit(setup, accountant=_under_reporting_accountant, show_progress=False)
    bound = result["summary"]["epsilon_empirical_lower_bound"]
    assert result["summary"]["epsilon_accountant"] < 2.5
    assert result["summary"]["accounting_holds"] is False and bound > result["summary"]["epsilon_accountant"]
    # The same run against the real accountant: the bound stays below what it reports.
    assert bound <= spent_epsilon(privacy, 30)
