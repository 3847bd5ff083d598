"""Value sets as data (the YAML files in `valuesets/`), matched by system and code, never display.

Every file is loaded once at import and turned into dict/set lookups, so matching a coding costs
a few dictionary probes. ICD-10 and ATC codes marked `children: true` also match every child code
(ICD-10-CM in dotted or undotted form: D50.0 = D500).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from fhir_mappings.datafiles import read_yaml

VALUESET_DIR = Path(__file__).parent / "valuesets"

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"

# Other spellings of the same code systems that EHRs send (OIDs, old URIs).
SYSTEM_ALIASES: dict[str, str] = {
    LOINC: LOINC,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    SNOMED: SNOMED,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    ICD10CM: ICD10CM,
    "urn:oid:2.16.840.1.113883.6.90": ICD10CM,
    RXNORM: RXNORM,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    ATC: ATC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
}
# Systems whose codes are compared without dots and case (ICD-10-CM D50.9 = D509 = d50.9).
_DOTLESS = {ICD10CM, ATC}


@dataclass(frozen=True)
class ValueSet:
    """One concept: its codes, the parents whose children match, and the names of the name matcher."""

    id: str
    version: str
    title: str
    kind: str
    source: str
    codes: tuple[dict[str, Any], ...]
    names: tuple[str, ...] = ()
    excluded_codes: tuple[dict[str, Any], ...] = ()
    observation_codes: tuple[dict[str, Any], ...] = ()
    """Observation codes whose value can state the concept (pregnancy status, LOINC 82810-3)."""
    observation_values: tuple[dict[str, Any], ...] = ()
    """The values of those Observations that mean the concept holds."""


def canonical_system(system: Any) -> str | None:
    """The canonical URI of a coding system, or None when it is not one the value sets use."""
    return SYSTEM_ALIASES.get(system) if isinstance(system, str) else None


def normalize_code(system: str, code: str) -> str:
    code = code.strip()
    return code.replace(".", "").upper() if system in _DOTLESS else code


def normalize_name(text: str) -> str:
    """Lower case, punctuation to spaces, one space between words: 'Ferrous-Sulfate 325MG' -> 'ferrous sulfate 325mg'."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _load(path: Path) -> ValueSet:
    data = read_yaml(path)
    return ValueSet(
        id=data["id"],
        version=str(data["version"]),
        title=data["title"],
        kind=data["kind"],
        source=" ".join(str(data["source"]).split()),
        codes=tuple(data.get("codes") or ()),
        names=tuple(data.get("names") or ()),
        excluded_codes=tuple(data.get("excluded_codes") or ()),
        observation_codes=tuple(data.get("observation_codes") or ()),
        observation_values=tuple(data.get("observation_values") or ()),
    )


VALUESETS: dict[str, ValueSet] = {vs.id: vs for vs in map(_load, sorted(VALUESET_DIR.glob("*.yaml")))}

_EXACT: dict[tuple[str, str], set[str]] = {}
_PARENTS: dict[tuple[str, str], set[str]] = {}
_EXCLUDED: dict[tuple[str, str], str] = {}
_NAMES_BY_FIRST_WORD: dict[str, list[tuple[tuple[str, ...], str]]] = {}
"""A name's first word -> (the name's words, its value set id): the name matcher's index."""
for _vs in VALUESETS.values():
    for _entry in _vs.codes:
        _system = SYSTEM_ALIASES[_entry["system"]]
        _key = (_system, normalize_code(_system, str(_entry["code"])))
        _EXACT.setdefault(_key, set()).add(_vs.id)
        if _entry.get("children"):
            _PARENTS.setdefault(_key, set()).add(_vs.id)
    for _entry in _vs.excluded_codes:
        _system = SYSTEM_ALIASES[_entry["system"]]
        _EXCLUDED[(_system, normalize_code(_system, str(_entry["code"])))] = _entry["reason"]
    for _name in _vs.names:
        _words = tuple(normalize_name(_name).split())
        if _words:
            _NAMES_BY_FIRST_WORD.setdefault(_words[0], []).append((_words, _vs.id))
_PARENT_LENGTHS = sorted({len(code) for _, code in _PARENTS})
EXACT_LOOKUP: dict[tuple[str, str], frozenset[str]] = {k: frozenset(v) for k, v in _EXACT.items()}

# Words that make a medication name look like iron (a name that matches nothing is a trace warning).
IRON_LIKE = re.compile(r"\b(iron|ferr\w*|ferric\w*|ferrous\w*|fe|heme iron|feosol|slow fe)\b")


def concepts_for(system: Any, code: Any) -> frozenset[str]:
    """The value set ids that contain this coding (its children included where the set says so)."""
    canon = canonical_system(system)
    if canon is None or not isinstance(code, str) or not code.strip():
        return frozenset()
    norm = normalize_code(canon, code)
    found = set(EXACT_LOOKUP.get((canon, norm), ()))
    if canon in _DOTLESS:
        for length in _PARENT_LENGTHS:
            if length < len(norm):
                found |= _PARENTS.get((canon, norm[:length]), set())
    return frozenset(found)


def excluded_reason(system: Any, code: Any) -> str | None:
    """Why a coding disqualifies its resource (e.g. the ferritin goal 86914-9), or None."""
    canon = canonical_system(system)
    if canon is None or not isinstance(code, str):
        return None
    return _EXCLUDED.get((canon, normalize_code(canon, code)))


def concepts_for_name(text: str) -> frozenset[str]:
    """Value set ids whose ingredient names occur (as whole words) in a medication name.

    Both are normalized to words of letters and digits, so a name occurs as whole words exactly
    when its words appear in a row among the text's: each word of the text is looked up once.
    """
    words = normalize_name(text).split()
    found: set[str] = set()
    for start, word in enumerate(words):
        for name, vs_id in _NAMES_BY_FIRST_WORD.get(word, ()):
            if tuple(words[start : start + len(name)]) == name:
                found.add(vs_id)
    return frozenset(found)


def looks_like_iron(text: str) -> bool:
    return bool(IRON_LIKE.search(normalize_name(text)))


def codes_of(valueset_id: str, system: str = LOINC) -> tuple[str, ...]:
    return tuple(str(e["code"]) for e in VALUESETS[valueset_id].codes if SYSTEM_ALIASES[e["system"]] == system)


def iter_codings(concept: Any) -> Iterator[tuple[Any, Any, Any]]:
    """(system, code, display) of each well-formed coding in a CodeableConcept; tolerant of junk."""
    if not isinstance(concept, dict):
        return
    codings = concept.get("coding")
    if not isinstance(codings, list):
        return
    for coding in codings:
        if isinstance(coding, dict):
            yield coding.get("system"), coding.get("code"), coding.get("display")


def concepts_of(concept: Any) -> frozenset[str]:
    """Union of the value sets matched by the codings of a CodeableConcept (code match only)."""
    found: set[str] = set()
    for system, code, _ in iter_codings(concept):
        found |= concepts_for(system, code)
    return frozenset(found)


def texts_of(concepts: Iterable[Any]) -> list[str]:
    """The human-readable names of CodeableConcepts (text first, then coding displays)."""
    out: list[str] = []
    for concept in concepts:
        if not isinstance(concept, dict):
            continue
        if isinstance(concept.get("text"), str) and concept["text"].strip():
            out.append(concept["text"].strip())
        for _, _, display in iter_codings(concept):
            if isinstance(display, str) and display.strip():
                out.append(display.strip())
    return out


FERRITIN_LOINC = codes_of("ferritin")
HEMOGLOBIN_LOINC = codes_of("hemoglobin")
TSAT_LOINC = codes_of("tsat")
IRON_TIBC_LOINC = codes_of("serum_iron") + codes_of("tibc")
LAB_VALUESETS = ("ferritin", "hemoglobin", "tsat", "serum_iron", "tibc")


def lab_loinc_codes() -> tuple[str, ...]:
    """Every LOINC code the labs prefetch asks for."""
    return FERRITIN_LOINC + HEMOGLOBIN_LOINC + TSAT_LOINC + IRON_TIBC_LOINC


def coding_keys(entries: Iterable[dict[str, Any]]) -> frozenset[tuple[str, str]]:
    """(canonical system, normalized code) of value-set entries: built once, for `coded_as`."""
    return frozenset((SYSTEM_ALIASES[e["system"]], normalize_code(SYSTEM_ALIASES[e["system"]], str(e["code"]))) for e in entries)


def coded_as(concept: Any, keys: frozenset[tuple[str, str]]) -> bool:
    """Whether a CodeableConcept has a coding among `keys` (system aliases folded)."""
    for system, code, _ in iter_codings(concept):
        canon = canonical_system(system)
        if canon is not None and isinstance(code, str) and (canon, normalize_code(canon, code)) in keys:
            return True
    return False
