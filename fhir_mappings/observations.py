"""Lab Observations to the ferritin, hemoglobin and TSAT facts ("latest current", deterministic).

Every Observation with a lab code is read through the elements its fact is built from
(fhir_mappings.reading). A readable one is checked (subject, status, date, unit) and becomes a
candidate; an unreadable one makes its fact unknown unless a readable element already rules it out
(another patient's, not final, dated in the future or outside the lookback) or its readable date
is older than the latest usable result, which it then could not have replaced. "Latest" sorts on
the UTC effective date, then (hemoglobin only) 718-7 first, then the newest `issued` (missing sorts
first), then the greatest id in code-point order, so no answer depends on the order of resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, Callable

from fhir_mappings import dates, status, units
from fhir_mappings.context import ByType, Context, guarded, of_type, ref, rid
from fhir_mappings.reading import unreadable_code, unreadable_element
from fhir_mappings.references import another_patients, subject_problem
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
# The fact each lab value set feeds (serum iron and TIBC feed the derived TSAT), and its name in words.
FACT_OF = {"ferritin": "ferritin", "hemoglobin": "hemoglobin", "tsat": "tsat", "serum_iron": "tsat", "tibc": "tsat"}
LABEL = {"ferritin": "ferritin", "hemoglobin": "hemoglobin", "tsat": "TSAT", "serum_iron": "TSAT (serum iron)", "tibc": "TSAT (TIBC)"}


@dataclass(frozen=True)
class LabResult:
    """One usable lab value in its canonical unit."""

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


@dataclass(frozen=True)
class UnreadableLab:
    """A current-or-undatable lab Observation with a malformed read element."""

    analyte: str
    resource: dict[str, Any]
    day: date | None
    """Its effective date when that element could be read."""
    element: str


@dataclass
class Labs:
    results: dict[str, list[LabResult]]
    """Analyte -> usable current results."""
    unreadable: list[UnreadableLab]


def _not_current(day: date | None, analyte: str, ctx: Context) -> str | None:
    if day is None:
        return None
    if day > ctx.today:
        return "dated in the future"
    lookback = LOOKBACK[analyte]
    if ctx.days_ago(day) > int(ctx.param(lookback, DEFAULT_LOOKBACK[lookback])):
        return "not current"
    return None


def candidates(resources: ByType, ctx: Context) -> Labs:
    """Usable current results per analyte and the unreadable ones; each exclusion recorded with its reason."""
    labs = Labs({a: [] for a in LAB_VALUESETS}, [])

    def read(resource: dict[str, Any]) -> None:
        analytes, codes, disqualifier = _analytes(resource)
        if disqualifier:
            ctx.trace.exclude(resource, disqualifier)
            return
        if not analytes:
            ctx.trace.unclassified(resource, unreadable_code(resource, "code"))
            return
        if len(analytes) > 1:
            ctx.trace.exclude(resource, "codes of several analytes")
            return
        (analyte,) = analytes
        fact = FACT_OF[analyte]
        element = unreadable_element(resource)
        if element:
            day = dates.effective_date(resource)
            against = another_patients(resource, ctx.patient_id, ctx.full_urls) or status.readable_simple_status(resource) or _not_current(day, analyte, ctx)
            if against:
                ctx.trace.exclude(resource, f"{against} ({element} unreadable)", fact)
            else:
                labs.unreadable.append(UnreadableLab(analyte, resource, day, element))
            return
        problem = subject_problem(resource, ctx.patient_id, ctx.full_urls) or status.simple_status(resource)
        if problem:
            ctx.trace.exclude(resource, problem, fact)
            return
        day = dates.effective_date(resource)
        if day is None:
            ctx.trace.exclude(resource, "no effective date", fact)
            return
        if day > ctx.today:
            ctx.trace.exclude(resource, "dated in the future", fact)
            return
        if _not_current(day, analyte, ctx):
            return  # not current: it can never be the fact, so it is not examined further
        if "dataAbsentReason" in resource:
            ctx.trace.exclude(resource, "no value (dataAbsentReason)", fact)
            return
        converted = units.to_canonical(resource.get("valueQuantity"), analyte)
        if isinstance(converted, str):
            ctx.trace.exclude(resource, converted, fact)
            return
        if converted.comparator and not units.censored_is_decisive(converted.value, converted.comparator, _thresholds(analyte, ctx)):
            ctx.trace.exclude(resource, "value has a comparator that leaves it on either side of a threshold", fact)
            return
        quantity = resource["valueQuantity"]
        labs.results[analyte].append(
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
    return labs


def latest(results: list[LabResult], accept: Callable[[LabResult], bool] = lambda r: True) -> LabResult | None:
    """The newest result (see the module docstring for the order)."""
    pool = [r for r in results if accept(r)]
    return max(pool, key=lambda r: r.key) if pool else None


def settle_unreadable(labs: Labs, newest: dict[str, date | None], ctx: Context) -> None:
    """Each unreadable lab result makes its fact unknown, unless its readable date is older than
    the day of the latest usable value of that fact (`newest`), which it then could not replace."""
    for item in labs.unreadable:
        fact = FACT_OF[item.analyte]
        day = newest.get(fact)
        if item.day is not None and day is not None and item.day < day:
            ctx.trace.exclude(item.resource, f"unreadable: {item.element} (older than the latest usable result)", fact)
            continue
        ctx.trace.unknown(item.resource, fact_type=fact, label=LABEL[item.analyte], element=item.element, fields=(fact,))


@dataclass(frozen=True)
class Tsat:
    day: date
    value: float
    display: str
    derived: bool
    refs: tuple[str, ...]


def latest_tsat(labs: dict[str, list[LabResult]], ctx: Context) -> Tsat | None:
    """The latest current TSAT: measured, or serum iron / TIBC x 100 from a same-day pair.

    A derived value exists only for a day newer than the latest measured TSAT; both members are in
    ug/dL already (umol/L x 5.585), anything else never reached this point.
    """
    measured = latest(labs["tsat"])
    best: Tsat | None = None
    if measured is not None:
        best = Tsat(measured.day, measured.value, measured.display, False, (ref(measured.resource),))
    pair_days = sorted({r.day for r in labs["serum_iron"]} & {r.day for r in labs["tibc"]}, reverse=True)
    for day in pair_days:
        if best is not None and best.day >= day:
            break
        iron = latest(labs["serum_iron"], lambda r: r.day == day)
        tibc = latest(labs["tibc"], lambda r: r.day == day)
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
