"""Optional differential privacy for updates: clip each delta's norm, add Gaussian noise, and account the
(epsilon, delta) spent with Opacus' RDP accountant (a well-kept one, not a hand-written one)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from pydantic import BaseModel, Field

from facet.federation.aggregation import global_norm


class PrivacySettings(BaseModel):
    enabled: bool = False
    clip_norm: float = Field(default=1.0, gt=0)
    noise_multiplier: float = Field(default=1.0, ge=0)
    target_delta: float = Field(default=1e-5, gt=0, lt=1)


def privatize(
    delta: Mapping[str, torch.Tensor], settings: PrivacySettings, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Clip to ``clip_norm`` then add N(0, (noise_multiplier·clip_norm)²) to every coordinate."""
    norm = global_norm(delta)
    factor = min(1.0, settings.clip_norm / (norm + 1e-12))
    sigma = settings.noise_multiplier * settings.clip_norm
    return {
        name: tensor * factor + torch.randn(tensor.shape, generator=generator) * sigma
        for name, tensor in delta.items()
    }


class PrivacyLedger:
    """(epsilon, delta) spent so far by one region's updates."""

    def __init__(self, settings: PrivacySettings) -> None:
        from opacus.accountants import RDPAccountant

        self.settings = settings
        self._accountant = RDPAccountant()

    def record(self, sample_rate: float) -> float:
        self._accountant.step(noise_multiplier=self.settings.noise_multiplier, sample_rate=min(1.0, sample_rate))
        return self.epsilon()

    def epsilon(self) -> float:
        if not self._accountant.history:
            return 0.0
        return float(self._accountant.get_epsilon(delta=self.settings.target_delta))
