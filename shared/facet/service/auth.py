"""API keys for every HTTP API: hashed at rest, several per client (rotation), scoped.

A client is a named caller (a storefront, a merchandising tool) with one or more sha256 digests of its
keys, the storefront it acts for, and the scopes it holds. Keys are never stored or logged in clear;
rotating is: add the new key's digest beside the old, roll the service, move the client, drop the old.

Configuration (JSON, from a mounted secret in production)::

    {"store-de": {"key_sha256": ["<hex>", "<hex>"], "storefront": "store-de",
                  "scopes": ["events:write", "recommendations:read"]},
     "merch-tool": {"key_sha256": ["<hex>"], "scopes": ["catalogue:write"]}}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from fastapi import Header, HTTPException, Request
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from facet.errors import ConfigurationError

_SHA256_HEX = r"^[0-9a-f]{64}$"


class Scope(StrEnum):
    EVENTS_WRITE = "events:write"
    RECOMMENDATIONS_READ = "recommendations:read"
    CATALOGUE_WRITE = "catalogue:write"
    INSIGHTS_READ = "insights:read"


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiClient(BaseModel):
    name: str = ""
    key_sha256: list[Annotated[str, Field(pattern=_SHA256_HEX)]] = Field(min_length=1, max_length=8)
    #: The storefront this client acts for: the only one it may write events as or read shoppers of.
    storefront: str | None = Field(default=None, max_length=128)
    scopes: frozenset[Scope] = frozenset()

    @field_validator("key_sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        return [str(v).lower() for v in value] if isinstance(value, list) else value


class KeyRing:
    def __init__(self, clients: Mapping[str, ApiClient]) -> None:
        self.clients = dict(clients)
        self.by_digest: dict[str, ApiClient] = {}
        for name, client in clients.items():
            named = client.model_copy(update={"name": name})
            for digest in client.key_sha256:
                if digest in self.by_digest:
                    raise ConfigurationError(f"one key digest is configured for two clients ({name})")
                self.by_digest[digest] = named

    @classmethod
    def parse(cls, raw: str) -> KeyRing:
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(f"API keys are not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigurationError("API keys must be a JSON object of client name → client")
        return cls({name: ApiClient.model_validate(client) for name, client in document.items()})

    def authenticate(self, key: str) -> ApiClient | None:
        # Looking up the digest leaks nothing about the key: an attacker would need a sha256 preimage.
        return self.by_digest.get(hash_api_key(key))

    def dependency(self, scope: Scope, cookie: str | None = None) -> Callable[..., ApiClient]:
        """A FastAPI dependency: the calling client, if its key is known and holds ``scope``. ``cookie``
        also accepts the key from that cookie (a browser page's login; the cookie is HttpOnly)."""

        def client_of(
            request: Request,
            authorization: Annotated[str | None, Header()] = None,
            x_api_key: Annotated[str | None, Header()] = None,
        ) -> ApiClient:
            key = x_api_key or (authorization[7:] if authorization and authorization.startswith("Bearer ") else None)
            if not key and cookie is not None:
                key = request.cookies.get(cookie)
            if not key:
                raise HTTPException(401, "missing API key (X-API-Key or Authorization: Bearer)",
                                    headers={"WWW-Authenticate": "Bearer"})
            client = self.authenticate(key)
            if client is None:
                raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
            if scope not in client.scopes:
                raise HTTPException(403, f"this key may not {scope.value.replace(':', ' ')}")
            return client

        return client_of


class ApiKeySettings(BaseSettings):
    """Mixin for a service's settings: where its API clients come from."""

    api_keys: SecretStr | None = None
    api_keys_file: Path | None = None

    def keyring(self) -> KeyRing:
        if self.api_keys_file is not None:
            return KeyRing.parse(self.api_keys_file.read_text())
        if self.api_keys is not None:
            return KeyRing.parse(self.api_keys.get_secret_value())
        raise ConfigurationError("set api_keys or api_keys_file: the API never runs open")
