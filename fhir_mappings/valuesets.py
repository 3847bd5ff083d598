"""Value sets as data (the YAML files beside this module), matched by system and code."""

from __future__ import annotations

FERRITIN_LOINC = ("2276-4", "20567-4", "24373-3", "14723-1")
HEMOGLOBIN_LOINC = ("718-7", "20509-6", "55782-7", "30313-1", "30350-3", "30351-1", "30352-9", "14775-1", "76769-9", "76768-1", "59260-0", "75928-2")
TSAT_LOINC = ("2502-3", "14801-5")
IRON_TIBC_LOINC = ("2498-4", "2500-7")


def lab_loinc_codes() -> tuple[str, ...]:
    """Every LOINC code the labs prefetch asks for."""
    return FERRITIN_LOINC + HEMOGLOBIN_LOINC + TSAT_LOINC + IRON_TIBC_LOINC
