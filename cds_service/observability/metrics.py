"""Prometheus metrics: defined once here, incremented where things happen, served at /metrics."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("cds_requests_total", "CDS Hooks invocations", ["service", "status"])
LATENCY = Histogram(
    "cds_request_seconds",
    "CDS Hooks invocation latency",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CARDS = Counter("cds_cards_total", "cards returned", ["outcome"])
FHIR_FETCH_FAILURES = Counter("cds_fhir_fetch_failures_total", "FHIR server fetches that failed", ["key", "reason"])
DECISION_LOG_BACKLOG = Gauge("cds_decision_log_backlog", "decision and feedback records waiting to be written")
DECISION_LOG_FAILURES = Counter("cds_decision_log_write_failures_total", "failed attempts to write decision-log records")
FEEDBACK = Counter("cds_feedback_total", "feedback items received", ["outcome"])

# Every HTTP answer, counted by the access middleware (labels bounded: route template, known service or "-").
HTTP_REQUESTS = Counter("cds_http_requests_total", "HTTP requests answered", ["method", "route", "service", "status"])
HTTP_LATENCY = Histogram(
    "cds_http_request_seconds",
    "HTTP request latency, all answers (errors included), per route and service",
    ["method", "route", "service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
AUTH_REJECTIONS = Counter("cds_auth_rejections_total", "CDS calls refused with 401", ["reason"])


@lru_cache(maxsize=1024)
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, remembered: every answer updates a few of the same series, and
    `labels()` validates and locks each time. Bounded; a series is the same object either way."""
    return metric.labels(*labels)
