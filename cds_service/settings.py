"""Every setting of the service, read from the environment in one place (all prefixed `CDS_`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_PATIENT_KEY = "development-only-patient-key"


class Settings(BaseSettings):
    """Read once per process; tests build their own instance and pass it to `create_app`."""

    model_config = SettingsConfigDict(env_prefix="CDS_", env_file=None, extra="ignore")

    mode: Literal["development", "production"] = Field(
        "production", description="development (what `make serve` starts): auth off unless set, CORS any origin"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1

    auth_mode: Literal["jwt", "off"] | None = Field(
        None, description="jwt (default) or off; development mode defaults to off"
    )
    trusted_clients: Path | None = Field(None, description="YAML or JSON file of trusted EHR clients and their keys")
    public_url: str | None = Field(None, description="public base URL of this service: the JWT audience is this plus the path")
    allow_insecure: bool = Field(False, description="allow auth off on a non-loopback address")
    jwt_clock_skew_seconds: int = 60
    jwks_cache_seconds: int = 300

    cors_origins: str | None = Field(
        None, description="comma-separated allowed origins; development mode allows any origin when unset"
    )

    rule_engine: Literal["durable", "python"] | None = Field(
        None, description="python (the reference evaluator, default) or durable (durable-rules 2.0.28)"
    )
    profiles: str = Field(
        "article",
        description="comma-separated rule profiles whose services discovery lists and the service answers (one service per hook each)",
    )
    services: str | None = Field(None, description="comma-separated service ids to enable; when set it alone decides, whatever CDS_PROFILES says")
    rules_dir: Path | None = Field(None, description="override the rules directory (tests)")

    database_url: str = Field("sqlite:///./var/decisions.db", description="decision log database (SQLAlchemy URL)")
    decision_log_phi: bool = Field(False, description="store patient values in the decision log")
    patient_key_secret: str = Field(
        DEVELOPMENT_PATIENT_KEY, description="HMAC key for the pseudonymous patient key in the decision log"
    )
    retention_days: int = Field(365, description="decision records older than this are purged by `cds-service decisions purge`")

    max_body_bytes: int = Field(5 * 1024 * 1024, description="requests larger than this get 413")
    max_json_depth: int = 64
    max_bundle_entries: int = 5000
    max_array_items: int = Field(10_000, description="longest array in a request (a Bundle's entry excepted)")
    max_string_chars: int = Field(1_048_576, description="longest string in a request")
    max_resource_elements: int = Field(50_000, description="most JSON values in one resource")
    offload_bytes: int = Field(
        64 * 1024, description="a request body at least this large is evaluated on a worker thread, so the event loop keeps serving"
    )

    fhir_servers: str | None = Field(
        None,
        description=(
            "with authentication off: comma-separated FHIR server base URLs the service may fetch from; "
            "unset: loopback servers in development mode, none in production (with JWT: each client's fhir_servers)"
        ),
    )
    fhir_connect_timeout: float = 2.0
    fhir_read_timeout: float = 5.0
    fhir_total_timeout: float = 8.0
    fhir_max_pages: int = 20

    opentelemetry: bool = Field(
        False,
        description=(
            "FastAPI's OpenTelemetry request spans and HTTP metrics, sent to the providers configured in the process; "
            "its exception and validation logs stay off (they carry exception messages and request values)"
        ),
    )
    log_level: str = "INFO"
    log_json: bool = True
    shutdown_grace_seconds: float = Field(20.0, description="on SIGTERM, how long in-flight requests may take to finish")

    ui_enabled: bool = Field(
        False, description="serve the developers' test page (/, /ui/evaluate) outside development mode"
    )

    @property
    def default_patient_key(self) -> bool:
        """The HMAC key is the public development default: decision-log patient keys are guessable."""
        return self.patient_key_secret == DEVELOPMENT_PATIENT_KEY

    @property
    def development(self) -> bool:
        return self.mode == "development"

    @property
    def effective_auth_mode(self) -> str:
        if self.auth_mode:
            return self.auth_mode
        return "off" if self.development else "jwt"

    @property
    def enabled_services(self) -> set[str] | None:
        if not self.services:
            return None
        return {s.strip() for s in self.services.split(",") if s.strip()}

    @property
    def profile_names(self) -> list[str]:
        return [p.strip() for p in self.profiles.split(",") if p.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        if self.cors_origins:
            return [o.strip() for o in self.cors_origins.split(",") if o.strip()]
        return ["*"] if self.development else []


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
