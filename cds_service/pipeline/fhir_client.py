"""The FHIR server client: one shared httpx.AsyncClient per process, bounded in time and size.

Why a module of its own: every guarantee that protects the EHR's access token and the service
(the token only goes to `fhirServer`'s origin, no redirects, no proxies or netrc from the
environment, capped bodies and entry counts, `next` links kept on the server) lives here, in
one place that can be read and tested. `prefetch.py` decides *what* to fetch; this module
decides *how*. Failures are `FetchError`s with a short, low-cardinality `reason` code (it is
also a metrics label) and never carry tokens or patient data.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from cds_service import __version__
from cds_service.settings import Settings

log = logging.getLogger("cds_service.fhir")

# httpx logs every request URL at INFO, and search URLs carry the patient id: keep its loggers to
# warnings. What a fetch did is logged by prefetch.py as key, host and status only.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MAX_BODY_BYTES = 10 * 1024 * 1024
"""Largest single response body read from the FHIR server (after decompression)."""

FHIR_JSON = "application/fhir+json"


class FetchError(Exception):
    """A fetch from the FHIR server failed. `reason` is a short code: safe for logs and metrics."""

    def __init__(self, reason: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a URL: the only place the token may be sent."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: httpx.URL) -> "Origin":
        scheme = url.scheme.lower()
        port = url.port or (443 if scheme == "https" else 80)
        return cls(scheme, url.host.lower(), port)


def base_url(fhir_server: str) -> httpx.URL:
    """`fhirServer` as a base URL without a trailing slash; FetchError if it is not one."""
    try:
        url = httpx.URL(fhir_server.strip().rstrip("/"))
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise FetchError("invalid-fhir-server", "fhirServer is not a valid URL") from exc
    if url.scheme.lower() not in ("http", "https") or not url.host:
        raise FetchError("invalid-fhir-server", "fhirServer must be an absolute http(s) URL")
    if url.query or url.fragment or url.userinfo:
        raise FetchError("invalid-fhir-server", "fhirServer must be a base URL without query, fragment or credentials")
    return url


class FhirClient:
    """GETs FHIR JSON from one origin at a time, with the request's bearer token only on that origin."""

    def __init__(self, settings: Settings, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.max_body_bytes = max_body_bytes
        self.max_pages = max(1, settings.fhir_max_pages)
        self.max_entries = settings.max_bundle_entries
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                connect=settings.fhir_connect_timeout,
                read=settings.fhir_read_timeout,
                write=settings.fhir_read_timeout,
                pool=settings.fhir_connect_timeout,
            ),
            follow_redirects=False,  # a redirect could carry the token to another host
            trust_env=False,  # no proxy or .netrc credentials picked up from the environment
            headers={"Accept": FHIR_JSON, "User-Agent": f"rls-iron-cds/{__version__}"},
        )
        self._loop = _running_loop()

    @property
    def closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get_json(self, url: httpx.URL, origin: Origin, token: str | None) -> dict[str, Any]:
        """GET one URL on `origin` and return its JSON object. Any problem is a FetchError."""
        if Origin.of(url) != origin:
            raise FetchError("off-server-link", "a link points away from fhirServer; not followed")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            async with self._http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    raise FetchError(
                        f"http-{response.status_code}",
                        f"the FHIR server answered {response.status_code}",
                        response.status_code,
                    )
                body = await self._read_capped(response)
        except FetchError:
            raise
        except httpx.TimeoutException as exc:
            raise FetchError("timeout", "the FHIR server did not answer in time") from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise FetchError("unreachable", "the FHIR server could not be reached or dropped the connection") from exc
        except httpx.HTTPError as exc:
            raise FetchError("transport-error", f"HTTP error talking to the FHIR server ({type(exc).__name__})") from exc
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise FetchError("not-json", "the FHIR server's answer is not JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
            raise FetchError("not-a-resource", "the FHIR server's answer is not a FHIR resource")
        return document

    async def _read_capped(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise FetchError("too-large", f"the FHIR server's answer is over {self.max_body_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise FetchError("too-large", f"the FHIR server's answer is over {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def read(self, url: httpx.URL, origin: Origin, token: str | None) -> dict[str, Any]:
        """A FHIR read: one resource."""
        return await self.get_json(url, origin, token)

    async def search(self, url: httpx.URL, origin: Origin, token: str | None, entries: "EntryBudget") -> dict[str, Any]:
        """A FHIR search with every page: one searchset Bundle holding all pages' entries.

        `next` links are followed up to `fhir_max_pages` pages, only on `origin`. More pages than
        that is a failure rather than a silent truncation: a missing page could hide a result.
        """
        merged: list[Any] = []
        pages = 0
        next_url: httpx.URL | None = url
        while next_url is not None:
            if pages >= self.max_pages:
                raise FetchError("too-many-pages", f"the search has more than {self.max_pages} pages")
            page = await self.get_json(next_url, origin, token)
            pages += 1
            if page.get("resourceType") != "Bundle":
                raise FetchError("not-a-bundle", f"a search answered {_safe_type(page)}, not a Bundle")
            page_entries = page.get("entry") or []
            if not isinstance(page_entries, list):
                raise FetchError("not-a-bundle", "the Bundle's entry is not a list")
            entries.take(len(page_entries))
            merged.extend(page_entries)
            next_url = _next_link(page, next_url)
        return {"resourceType": "Bundle", "type": "searchset", "total": len(merged), "entry": merged}


class EntryBudget:
    """How many Bundle entries one request may still fetch (CDS_MAX_BUNDLE_ENTRIES in all)."""

    def __init__(self, limit: int) -> None:
        self.left = limit
        self.limit = limit

    def take(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise FetchError("too-many-entries", f"the FHIR server returned more than {self.limit} entries")


def _next_link(page: dict[str, Any], current: httpx.URL) -> httpx.URL | None:
    links = page.get("link")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("relation") == "next":
            target = link.get("url")
            if not isinstance(target, str) or not target.strip():
                raise FetchError("bad-next-link", "a Bundle next link has no URL")
            try:
                return current.join(target.strip())
            except (httpx.InvalidURL, ValueError) as exc:
                raise FetchError("bad-next-link", "a Bundle next link is not a valid URL") from exc
    return None


def _safe_type(document: dict[str, Any]) -> str:
    kind = document.get("resourceType")
    return kind if isinstance(kind, str) and kind.isalnum() and len(kind) <= 64 else "another resource"


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class FhirServer:
    """Where the keys absent from prefetch come from: the EHR's FHIR server, through one pooled
    client per process (connections are reused across requests), closed at shutdown.

    An httpx client belongs to the event loop that made it: a caller on a fresh loop (the CLI, a
    test client) gets a fresh client rather than a pool bound to a dead loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: FhirClient | None = None

    def client(self) -> FhirClient:
        client = self._client
        if client is not None and not client.closed and client._loop is _running_loop():
            return client
        self._client = FhirClient(self.settings)
        return self._client

    @property
    def open_client(self) -> FhirClient | None:
        """The client made so far, if it is still open."""
        return self._client if self._client is not None and not self._client.closed else None

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None and not client.closed:
            await client.aclose()
