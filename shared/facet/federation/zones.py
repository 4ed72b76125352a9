"""Hierarchical aggregation: a zone tier between regional trainers and the global aggregator.

A zone aggregator takes its regions' updates through the same validation, signatures, robustness bounds,
staleness weighting and FedBuff math as the global aggregator, and forwards one signed, compressed update
per step: the buffer's sample- and staleness-weighted mean delta,

    Δ_Z = Σ_k n_k s(τ_k) Δ_k / Σ_k n_k        with n_Z = Σ_k n_k,

where τ_k is measured against the newest global version the zone has seen (the trainers' bases are global
versions). The global aggregator treats each zone like a trainer: its own staleness, sample reference and
server step apply to Δ_Z. Only Δ_Z crosses the zone's boundary, so the bytes that do fall by about the
zone's buffer size (the union of the rows its regions touched is sent once).

Exactly once: the forwarded update's id is derived from the ids it aggregates, so a zone that crashes
after forwarding and rebuilds the same buffer from its uncommitted offsets forwards the same id again,
which the global aggregator rejects as a duplicate.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

import torch
from pydantic import BaseModel, Field, model_validator

from facet.compression.codecs import CodecSpec, ErrorFeedback
from facet.config import validate_region
from facet.contracts import ModelUpdate
from facet.federation.server import AggregationPolicy, Aggregator, AggregatorState, Outcome
from facet.federation.updates import signed_update

_ZONE_RE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


class ZoneMap(BaseModel):
    """Zones and their regions, e.g. parsed from ``apac:jp,in,ae;emea:eu,uk;americas:us,br``."""

    zones: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _disjoint(self) -> ZoneMap:
        seen: set[str] = set()
        for zone, regions in self.zones.items():
            if not _ZONE_RE.fullmatch(zone):
                raise ValueError(f"zone {zone!r} must match {_ZONE_RE.pattern}")
            if not regions:
                raise ValueError(f"zone {zone!r} has no regions")
            for region in regions:
                validate_region(region)
                if region in seen:
                    raise ValueError(f"region {region!r} is in two zones")
                seen.add(region)
        return self

    @classmethod
    def parse(cls, text: str) -> ZoneMap:
        zones: dict[str, tuple[str, ...]] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            zone, _, regions = part.partition(":")
            if not regions:
                raise ValueError(f"{part!r} is not zone:region,region")
            if zone.strip() in zones:
                raise ValueError(f"zone {zone.strip()!r} is named twice")
            zones[zone.strip()] = tuple(r.strip() for r in regions.split(",") if r.strip())
        return cls(zones=zones)

    def zone_of(self, region: str) -> str | None:
        return next((zone for zone, regions in self.zones.items() if region in regions), None)


def zone_trainer_id(zone: str) -> str:
    """The id a zone signs its forwarded updates with (the global aggregator binds it to the zone)."""
    return f"zone-{zone}"


def zone_policy(policy: AggregationPolicy) -> AggregationPolicy:
    """A zone averages; it never takes a server step of its own: learning rate 1, no decay, and sample
    counts measured against its own buffer (the global aggregator applies the fleet's reference)."""
    return policy.model_copy(update={"mode": "fedbuff", "server_lr": 1.0, "server_lr_decay_versions": None,
                                     "sample_reference": "buffer"})


def forwarded_update_id(zone: str, contributors: list[str]) -> str:
    digest = hashlib.sha256("\n".join(sorted(contributors)).encode()).hexdigest()[:32]
    return f"{zone_trainer_id(zone)}-{digest}"


class ZoneAggregator:
    """One zone's tier. Its state's parameters hold the step being accumulated (zeros between steps) and
    its version counts the zone's steps; staleness is measured against the newest global generation the
    zone has seen, so it means what it means globally."""

    def __init__(self, zone: str, state: AggregatorState, policy: AggregationPolicy,
                 trainer_keys: Mapping[str, bytes], trainer_regions: Mapping[str, str] | None, *,
                 codec: str, signing_key: bytes) -> None:
        self.zone = zone
        with torch.no_grad():
            for tensor in state.parameters.values():
                tensor.zero_()
        self.aggregator = Aggregator(state, zone_policy(policy), trainer_keys, trainer_regions)
        self.codec = CodecSpec.parse(codec)
        self.signing_key = signing_key
        self.feedback = ErrorFeedback()
        #: (epoch, version) of the newest global model seen; None until the first one arrives.
        self.global_generation: tuple[int, int] | None = None
        self.aggregator.staleness_reference = 0

    @property
    def state(self) -> AggregatorState:
        return self.aggregator.state

    @property
    def global_version(self) -> int:
        return self.global_generation[1] if self.global_generation else 0

    def follow(self, generation: tuple[int, int]) -> None:
        """A global model was broadcast: staleness is measured against the newest (a newer epoch wins over
        any version of an older one, as it does for trainers)."""
        if self.global_generation is None or generation > self.global_generation:
            self.global_generation = generation
            self.aggregator.staleness_reference = generation[1]

    def handle(self, update: ModelUpdate) -> tuple[Outcome, ModelUpdate | None]:
        """The regional update's outcome, and the update to forward when it completed the zone's step."""
        outcome = self.aggregator.handle(update)
        if outcome.new_version is None:
            return outcome, None
        return outcome, self._forward()

    def _forward(self) -> ModelUpdate:
        state = self.state
        contributors = list(state.pending_contributors)
        with torch.no_grad():
            payload = self.feedback.compress(state.parameters, self.codec, seed=state.version)
            for tensor in state.parameters.values():
                tensor.zero_()
        state.pending_contributors.clear()
        return signed_update(self.signing_key, trainer_id=zone_trainer_id(self.zone), region=self.zone,
                             base_version=self.global_version,
                             num_samples=max(self.aggregator.last_step_samples, 1),
                             codec=self.codec.name, payload=payload,
                             update_id=forwarded_update_id(self.zone, contributors))
