"""Lab Observations to the ferritin, hemoglobin and TSAT facts ("latest current", deterministic).

Cheap checks run on every candidate (code, subject, status, date, unit); FHIR validation, which
costs ~86 us, runs lazily: newest candidate first, until one validates. "Latest" sorts on the UTC
effective date, then (hemoglobin only) 718-7 first, then the newest `issued` (missing sorts first),
then the greatest id in code-point order, so no answer depends on the order of resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from datetime import date, datetime, timezone
from typing import Any, Callable

from fhir_mappings import dates, status, units
from fhir_mappings.context import Context, guarded, of_type, ref, rid
from fhir_mappings.references import subject_problem
from fhir_mappings.validation import invalid_reason
from fhir_mappings.valuesets import LAB_VALUESETS, LOINC, SYSTEM_ALIASES, VALUESETS, codes_of, iter_codings

LOOKBACK = {"ferritin": "ferritin_lookback_days", "hemoglobin": "hb_lookback_days", "tsat": "tsat_lookback_days", "serum_iron": "tsat_lookback_days", "tibc": "tsat_lookback_days"}
DEFAULT_LOOKBACK = {"ferritin_lookback_days": 365, "hb_lookback_days": 90, "tsat_lookback_days": 90}
PREFERRED_HB = "718-7"
LOINC_SYSTEMS = frozenset(s for s, canon in SYSTEM_ALIASES.items() if canon == LOINC)
LAB_BY_LOINC: dict[str, str] = {code: vs for vs in LAB_VALUESETS for code in codes_of(vs)}
EXCLUDED_LOINC: dict[str, str] = {
    str(e["code"]): e["reason"] for vs in LAB_VALUESETS for e in VALUESETS[vs].excluded_codes if SYSTEM_ALIASES[e["system"]] == LOINC
}
_NO_ISSUED = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class LabResult:
    """One usable (so far: not yet validated) lab value in its canonical unit."""

    analyte: str
    resource: dict[str, Any]
    day: date
    value: float
    display: str
    preferred: bool

    @property
    def key(self) -> tuple[date, bool, datetime, str]:
        """The "latest" order; `issued` is parsed only here, i.e. only for same-day ties."""
        issued = dates.parse_instant(self.resource.get("issued")) or _NO_ISSUED
        return (self.day, self.preferred, issued, rid(self.resource))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) and abs(value) < 1e6 else str(value)


def _analytes(resource: dict[str, Any]) -> tuple[set[str], set[str], str | None]:
    """Lab value sets named by the Observation's LOINC codings, its LOINC codes, and a disqualifier."""
    found: set[str] = set()
    codes: set[str] = set()
    for system, code, _ in iter_codings(resource.get("code")):
        if not isinstance(system, str) or system not in LOINC_SYSTEMS or not isinstance(code, str):
            continue
        code = code.strip()
        analyte = LAB_BY_LOINC.get(code)
        if analyte:
            found.add(analyte)
            codes.add(code)
        elif code in EXCLUDED_LOINC:
            return set(), set(), EXCLUDED_LOINC[code]
    return found, codes, None


# The profile parameters each analyte is compared with by the rules: a censored value (">1000")
# is usable only when it falls on the same side of all of them.
THRESHOLDS = {
    "ferritin": ("ferritin_low", "ferritin_iv_only_high", "ferritin_overload"),
    "tsat": ("tsat_low", "tsat_overload"),
}


def _thresholds(analyte: str, ctx: Context) -> list[float]:
    names = THRESHOLDS.get(analyte, ())
    values = [ctx.params.get(name) for name in names]
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def candidates(resources: list[dict[str, Any]], ctx: Context) -> dict[str, list[LabResult]]:
    """Analyte -> current candidates (cheap checks passed), each exclusion recorded with its reason."""
    out: dict[str, list[LabResult]] = {a: [] for a in LAB_VALUESETS}

    def read(resource: dict[str, Any]) -> None:
        analytes, codes, disqualifier = _analytes(resource)
        if disqualifier:
            ctx.trace.exclude(resource, disqualifier)
            return
        if not analytes:
            return
        if len(analytes) > 1:
            ctx.trace.exclude(resource, "codes of several analytes")
            return
        (analyte,) = analytes
        problem = subject_problem(resource, ctx.patient_id, ctx.full_urls) or status.simple_status(resource)
        if problem:
            ctx.trace.exclude(resource, problem)
            return
        day = dates.effective_date(resource)
        if day is None:
            has_date = any(k in resource for k in ("effectiveDateTime", "effectiveInstant", "effectivePeriod"))
            ctx.trace.exclude(resource, "effective date unreadable" if has_date else "no effective date")
            return
        if day > ctx.today:
            ctx.trace.exclude(resource, "dated in the future")
            return
        lookback = LOOKBACK[analyte]
        if ctx.days_ago(day) > int(ctx.param(lookback, DEFAULT_LOOKBACK[lookback])):
            return  # not current: it can never be the fact, so it is not examined further
        if "dataAbsentReason" in resource:
            ctx.trace.exclude(resource, "no value (dataAbsentReason)")
            return
        converted = units.to_canonical(resource.get("valueQuantity"), analyte)
        if isinstance(converted, str):
            ctx.trace.exclude(resource, converted)
            return
        if converted.comparator and not units.censored_is_decisive(converted.value, converted.comparator, _thresholds(analyte, ctx)):
            ctx.trace.exclude(resource, "value has a comparator that leaves it on either side of a threshold")
            return
        quantity = resource["valueQuantity"]
        out[analyte].append(
            LabResult(
                analyte=analyte,
                resource=resource,
                day=day,
                value=converted.value,
                display=f"{converted.comparator or ''}{_number(quantity['value'])} {converted.unit}",
                preferred=analyte == "hemoglobin" and PREFERRED_HB in codes,
            )
        )

    guarded(ctx, of_type(resources, "Observation"), read)
    return out


def latest(results: list[LabResult], ctx: Context, accept: Callable[[LabResult], bool] = lambda r: True) -> LabResult | None:
    """The newest result that is valid FHIR (validated lazily, newest first)."""
    pool = [r for r in results if accept(r)]
    pool.sort(key=lambda r: (r.day, r.preferred), reverse=True)
    for _, group in groupby(pool, key=lambda r: (r.day, r.preferred)):
        for result in sorted(group, key=lambda r: r.key, reverse=True):
            if _validated(result.resource, ctx) is None:
                return result
    return None


def _validated(resource: dict[str, Any], ctx: Context) -> str | None:
    """Validate once per resource per request; an invalid one is excluded with its field."""
    cache = ctx.validated
    key = id(resource)
    if key not in cache:
        cache[key] = invalid_reason(resource)
        if cache[key]:
            ctx.trace.exclude(resource, cache[key])
    return cache[key]


@dataclass(frozen=True)
class Tsat:
    day: date
    value: float
    display: str
    derived: bool
    refs: tuple[str, ...]


def latest_tsat(labs: dict[str, list[LabResult]], ctx: Context) -> Tsat | None:
    """The latest current TSAT: measured, or serum iron / TIBC x 100 from a same-day pair.

    A derived value exists only for a day without a valid measured TSAT; both members are in
    ug/dL already (umol/L x 5.585), anything else never reached this point.
    """
    measured = latest(labs["tsat"], ctx)
    best: Tsat | None = None
    if measured is not None:
        best = Tsat(measured.day, measured.value, measured.display, False, (ref(measured.resource),))
    pair_days = sorted({r.day for r in labs["serum_iron"]} & {r.day for r in labs["tibc"]}, reverse=True)
    for day in pair_days:
        if best is not None and best.day >= day:
            break
        if any(r.day == day and _validated(r.resource, ctx) is None for r in labs["tsat"]):
            continue
        iron = latest(labs["serum_iron"], ctx, lambda r: r.day == day)
        tibc = latest(labs["tibc"], ctx, lambda r: r.day == day)
        if iron is None or tibc is None:
            continue
        if tibc.value <= 0 or iron.value > tibc.value:
            ctx.trace.note(f"no TSAT derived from {ref(iron.resource)} and {ref(tibc.resource)}: serum iron and TIBC implausible together")
            continue
        value = round(iron.value / tibc.value * 100, 1)
        ctx.trace.note(f"TSAT derived from {ref(iron.resource)} and {ref(tibc.resource)} (same day, no measured TSAT)")
        best = Tsat(day, value, f"{_number(value)} % (derived from serum iron and TIBC)", True, (ref(iron.resource), ref(tibc.resource)))
        break
    return best
