"""Validation is memoised by exact content: a changed resource is validated again."""

from __future__ import annotations

import copy

from cds_service import fixtures as fx
from fhir_mappings import validation


def test_the_same_content_is_validated_once_and_a_change_is_seen() -> None:
    validation._validate_cached.cache_clear()
    ferritin = fx.ferritin(32, oid="cache-probe")
    assert validation.invalid_reason(ferritin) is None
    assert validation.invalid_reason(copy.deepcopy(ferritin)) is None
    assert validation._validate_cached.cache_info().hits == 1

    broken = copy.deepcopy(ferritin)
    broken["status"] = 17  # not a code
    assert validation.invalid_reason(broken) == "invalid FHIR: status"


def test_key_order_does_not_matter_but_content_does() -> None:
    validation._validate_cached.cache_clear()
    ferritin = fx.ferritin(32, oid="cache-order")
    reordered = dict(reversed(list(ferritin.items())))
    validation.invalid_reason(ferritin)
    validation.invalid_reason(reordered)
    assert validation._validate_cached.cache_info().hits == 1
