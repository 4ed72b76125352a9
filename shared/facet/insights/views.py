"""What the insights API answers, as pydantic models: every figure with its uncertainty and the model
version and time it comes from."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class StatisticsProvenance(BaseModel):
    """Where the counted figures come from: the regions' noisy interest counts, and what they cost."""

    #: Shopper-level epsilon per period at delta, as the releases state it (the aggregator checked that
    #: their noise meets it); the most any region spends.
    epsilon_per_period: float
    delta: float
    period_seconds: float
    window_start: datetime
    window_end: datetime
    releases: int
    fields: list[str]
    source: str = ("each region's shopper-level DP interest counts, released by its trainer beside its model "
                   "updates and forwarded, signed, by the aggregator (no raw events)")


class Provenance(BaseModel):
    model_version: int
    model_epoch: int
    #: When this process loaded that version (the model's own clock is the aggregator's).
    loaded_at: datetime
    #: Figures are spread over the model versions they are compared across (the uncertainty's basis).
    versions_compared: int
    #: Privacy cost of these figures beyond the model's own: 0, they are post-processing of the model.
    epsilon_spent: float = 0.0
    source: str = "global model: each region's embedding against every item vector (no raw events)"
    #: Present when some figures come from the regions' noisy counts instead of the model.
    statistics: StatisticsProvenance | None = None


class LiftCell(BaseModel):
    value: str
    #: Share of the region's expected choices on items with this value, and the mix's share.
    share: float
    mix_share: float
    lift: float
    #: Standard deviation of the lift over the recent model versions (0 with a single version).
    lift_spread: float


class FieldLiftsView(BaseModel):
    field: str
    #: "model" (lift_spread: over recent versions) or "counts" (lift_spread: the noise's standard deviation).
    source: str = "model"
    cells: list[LiftCell]


class RisingEntry(BaseModel):
    key: str
    label: str
    share_before: float
    share_now: float
    growth: float


class RisingView(BaseModel):
    #: What the window asked for and what the kept versions cover (less while history is short).
    window_requested_s: float
    window_covered_s: float
    since_version: int | None
    items: list[RisingEntry]
    attributes: list[RisingEntry]


class RegionInsights(BaseModel):
    region: str
    provenance: Provenance
    lifts: list[FieldLiftsView]
    rising: dict[str, RisingView]


class SimilarityView(BaseModel):
    provenance: Provenance
    regions: list[str]
    #: Cosine similarity of the regions' taste profiles, row by row; and its spread over versions.
    matrix: list[list[float]]
    spread: list[list[float]]


class OpportunityView(BaseModel):
    item_id: str
    label: str
    strength_in_source: float
    expected_lift: float
    #: Spread of the expected lift over the recent model versions.
    expected_lift_spread: float


class OpportunitiesView(BaseModel):
    provenance: Provenance
    source: str
    target: str
    definition: str = ("pieces among the source's strongest 10 % that are not among the target's established "
                       "10 %, ranked by the target's expected demand; lift = over an average piece there")
    items: list[OpportunityView]


class InsightsOverview(BaseModel):
    provenance: Provenance
    regions: list[str]
    items: int
    region_insights: list[RegionInsights]
    similarity: SimilarityView
    #: The best few opportunities of every ordered region pair.
    opportunities: list[OpportunitiesView] = Field(default_factory=list)
