"""Per-trainer HMAC-SHA256 signatures over an update's identity, metadata and payload digest."""

from __future__ import annotations

import hashlib
import hmac

from facet.contracts import ModelUpdate


def signing_message(update: ModelUpdate) -> bytes:
    digest = hashlib.sha256(update.payload).hexdigest()
    fields = (
        update.update_id, update.trainer_id, update.region, str(update.base_version),
        str(update.num_samples), update.codec, digest,
    )
    return "\x1f".join(fields).encode()


def sign(update: ModelUpdate, key: bytes) -> str:
    return hmac.new(key, signing_message(update), hashlib.sha256).hexdigest()


def verify(update: ModelUpdate, key: bytes) -> bool:
    return update.signature is not None and hmac.compare_digest(update.signature, sign(update, key))
