"""Which FHIR servers the service may fetch from, and send the EHR's access token to, for a caller.

A request's `fhirServer` is a URL chosen by whoever sends the request. Fetching from any URL would
let a caller make the service connect anywhere it can reach (server-side request forgery) and
carry `fhirAuthorization.access_token`, the bearer token of a patient's record, there. So the
service fetches only from servers the operator listed for the caller:

- a verified client's `fhir_servers` in CDS_TRUSTED_CLIENTS;
- with authentication off, CDS_FHIR_SERVERS; when it is unset, any loopback server in
  development mode and none in production.

Either list may hold `loopback`: any http(s) server on a loopback address.

A base URL allows itself and the paths under it (`https://ehr.example.org/fhir` allows
`https://ehr.example.org/fhir/` and `https://ehr.example.org/fhir/r4`), on the same scheme, host
and port. Anything else is refused before a connection is opened.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class FhirServerListError(ValueError):
    """A listed FHIR server base URL is not usable: the service refuses to start."""


def normalize_base(url: str) -> str:
    """A base URL in the form it is compared in: scheme and host lower-cased, default port and
    trailing slash dropped. Raises FhirServerListError for anything but an absolute http(s) URL
    without credentials, query or fragment."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise FhirServerListError(f"{url!r} is not a URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FhirServerListError(f"{url!r}: a FHIR server base URL is http(s)://host[:port][/path]")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise FhirServerListError(f"{url!r}: a FHIR server base URL has no credentials, query or fragment")
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, default) else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/')}"


LOOPBACK = "loopback"
"""A list entry meaning any http(s) server on a loopback address (a local FHIR server whose port varies)."""


def parse_list(value: str | list[str] | None) -> tuple[tuple[str, ...], bool]:
    """(normalized base URLs, whether `loopback` is listed) of a comma-separated list or a list;
    raises FhirServerListError on a malformed entry."""
    items = [] if value is None else value.split(",") if isinstance(value, str) else value
    items = [item.strip() for item in items if item.strip()]
    return tuple(normalize_base(item) for item in items if item != LOOPBACK), LOOPBACK in items


@dataclass(frozen=True)
class FhirServerPolicy:
    """The FHIR servers one caller may have the service fetch from."""

    bases: tuple[str, ...] = ()
    any_loopback: bool = False
    """Any http(s) server on a loopback address (`loopback` listed, or development mode by default)."""
    any_server: bool = False
    """No restriction: only for the operator's own tools (the CLI), never for an HTTP caller."""
    setting: str = "CDS_FHIR_SERVERS"
    """Where the operator lists the servers, named in the 412 when a server is refused."""

    def allows(self, url: str) -> bool:
        if self.any_server:
            return True
        try:
            base = normalize_base(url)
        except FhirServerListError:
            return False
        if self.any_loopback and is_loopback_host(urlsplit(base).hostname or ""):
            return True
        return any(base == allowed or base.startswith(allowed + "/") for allowed in self.bases)


OPERATOR = FhirServerPolicy(any_server=True)
"""The operator's own command line: it fetches wherever the operator's request file says."""
NOWHERE = FhirServerPolicy()


def policy_from_list(value: str | list[str] | None, setting: str) -> FhirServerPolicy:
    bases, loopback = parse_list(value)
    return FhirServerPolicy(bases=bases, any_loopback=loopback, setting=setting)
