"""The prefetch contract with EHR integrators, in one place.

Each key names the resource type the EHR puts there, the FHIR query the service runs on
`fhirServer` when the key is absent, and the fact types its resources feed (an
OperationOutcome under the key makes those facts unknown). Discovery, prefetch, the mapping
and the developer tools all read this table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from fhir_mappings.valuesets import VALUESETS, lab_loinc_codes

PATIENT_TOKEN = "{{context.patientId}}"


@dataclass(frozen=True)
class PrefetchKey:
    key: str
    resource_type: str
    query: str
    """The FHIR query (read or search) with the `{{context.patientId}}` token."""
    facts: tuple[str, ...]


def _observation_codes() -> str:
    """The labs the rules read, and the pregnancy-status Observation (its LOINC codes)."""
    status = tuple(c["code"] for c in VALUESETS["pregnancy"].observation_codes if "loinc" in c["system"])
    return ",".join(f"http://loinc.org|{code}" for code in dict.fromkeys(lab_loinc_codes() + status))


@functools.cache
def prefetch_keys() -> tuple[PrefetchKey, ...]:
    """Every key every service asks for, in discovery order. Built once (it reads the value sets)."""
    p = PATIENT_TOKEN
    return (
        PrefetchKey("patient", "Patient", f"Patient/{p}", ("patient",)),
        PrefetchKey("labs", "Observation", f"Observation?patient={p}&code={_observation_codes()}", ("ferritin", "hemoglobin", "tsat")),
        PrefetchKey("conditions", "Condition", f"Condition?patient={p}", ("conditions",)),
        PrefetchKey("medications", "MedicationRequest", f"MedicationRequest?patient={p}", ("oral_iron", "iv_iron", "medications")),
        PrefetchKey("medicationStatements", "MedicationStatement", f"MedicationStatement?patient={p}", ("oral_iron", "iv_iron", "medications")),
        PrefetchKey("medicationAdministrations", "MedicationAdministration", f"MedicationAdministration?patient={p}", ("iv_iron",)),
        PrefetchKey("allergies", "AllergyIntolerance", f"AllergyIntolerance?patient={p}", ("allergies",)),
    )


@functools.cache
def prefetch_templates() -> Mapping[str, str]:
    """Key -> FHIR query: the `prefetch` of every service in discovery. Read-only."""
    return MappingProxyType({k.key: k.query for k in prefetch_keys()})


@functools.cache
def facts_by_key() -> Mapping[str, tuple[str, ...]]:
    """Key -> the fact types an OperationOutcome under it makes unknown."""
    return MappingProxyType({k.key: k.facts for k in prefetch_keys()})


@functools.cache
def key_by_type() -> Mapping[str, str]:
    """Resource type -> the key that holds it (the EHR's side of the contract)."""
    return MappingProxyType({k.resource_type: k.key for k in prefetch_keys()})
