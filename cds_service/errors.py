"""Every error the service answers with, and the one place each maps to an HTTP status."""

from __future__ import annotations

from typing import Any, Mapping


class CDSError(Exception):
    """Base: an answer other than 200, with a JSON body `{"error": code, "detail": sentence, ...extra}`.

    `detail` is always one sentence saying what to fix; what is itemised (the prefetch keys that
    failed, the fields at fault) goes in `extra`, under its own key.
    """

    status_code = 400
    code = "bad-request"

    def __init__(self, detail: str = "", extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = dict(extra or {})


class BadRequest(CDSError):
    """The body is not a valid CDS Hooks request for this service (400)."""


class UnknownService(CDSError):
    """No enabled service has this id (404)."""

    status_code = 404
    code = "unknown-service"


class PayloadTooLarge(CDSError):
    """The body is larger than CDS_MAX_BODY_BYTES (413)."""

    status_code = 413
    code = "payload-too-large"


class PrefetchFailed(CDSError):
    """Data the hook needs could not be obtained from prefetch or the FHIR server (412)."""

    status_code = 412
    code = "prefetch-failed"


class Unauthorized(CDSError):
    """The bearer JWT is missing or not acceptable (401). The detail never helps an attacker."""

    status_code = 401
    code = "unauthorized"


class EngineUnavailable(CDSError):
    """The rule engine failed for this request; no card is safer than a wrong one (503)."""

    status_code = 503
    code = "engine-unavailable"


class ReplayCheckUnavailable(CDSError):
    """The database that holds the seen JWT ids cannot be reached: no token is accepted (503)."""

    status_code = 503
    code = "replay-check-unavailable"
