"""Preference lift by attribute value and taste similarity between regions: pure functions of the
regions' demand over the catalogue.

A region's share of an attribute value is the demand falling on items with that value; its lift is that
share over the global mix (the mean share across the regions compared, each region counted once, so a
large market does not define "global"). Lift 1.5 reads "this market buys 50 % more of it than the mix".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facet.insights.products import INSIGHT_FIELDS, ProductFacts

#: Shares below this are treated as this when taking logs: a value nobody buys must not dominate.
_FLOOR = 1e-6
#: Taste profiles read lifts within [1/20, 20].
_LIFT_BOUND = 20.0


@dataclass(frozen=True)
class FieldLifts:
    field: str
    values: list[str]
    #: [R, V] share of each region's demand on each value, and the mix they are compared with [V].
    shares: np.ndarray
    mix: np.ndarray

    @property
    def lifts(self) -> np.ndarray:
        return self.shares / np.maximum(self.mix, _FLOOR)


def value_shares(demand: np.ndarray, codes: np.ndarray, values: int) -> np.ndarray:
    """[R, N] demand and each item's value index [N] (-1: unknown) → [R, V] demand share per value,
    renormalised over the items whose value is known."""
    known = codes >= 0
    shares = np.zeros((demand.shape[0], values))
    for region in range(demand.shape[0]):
        shares[region] = np.bincount(codes[known], weights=demand[region, known], minlength=values)
    totals = shares.sum(axis=1, keepdims=True)
    return shares / np.where(totals > 0, totals, 1.0)


def field_lifts(demand: np.ndarray, products: ProductFacts, fields: tuple[str, ...] = INSIGHT_FIELDS
                ) -> dict[str, FieldLifts]:
    result: dict[str, FieldLifts] = {}
    for name in fields:
        values, codes = products.codes(name, demand.shape[1])
        if not values:
            continue
        shares = value_shares(demand, codes, len(values))
        result[name] = FieldLifts(name, values, shares, shares.mean(axis=0))
    return result


def taste_profile(lifts: dict[str, FieldLifts]) -> np.ndarray:
    """[R, D] each region's log-lifts over every attribute value, each field weighted equally."""
    parts = []
    for entry in lifts.values():
        # A value nobody anywhere chose says nothing (0); one a region never chose says "far less", not
        # "infinitely less": bounded, so one empty (or noise-clamped) cell cannot outweigh a whole profile.
        logs = np.log(np.clip(entry.lifts, 1 / _LIFT_BOUND, _LIFT_BOUND))
        logs[:, entry.mix <= _FLOOR] = 0.0
        parts.append(logs / np.sqrt(max(len(entry.values), 1)))
    return np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))


def taste_similarity(lifts: dict[str, FieldLifts]) -> np.ndarray:
    """[R, R] cosine similarity of the regions' taste profiles: 1 = the same departures from the mix,
    0 = unrelated, -1 = opposite."""
    profile = taste_profile(lifts)
    if profile.size == 0:
        return np.zeros((0, 0))
    norms = np.linalg.norm(profile, axis=1, keepdims=True)
    unit = profile / np.where(norms > 0, norms, 1.0)
    return np.clip(unit @ unit.T, -1.0, 1.0)
