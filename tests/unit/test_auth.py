"""API keys: hashed at rest, several per client, scoped."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from facet.errors import ConfigurationError
from facet.service.auth import KeyRing, Scope, hash_api_key
from fastapi import HTTPException


def _ring() -> KeyRing:
    return KeyRing.parse(json.dumps({
        "store-de": {"key_sha256": [hash_api_key("old"), hash_api_key("new")], "storefront": "store-de",
                     "scopes": ["recommendations:read"]},
        "merch": {"key_sha256": hash_api_key("merch"), "scopes": ["catalogue:write"]},
    }))


def _status(dependency: object, **headers: str | None) -> int | str:
    try:
        return dependency(request=SimpleNamespace(cookies={}), **headers).name  # type: ignore[operator,no-any-return]
    except HTTPException as error:
        return error.status_code


def test_rotation_keeps_both_keys_valid_and_scopes_hold() -> None:
    read = _ring().dependency(Scope.RECOMMENDATIONS_READ)
    assert _status(read, authorization=None, x_api_key="old") == "store-de"
    assert _status(read, authorization="Bearer new", x_api_key=None) == "store-de"
    assert _status(read, authorization=None, x_api_key="merch") == 403
    assert _status(read, authorization=None, x_api_key="nope") == 401
    assert _status(read, authorization=None, x_api_key=None) == 401


def test_keys_are_never_stored_in_clear_and_one_key_has_one_owner() -> None:
    ring = _ring()
    assert "old" not in json.dumps({d: c.name for d, c in ring.by_digest.items()})
    with pytest.raises(ConfigurationError):
        KeyRing.parse(json.dumps({"a": {"key_sha256": [hash_api_key("k")]}, "b": {"key_sha256": [hash_api_key("k")]}}))


def test_ingest_storefront_digests_rotate_with_a_list() -> None:
    from facet_ingest.settings import IngestSettings

    settings = IngestSettings(api_key_hashes=json.dumps({"store-de": [hash_api_key("old"), hash_api_key("new")]}))
    write = settings.keyring().dependency(Scope.EVENTS_WRITE)
    assert _status(write, authorization=None, x_api_key="old") == _status(write, authorization=None,
                                                                          x_api_key="new") == "store-de"
