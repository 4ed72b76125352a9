"""Ed25519 signatures on global model broadcasts.

Only the aggregator holds the private key; trainers, recommenders and the live view hold public keys
(several, so a key can be rotated with an overlap). Anyone who can write to the models topic can still
write bytes there, but nothing unsigned or signed by another key is ever loaded.

The signature covers everything a consumer acts on: name, epoch, version, the parameters' sha256 (or the
artifact pointer, whose sha256 the reader checks after the download), the contributing update ids and
the creation time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from facet.contracts import GlobalModel, RegionalStatistics
from facet.errors import ConfigurationError
from facet.federation.signing import counts_digest

_RAW = serialization.Encoding.Raw


def signing_message(model: GlobalModel) -> bytes:
    if model.parameters is not None:
        source = "inline:" + hashlib.sha256(model.parameters).hexdigest()
    else:
        assert model.artifact is not None  # the contract guarantees exactly one source
        source = f"artifact:{model.artifact.uri}:{model.artifact.sha256}:{model.artifact.size_bytes}"
    contributors = hashlib.sha256("\x1f".join(model.contributing_updates).encode()).hexdigest()
    fields = ("facet-model-v1", model.model_name, str(model.epoch), str(model.version), source, contributors,
              model.created_at.isoformat())
    return "\x1f".join(fields).encode()


def statistics_message(statistics: RegionalStatistics) -> bytes:
    fields = ("facet-statistics-v1", statistics.region, statistics.trainer_id, statistics.update_id,
              counts_digest(statistics.counts), statistics.forwarded_at.isoformat())
    return "\x1f".join(fields).encode()


def generate_keypair() -> tuple[str, str]:
    """(private key hex, public key hex): raw 32-byte Ed25519 keys, as the settings take them."""
    private = Ed25519PrivateKey.generate()
    private_hex = private.private_bytes(_RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()).hex()
    return private_hex, private.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw).hex()


def _bytes_of(hex_key: str, what: str) -> bytes:
    try:
        raw = bytes.fromhex(hex_key.strip())
    except ValueError:
        raise ConfigurationError(f"{what} is not hex") from None
    if len(raw) != 32:
        raise ConfigurationError(f"{what} must be 32 bytes (64 hex characters), got {len(raw)}")
    return raw


class ModelSigner:
    def __init__(self, private_key_hex: str) -> None:
        self._key = Ed25519PrivateKey.from_private_bytes(_bytes_of(private_key_hex, "model signing key"))

    @property
    def public_key_hex(self) -> str:
        return self._key.public_key().public_bytes(_RAW, serialization.PublicFormat.Raw).hex()

    def sign(self, model: GlobalModel) -> GlobalModel:
        return model.model_copy(update={"signature": self._key.sign(signing_message(model)).hex()})

    def sign_statistics(self, statistics: RegionalStatistics) -> RegionalStatistics:
        return statistics.model_copy(update={"signature": self._key.sign(statistics_message(statistics)).hex()})


class ModelVerifier:
    """Accepts a broadcast signed by any of the configured public keys (rotation overlaps two)."""

    def __init__(self, public_keys_hex: Iterable[str]) -> None:
        self._keys = [Ed25519PublicKey.from_public_bytes(_bytes_of(k, "model public key")) for k in public_keys_hex]
        if not self._keys:
            raise ConfigurationError("at least one model public key is needed to verify broadcasts")

    def verify(self, model: GlobalModel) -> bool:
        return self._verify(signing_message(model), model.signature)

    def verify_statistics(self, statistics: RegionalStatistics) -> bool:
        return self._verify(statistics_message(statistics), statistics.signature)

    def _verify(self, message: bytes, signature_hex: str | None) -> bool:
        if signature_hex is None:
            return False
        try:
            signature = bytes.fromhex(signature_hex)
        except ValueError:
            return False
        for key in self._keys:
            try:
                key.verify(signature, message)
            except InvalidSignature:
                continue
            return True
        return False
