"""FHIR R4 resources to the normalized facts the rules see (see `facts.py` for the contract)."""

from fhir_mappings.build import MappingInput, build_facts
from fhir_mappings.facts import Exclusion, FactSet

__all__ = ["MappingInput", "build_facts", "Exclusion", "FactSet"]
