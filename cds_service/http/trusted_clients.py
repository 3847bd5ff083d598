"""Who may call this service, and with which keys: the trusted-clients file and its key cache.

The file (YAML or JSON, path in CDS_TRUSTED_CLIENTS) lists each EHR by its JWT issuer and where
its public keys are: inline `jwks`, a local `jwks_file`, a `jwks_url`, and `jku_allow` (the only
`jku` header values this service will ever fetch); and `fhir_servers`, the FHIR server base URLs
the service may fetch from (and send the EHR's access token to) for that client. Keys are looked up locally first; a remote
JWKS is fetched only from an allow-listed URL, cached for `jwks_cache_seconds`, and refetched
for an unknown `kid` at most once per `refetch_interval`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_service.pipeline.fhir_access import (
    LOOPBACK,
    FhirServerListError,
    FhirServerPolicy,
    is_loopback_host,
    normalize_base,
    policy_from_list,
)

log = logging.getLogger("cds_service.http.auth")

ASYMMETRIC_KEY_TYPES = {"EC", "RSA"}
MAX_JWKS_BYTES = 256 * 1024
FETCH_TIMEOUT_SECONDS = 3.0


class TrustedClientsError(ValueError):
    """The trusted-clients configuration is missing or wrong: the service refuses to start."""


def _check_fetch_url(url: str) -> str:
    """Remote keys over https only; plain http only to a loopback host (tests, local proxies)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"{url!r}: key URLs must be https (http only on a loopback host)")


def _check_jwks(value: Any, where: str) -> dict[str, Any]:
    """A JWKS with only asymmetric public keys that name a `kid` (symmetric keys would allow HS*)."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise ValueError(f"{where}: a JWKS is an object with a 'keys' list")
    for index, key in enumerate(value["keys"]):
        if not isinstance(key, dict):
            raise ValueError(f"{where}: keys[{index}] is not an object")
        if key.get("kty") not in ASYMMETRIC_KEY_TYPES:
            raise ValueError(f"{where}: keys[{index}] has kty {key.get('kty')!r}; only EC and RSA public keys are accepted")
        if not isinstance(key.get("kid"), str) or not key["kid"]:
            raise ValueError(f"{where}: keys[{index}] has no 'kid'")
        if "d" in key:
            raise ValueError(f"{where}: keys[{index}] is a private key; give only the public part")
    return value


class ClientConfig(BaseModel):
    """One trusted EHR client: its issuer and where its public keys are."""

    model_config = ConfigDict(extra="forbid")
    iss: str = Field(..., min_length=1, description="the `iss` claim this client's JWTs carry")
    jwks: dict[str, Any] | None = Field(None, description="inline JWKS (public keys)")
    jwks_file: Path | None = Field(None, description="path of a JWKS file (relative to the config file)")
    jwks_url: str | None = Field(None, description="URL of the client's JWKS (https); counts as allow-listed")
    jku_allow: list[str] = Field(default_factory=list, description="`jku` header values that may be fetched")
    fhir_servers: list[str] = Field(
        default_factory=list,
        description="base URLs of this client's FHIR servers: the only `fhirServer` values the service fetches from for it",
    )

    @field_validator("jwks")
    @classmethod
    def _jwks(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_jwks(value, "jwks")

    @field_validator("jwks_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return None if value is None else _check_fetch_url(value)

    @field_validator("jku_allow")
    @classmethod
    def _jkus(cls, value: list[str]) -> list[str]:
        return [_check_fetch_url(url) for url in value]

    @field_validator("fhir_servers")
    @classmethod
    def _fhir_servers(cls, value: list[str]) -> list[str]:
        try:
            return [url if url.strip() == LOOPBACK else normalize_base(url) for url in value]
        except FhirServerListError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _has_keys(self) -> "ClientConfig":
        if not (self.jwks or self.jwks_file or self.jwks_url or self.jku_allow):
            raise ValueError(f"client {self.iss!r} has no keys: give jwks, jwks_file, jwks_url or jku_allow")
        return self


class ClientsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    clients: list[ClientConfig]


@dataclass
class TrustedClient:
    """A loaded client: its config, the local keys by kid, and the URLs it may be fetched from."""

    config: ClientConfig
    local_keys: dict[str, dict[str, Any]]
    jwks_file: Path | None = None
    jwks_file_mtime: float | None = None

    @property
    def iss(self) -> str:
        return self.config.iss

    @cached_property
    def fhir_servers(self) -> FhirServerPolicy:
        """The FHIR servers the service may fetch from for this client."""
        return policy_from_list(self.config.fhir_servers, f"fhir_servers of issuer {self.iss} in CDS_TRUSTED_CLIENTS")

    @property
    def fetchable_urls(self) -> set[str]:
        urls = set(self.config.jku_allow)
        if self.config.jwks_url:
            urls.add(self.config.jwks_url)
        return urls


def _keys_by_kid(jwks: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {key["kid"]: key for key in (jwks or {}).get("keys", [])}


def _read_structured(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _read_jwks_file(path: Path) -> tuple[dict[str, dict[str, Any]], float]:
    try:
        jwks = _check_jwks(_read_structured(path), str(path))
        return _keys_by_kid(jwks), path.stat().st_mtime
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TrustedClientsError(f"JWKS file {path}: {exc}") from exc


def load_trusted_clients(path: Path) -> dict[str, TrustedClient]:
    """Read and check the trusted-clients file. Raises TrustedClientsError with a clear message."""
    try:
        raw = _read_structured(path)
    except FileNotFoundError as exc:
        raise TrustedClientsError(f"CDS_TRUSTED_CLIENTS file not found: {path}") from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise TrustedClientsError(f"CDS_TRUSTED_CLIENTS file {path} is not valid YAML/JSON: {exc}") from exc
    try:
        parsed = ClientsFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise TrustedClientsError(f"CDS_TRUSTED_CLIENTS file {path}: {problems}") from exc
    if not parsed.clients:
        raise TrustedClientsError(f"CDS_TRUSTED_CLIENTS file {path} lists no clients")
    clients: dict[str, TrustedClient] = {}
    for config in parsed.clients:
        if config.iss in clients:
            raise TrustedClientsError(f"CDS_TRUSTED_CLIENTS file {path}: issuer {config.iss!r} is listed twice")
        keys = _keys_by_kid(config.jwks)
        client = TrustedClient(config, keys)
        if config.jwks_file is not None:
            file = config.jwks_file if config.jwks_file.is_absolute() else path.parent / config.jwks_file
            file_keys, mtime = _read_jwks_file(file)
            client.jwks_file, client.jwks_file_mtime = file, mtime
            client.local_keys = {**file_keys, **keys}
        clients[config.iss] = client
    return clients


@dataclass
class _CachedSet:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None
    attempted_at: float | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class KeyStore:
    """Finds the public key (a JWK dict) for (issuer, kid, jku); fetches only allow-listed URLs.

    Remote sets are cached for `ttl` seconds. A `kid` missing from a fresh cached set triggers
    one refetch, at most once per `refetch_interval` per URL, so unknown kids cannot make this
    service hammer the client's key server.
    """

    def __init__(
        self,
        clients: dict[str, TrustedClient],
        ttl: float,
        refetch_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.clients = clients
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self.clock = clock
        self.transport = transport
        self._remote: dict[str, _CachedSet] = {}

    async def find(self, client: TrustedClient, kid: str, jku: str | None) -> dict[str, Any] | None:
        """The JWK for `kid`, or None. Never fetches a `jku` that is not on the client's allow-list."""
        key = client.local_keys.get(kid) or self._reload_file_if_changed(client, kid)
        if key is not None:
            return key
        urls: list[str] = []
        if jku is not None:
            if jku in client.fetchable_urls:
                urls.append(jku)
            else:
                log.warning("jku not on the allow-list: not fetched", extra={"iss": client.iss})
        if client.config.jwks_url and client.config.jwks_url not in urls:
            urls.append(client.config.jwks_url)
        for url in urls:
            key = await self._find_remote(url, kid)
            if key is not None:
                return key
        return None

    def _reload_file_if_changed(self, client: TrustedClient, kid: str) -> dict[str, Any] | None:
        """Key rotation by file: an unknown kid re-reads the JWKS file when it has changed."""
        if client.jwks_file is None:
            return None
        try:
            mtime = client.jwks_file.stat().st_mtime
            if mtime == client.jwks_file_mtime:
                return None
            file_keys, mtime = _read_jwks_file(client.jwks_file)
        except (OSError, TrustedClientsError):
            log.warning("JWKS file unreadable; keeping the keys loaded before", extra={"iss": client.iss})
            return None
        client.jwks_file_mtime = mtime
        client.local_keys = {**file_keys, **_keys_by_kid(client.config.jwks)}
        return client.local_keys.get(kid)

    async def _find_remote(self, url: str, kid: str) -> dict[str, Any] | None:
        cached = self._remote.setdefault(url, _CachedSet())
        async with cached.lock:
            now = self.clock()
            fresh = cached.fetched_at is not None and now - cached.fetched_at < self.ttl
            if fresh and kid in cached.keys:
                return cached.keys[kid]
            recently_tried = cached.attempted_at is not None and now - cached.attempted_at < self.refetch_interval
            if recently_tried:
                return None  # a kid missing just after a fetch, or a fetch that failed moments ago
            cached.attempted_at = now
            keys = await self._fetch(url)
            if keys is not None:
                cached.keys, cached.fetched_at = keys, self.clock()
            elif cached.fetched_at is not None and now - cached.fetched_at >= self.ttl:
                cached.keys, cached.fetched_at = {}, None  # stale keys are not kept past their TTL
            return cached.keys.get(kid)

    async def _fetch(self, url: str) -> dict[str, dict[str, Any]] | None:
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_SECONDS, transport=self.transport, follow_redirects=False) as http:
                async with http.stream("GET", url, headers={"Accept": "application/json"}) as response:
                    if response.status_code != 200:
                        log.warning("JWKS fetch failed", extra={"status": response.status_code})
                        return None
                    body = b""
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_JWKS_BYTES:
                            log.warning("JWKS fetch failed: document too large")
                            return None
            keys = _keys_by_kid(_check_jwks(json.loads(body), "fetched JWKS"))
            log.info("JWKS fetched", extra={"keys": len(keys)})
            return keys
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWKS fetch failed", extra={"error_type": type(exc).__name__})
            return None
