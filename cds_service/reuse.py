"""Reuse of a decision for the same chart: identical data, same day, same rules, same answer.

An EHR sends the same chart many times: `patient-view` on every opening of the chart, and
`order-select` again on every change of the order being written. Facts depend only on the
resources, the patient, the draft orders and the calendar day, and the rules are a pure function
of the facts, so the facts, the rule answer and the cards' content of an identical invocation
can be reused instead of recomputed. What stays per invocation: a new decision id, new card and
suggestion uuids, the decision record (it says the evaluation was reused) and the metrics.

The key is a SHA-256 digest of the invocation as received, taken before any resource is read:
service, rule-set version and engine, the UTC day, the link base, and the whole request except
`hookInstance` and `fhirAuthorization` (hook, fhirServer, context with patient and draft
orders, the whole prefetch in its order). Only an invocation whose prefetch has every key is
looked up: one that needs a fetch from the FHIR server is always evaluated. Any difference (one
more resource, another order of resources, another patient, the next day) is another key. A
hit skips reading the prefetch as well as mapping, rules and cards. The cache is bounded (least
recently used out) and lives in the process's memory only; `CDS_REUSE_CACHE_SIZE=0` turns it
off.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
from pydantic import BaseModel

from cds_service.engine import EngineResult
from cds_service.models import Card, CDSRequest
from fhir_mappings import FactSet


@dataclass(frozen=True)
class Decided:
    """What an evaluation computed that depends only on its inputs (never mutated once stored)."""

    facts: FactSet
    result: EngineResult
    cards: tuple[Card, ...]
    views: dict[str, Any] = field(default_factory=dict, compare=False)
    """Read-only forms of this decision computed on first use and shared by every reuse (the
    decision record's content, the cards as JSON): see `Evaluation.views`."""


def reuse_key(
    request: CDSRequest,
    *,
    service_id: str,
    ruleset_version: str,
    engine: str,
    day: date,
    base_url: str,
) -> bytes:
    """A digest of the invocation as received, without what changes on every call of a chart.

    Left out: `hookInstance` (new for every call) and `fhirAuthorization` (the EHR's access
    token). Everything else is in it: hook, `fhirServer`, the whole context (patient, draft
    orders, selections and any other field) and the whole `prefetch` as received, in its order.
    Callers use it only when every prefetch key is present, so nothing would be fetched: the
    evaluation's inputs are then all in the request. Equal digests mean equal inputs.
    """
    document = (
        service_id,
        ruleset_version,
        engine,
        day.isoformat(),
        base_url,
        request.hook,
        request.fhirServer,
        request.context,
        request.prefetch,
        request.model_extra,
    )
    try:
        encoded = orjson.dumps(document, default=_plain)
    except (TypeError, orjson.JSONEncodeError):
        # Not plain JSON (a key that is not a string, never from HTTP) or nested beyond orjson's
        # limit: not reusable. Allowing other keys (OPT_NON_STR_KEYS) doubled the cost of the key.
        return b""
    return hashlib.sha256(encoded).digest()  # SHA-NI: half the cost of BLAKE2b here


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return {**value.__dict__, **(value.model_extra or {})}
    raise TypeError


class ReuseCache:
    """A bounded, thread-safe map from `reuse_key` to what was decided."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self._entries: OrderedDict[bytes, Decided] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes) -> Decided | None:
        if not key or not self.size:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: bytes, decided: Decided) -> None:
        if not key or not self.size:
            return
        with self._lock:
            self._entries[key] = decided
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
