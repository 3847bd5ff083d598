"""Reuse of a decision for the same chart: identical data, same day, same rules, same answer.

An EHR sends the same chart many times: `patient-view` on every opening of the chart, and
`order-select` again on every change of the order being written. Facts depend only on the
resources, the patient, the draft orders and the calendar day, and the rules are a pure function
of the facts, so the facts, the rule answer and the cards' content of an identical invocation
can be reused instead of recomputed. What stays per invocation: a new decision id, new card and
suggestion uuids, the decision record (it says the evaluation was reused) and the metrics.

The key is a SHA-256 digest of everything the evaluation reads: service, rule-set version and
engine, hook, patient id, the UTC day, the link base, the resources in the order received, the
draft orders, the fullUrls and the keys whose data is unknown. Any difference (one more
resource, another order of resources, another patient, the next day) is another key. The
cache is bounded (least recently used out) and lives in the process's memory only;
`CDS_REUSE_CACHE_SIZE=0` turns it off.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping, Sequence

import orjson

from cds_service.engine import EngineResult
from cds_service.models import Card
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
    *,
    service_id: str,
    ruleset_version: str,
    engine: str,
    hook: str,
    patient_id: str,
    day: date,
    base_url: str,
    resources: Sequence[Any],
    draft_orders: Sequence[Any],
    full_urls: Mapping[str, str],
    unknown_keys: frozenset[str],
) -> bytes:
    """A digest of every input of the evaluation; equal digests mean equal inputs."""
    document = (
        service_id,
        ruleset_version,
        engine,
        hook,
        patient_id,
        day.isoformat(),
        base_url,
        sorted(unknown_keys),
        full_urls,
        draft_orders,
        resources,
    )
    try:
        encoded = orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return b""  # not plain JSON (never from HTTP): not reusable
    return hashlib.sha256(encoded).digest()  # SHA-NI: half the cost of BLAKE2b here


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
