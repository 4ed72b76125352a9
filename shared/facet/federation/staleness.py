"""Staleness weights s(τ): how much an update computed τ versions ago still counts.

Borrowed math (not plumbing) from Meta's FLSim ``async_staleness_weights.py`` and the FedAsync paper:
constant, polynomial (1+τ)^-a, and hinge (1 up to b, then 1/(a(τ-b)+1)). All are 1 at τ = 0 and never
increase with τ, which the property tests check.
"""

from __future__ import annotations

from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class StalenessWeight(Protocol):
    def __call__(self, staleness: int) -> float: ...


class _Weight(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ConstantStaleness(_Weight):
    kind: Literal["constant"] = "constant"

    def __call__(self, staleness: int) -> float:
        return 1.0


class PolynomialStaleness(_Weight):
    kind: Literal["polynomial"] = "polynomial"
    exponent: float = Field(default=0.5, ge=0)

    def __call__(self, staleness: int) -> float:
        return float((1.0 + max(staleness, 0)) ** -self.exponent)


class HingeStaleness(_Weight):
    kind: Literal["hinge"] = "hinge"
    slope: float = Field(default=0.5, gt=0)
    cutoff: int = Field(default=4, ge=0)

    def __call__(self, staleness: int) -> float:
        if staleness <= self.cutoff:
            return 1.0
        return 1.0 / (self.slope * (staleness - self.cutoff) + 1.0)


StalenessConfig = Annotated[
    ConstantStaleness | PolynomialStaleness | HingeStaleness, Field(discriminator="kind")
]
