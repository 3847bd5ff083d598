"""Authentication of the calling EHR (CDS Hooks 2.0 security): the bearer JWT.

Every CDS call and feedback carries `Authorization: Bearer <JWT>` signed by the EHR. It is
accepted only when: the algorithm is asymmetric (ES*, RS*, PS*; never `none` or HS*), `iss` is a
trusted client, the key is that client's (by `kid`), the signature verifies, `aud` is this
service's URL, `exp`/`iat` are present and valid (small clock skew), and `jti` has not been seen
within the token's lifetime. The 401 says as little as possible; the log says why (never the
token itself).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Callable

import jwt
from fastapi import Depends, Request

from cds_service.audit.seen_tokens import SeenTokens
from cds_service.errors import ReplayCheckUnavailable, Unauthorized
from cds_service.http.trusted_clients import KeyStore, TrustedClient, TrustedClientsError, load_trusted_clients
from cds_service.observability import metrics
from cds_service.pipeline.fhir_access import NOWHERE, FhirServerListError, FhirServerPolicy, is_loopback_host, parse_list, policy_from_list
from cds_service.settings import Settings

log = logging.getLogger("cds_service.http.auth")

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
MAX_TOKEN_BYTES = 16 * 1024
MAX_LIFETIME_SECONDS = 3600
"""Tokens valid for longer are refused: CDS Hooks asks for minutes, and it bounds the replay table."""

CHALLENGE = 'Bearer realm="cds-hooks"'

# What the client is told: deliberately coarse.
MISSING = "bearer token required"
MALFORMED = "bearer token is malformed"
NOT_ACCEPTED = "bearer token not accepted"
EXPIRED = "bearer token expired or not yet valid"
WRONG_AUDIENCE = "bearer token audience does not match this service"
REPLAYED = "bearer token already used"


class StartupRefused(RuntimeError):
    """The security configuration is unsafe or incomplete: the service does not start."""


class AuthFailure(Unauthorized):
    """A rejected token: `detail` goes to the client, `reason` only to the log."""

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass
class JWTVerifier:
    """Verifies CDS Hooks client JWTs against the trusted clients."""

    clients: dict[str, TrustedClient]
    keys: KeyStore
    replay: SeenTokens
    """The JWT ids accepted so far, shared by every process on the decision log's database."""
    skew: int
    clock: Callable[[], float] = time.time

    async def verify(self, token: str, audience: str) -> dict[str, Any]:
        """The verified claims, or AuthFailure."""
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthFailure(MALFORMED, "token too long")
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthFailure(MALFORMED, f"undecodable token ({type(exc).__name__})") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise AuthFailure(NOT_ACCEPTED, f"algorithm {str(alg)[:16]!r} not allowed")
        iss = claims.get("iss")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthFailure(NOT_ACCEPTED, "issuer not trusted")
        kid, jku = header.get("kid"), header.get("jku")
        if not isinstance(kid, str) or not kid or (jku is not None and not isinstance(jku, str)):
            raise AuthFailure(NOT_ACCEPTED, f"no usable kid/jku in header (iss {iss})")
        jwk = await self.keys.find(client, kid, jku)
        if jwk is None:
            raise AuthFailure(NOT_ACCEPTED, f"unknown key for issuer {iss}")
        key = _public_key(jwk, alg, iss)
        try:
            verified = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.skew,
                options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
            )
        except jwt.InvalidAudienceError:
            raise AuthFailure(WRONG_AUDIENCE, f"audience mismatch (iss {iss})") from None
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError):
            raise AuthFailure(EXPIRED, f"expired or issued in the future (iss {iss})") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure(NOT_ACCEPTED, f"missing claim {exc.claim} (iss {iss})") from None
        except jwt.PyJWTError as exc:
            raise AuthFailure(NOT_ACCEPTED, f"{type(exc).__name__} (iss {iss})") from None
        return await self._check_lifetime_and_replay(verified, iss)

    async def _check_lifetime_and_replay(self, claims: dict[str, Any], iss: str) -> dict[str, Any]:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise AuthFailure(NOT_ACCEPTED, f"unusable jti (iss {iss})")
        exp, iat = float(claims["exp"]), float(claims["iat"])
        if exp - iat > MAX_LIFETIME_SECONDS:
            raise AuthFailure(NOT_ACCEPTED, f"token lifetime over {MAX_LIFETIME_SECONDS}s (iss {iss})")
        try:
            new = await asyncio.to_thread(self.replay.add_if_new, iss, jti, exp + self.skew)
        except Exception as exc:  # the database is away: a replay cannot be ruled out, so no answer
            log.error("replay check unavailable (%s)", type(exc).__name__)
            raise ReplayCheckUnavailable("the token could not be checked against replays; try again") from None
        if not new:
            raise AuthFailure(REPLAYED, f"replayed jti (iss {iss})")
        return claims


def _public_key(jwk: dict[str, Any], alg: str, iss: str) -> jwt.PyJWK:
    """The key for `alg`, refusing a JWK whose type, curve or declared `alg` does not fit."""
    declared = jwk.get("alg")
    kty = jwk.get("kty")
    fits = (
        (alg.startswith(("RS", "PS")) and kty == "RSA")
        or (alg.startswith("ES") and kty == "EC" and jwk.get("crv") == EC_CURVE_OF[alg])
    )
    if not fits or (declared is not None and declared != alg):
        raise AuthFailure(NOT_ACCEPTED, f"key does not fit algorithm {alg} (iss {iss})")
    if jwk.get("use") not in (None, "sig"):
        raise AuthFailure(NOT_ACCEPTED, f"key is not a signing key (iss {iss})")
    try:
        return jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWTError:
        raise AuthFailure(NOT_ACCEPTED, f"unusable key (iss {iss})") from None


def check_startup(settings: Settings) -> None:
    """Refuse unsafe configurations before serving anything (raises StartupRefused)."""
    if settings.effective_auth_mode == "jwt":
        if settings.trusted_clients is None:
            raise StartupRefused(
                "CDS_AUTH_MODE=jwt needs CDS_TRUSTED_CLIENTS (a YAML or JSON file listing the EHRs allowed to call); "
                "see docs/security.md"
            )
        try:
            load_trusted_clients(settings.trusted_clients)
        except TrustedClientsError as exc:
            raise StartupRefused(str(exc)) from None
    try:
        parse_list(settings.fhir_servers)
    except FhirServerListError as exc:
        raise StartupRefused(f"CDS_FHIR_SERVERS: {exc}") from None
    if settings.effective_auth_mode == "jwt":
        pass
    elif not is_loopback_host(settings.host) and not settings.allow_insecure:
        raise StartupRefused(
            f"authentication is off (CDS_AUTH_MODE=off or development mode) but the service would listen on "
            f"{settings.host}, which is not a loopback address; set CDS_AUTH_MODE=jwt with CDS_TRUSTED_CLIENTS, "
            f"or CDS_ALLOW_INSECURE=true if you really mean it"
        )


def build_verifier(settings: Settings) -> JWTVerifier | None:
    """The verifier for this process (None when auth is off). Raises StartupRefused."""
    check_startup(settings)
    if settings.effective_auth_mode != "jwt":
        return None
    assert settings.trusted_clients is not None
    clients = load_trusted_clients(settings.trusted_clients)
    log.info("JWT verification on", extra={"clients": len(clients)})
    if not settings.public_url:
        log.warning(
            "CDS_PUBLIC_URL is not set: the JWT audience is checked against the URL each request names "
            "(its Host header); set CDS_PUBLIC_URL in production"
        )
    return JWTVerifier(clients, KeyStore(clients, ttl=settings.jwks_cache_seconds), SeenTokens(settings.database_url), settings.jwt_clock_skew_seconds)


def expected_audience(request: Request, settings: Settings) -> str:
    """This service's URL for the request: CDS_PUBLIC_URL + path, else the URL it came to."""
    if settings.public_url:
        return settings.public_url.rstrip("/") + request.url.path
    return str(request.url.replace(query="", fragment=""))


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise AuthFailure(MISSING, "no Authorization header")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise AuthFailure(MALFORMED, "Authorization header is not 'Bearer <token>'")
    return token




PROTECTED = re.compile(r"^/cds-services/[^/]+(?:/feedback)?/?$")
"""The routes that need the EHR's token: every service call and its feedback."""
CLAIMS_KEY = "cds.caller"
"""Where RequestGuard leaves the claims it verified (ASGI scope)."""


async def verify_request(request: Request, verifier: JWTVerifier) -> dict[str, Any]:
    """The verified claims of the request's bearer token, or AuthFailure (logged and counted)."""
    try:
        return await verifier.verify(bearer_token(request), expected_audience(request, request.app.state.settings))
    except AuthFailure as exc:
        log.warning("caller rejected", extra={"auth_reason": exc.reason})
        metrics.AUTH_REJECTIONS.labels(str(exc.detail)).inc()
        raise


async def verify_caller(request: Request) -> dict[str, Any] | None:
    """The verified claims of the calling EHR's bearer JWT (None when authentication is off).

    A FastAPI dependency: every CDS call and feedback route declares it in its signature
    (`caller: Caller`). RequestGuard has verified the token before any body was read; the claims
    it left are returned, and a request that did not pass through it is verified here. Raises
    Unauthorized (401) when the token is not acceptable.
    """
    verifier: JWTVerifier | None = getattr(request.app.state, "verifier", None)
    if verifier is None:
        return None
    claims = request.scope.get(CLAIMS_KEY)
    if claims is None:  # the route is reached without RequestGuard (a test app, a sub-application)
        claims = await verify_request(request, verifier)
    request.state.caller = claims.get("iss")
    return claims


def fhir_servers_for(claims: dict[str, Any] | None, verifier: JWTVerifier | None, settings: Settings) -> FhirServerPolicy:
    """The FHIR servers the service may fetch from for this caller (pipeline/fhir_access.py).

    A verified client: its own `fhir_servers`. Authentication off: CDS_FHIR_SERVERS, else any
    loopback server in development mode and none in production.
    """
    if verifier is not None:
        client = verifier.clients.get(str((claims or {}).get("iss")))
        if client is None:
            return NOWHERE
        return client.fhir_servers
    return _operator_list(settings.fhir_servers, settings.development)


@lru_cache(maxsize=8)
def _operator_list(listed: str | None, development: bool) -> FhirServerPolicy:
    """The policy with authentication off, read once from the settings (a pure function of them)."""
    if listed is not None:
        return policy_from_list(listed, "CDS_FHIR_SERVERS")
    if development:
        return FhirServerPolicy(any_loopback=True, setting="CDS_FHIR_SERVERS; in development mode only loopback servers by default")
    return FhirServerPolicy(setting="CDS_FHIR_SERVERS; none by default in production")


Caller = Annotated[dict[str, Any] | None, Depends(verify_caller)]
"""The calling EHR's verified JWT claims: a route that takes it is protected."""
