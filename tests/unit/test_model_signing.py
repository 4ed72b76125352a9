"""Global model broadcasts: only the aggregator's key makes a model that consumers load."""

from __future__ import annotations

import pytest
from facet.contracts import GlobalModel
from facet.errors import ConfigurationError
from facet.federation.model_signing import ModelSigner, ModelVerifier, generate_keypair


def _model(**overrides: object) -> GlobalModel:
    fields: dict[str, object] = {"model_name": "m", "epoch": 3, "version": 7, "parameters": b"weights"}
    fields.update(overrides)
    return GlobalModel.model_validate(fields)


def test_a_signed_model_verifies_and_any_change_breaks_it() -> None:
    private, public = generate_keypair()
    signed = ModelSigner(private).sign(_model())
    verifier = ModelVerifier([public])
    assert verifier.verify(signed)
    for change in ({"version": 2**61}, {"epoch": 4}, {"parameters": b"other"}, {"model_name": "x"},
                   {"contributing_updates": ("u1",)}):
        assert not verifier.verify(signed.model_copy(update=change)), change


def test_unsigned_and_foreign_signatures_are_refused_and_rotation_overlaps() -> None:
    old_private, old_public = generate_keypair()
    new_private, new_public = generate_keypair()
    rotating = ModelVerifier([old_public, new_public])
    assert rotating.verify(ModelSigner(old_private).sign(_model()))
    assert rotating.verify(ModelSigner(new_private).sign(_model()))
    assert not ModelVerifier([old_public]).verify(ModelSigner(new_private).sign(_model()))
    assert not rotating.verify(_model())


def test_keys_must_be_32_bytes_of_hex() -> None:
    with pytest.raises(ConfigurationError):
        ModelSigner("abc")
    with pytest.raises(ConfigurationError):
        ModelVerifier(["zz" * 32])
    with pytest.raises(ConfigurationError):
        ModelVerifier([])
