"""Per-trainer HMAC-SHA256 signatures over an update's identity, metadata and payload digest."""

from __future__ import annotations

import hashlib
import hmac

from facet.contracts import InterestCounts, ModelUpdate


def counts_digest(counts: InterestCounts) -> str:
    """Every field of a release, payload by its sha256: what signatures over it cover."""
    fields = (counts.release_id, counts.window_start.isoformat(), counts.window_end.isoformat(),
              str(counts.id_buckets), str(counts.value_buckets), repr(counts.noise_std),
              repr(counts.epsilon_per_period), repr(counts.delta), repr(counts.period_seconds),
              str(counts.releases_per_period), counts.codec,
              hashlib.sha256(counts.payload).hexdigest())
    return hashlib.sha256("\x1f".join(fields).encode()).hexdigest()


def signing_message(update: ModelUpdate) -> bytes:
    digest = hashlib.sha256(update.payload).hexdigest()
    fields = [
        update.update_id, update.trainer_id, update.region, str(update.base_version),
        str(update.num_samples), update.codec, digest,
    ]
    if update.statistics is not None:  # only then, so updates without statistics sign as they always did
        fields.append("statistics:" + counts_digest(update.statistics))
    if update.zone_step is not None:  # likewise: only a zone tier's forwarded steps carry one
        fields.append(f"zone_step:{update.zone_step.member_reference!r}:{update.zone_step.headroom!r}")
    return "\x1f".join(fields).encode()


def sign(update: ModelUpdate, key: bytes) -> str:
    return hmac.new(key, signing_message(update), hashlib.sha256).hexdigest()


def verify(update: ModelUpdate, key: bytes) -> bool:
    return update.signature is not None and hmac.compare_digest(update.signature, sign(update, key))
