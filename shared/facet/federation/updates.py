"""The one way to build an update for the updates topic: its fields, a fresh id, and the trainer's HMAC.

Trainers, benchmarks and tests all build updates here, so what is signed is always what is sent."""

from __future__ import annotations

import uuid

from facet.contracts import InterestCounts, ModelUpdate, TrainingMetrics, ZoneStep
from facet.federation.signing import sign

#: Metrics for an update that did not come from training (a benchmark's synthetic delta, a test).
NO_METRICS = TrainingMetrics(loss=1.0, samples_per_second=1.0, steps=1)


def signed_update(key: bytes | None, *, trainer_id: str, region: str, base_version: int, num_samples: int,
                  codec: str, payload: bytes, metrics: TrainingMetrics = NO_METRICS,
                  update_id: str | None = None, statistics: InterestCounts | None = None,
                  zone_step: ZoneStep | None = None) -> ModelUpdate:
    """A :class:`ModelUpdate` signed with ``key`` (``None``: unsigned, which the aggregator rejects)."""
    update = ModelUpdate(
        update_id=update_id or f"{trainer_id}-{uuid.uuid4().hex}", trainer_id=trainer_id, region=region,
        base_version=base_version, num_samples=num_samples, metrics=metrics, codec=codec, payload=payload,
        statistics=statistics, zone_step=zone_step,
    )
    return resigned(update, key)


def resigned(update: ModelUpdate, key: bytes | None, **changes: object) -> ModelUpdate:
    """``update`` with ``changes``, signed again with ``key`` (``None``: unsigned)."""
    changed = update.model_copy(update={**changes, "signature": None})
    return changed if key is None else changed.model_copy(update={"signature": sign(changed, key)})
