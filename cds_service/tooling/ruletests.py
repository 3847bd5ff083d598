"""Rule test cases beside the rules (`rules/*.tests.yaml`): load, run through HTTP, report coverage.

A case names a chart in a compact form that expands to real FHIR R4 through the builders of
`cds_service.fixtures`, a hook, a profile and the exact outcome codes a clinician must see.
Each case is POSTed to the real service (`/cds-services/{id}`) with the runtime clock set to
the case's `now`; the same request also runs in-process (`cds_service.offline`) to learn which
rule ids fired, because a CDS Hooks response carries outcomes, not rules. Coverage is then
"which rule of which profile no case made fire". The format is documented in
rules/README-tests.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from cds_service.engine.ruleset import RULES_DIR, RuleSet
from cds_service.tooling import fixtures as fx
from cds_service.tooling import offline
from fhir_mappings.datafiles import read_yaml

FORMAT = "rls-iron-rule-tests/1"
HOOKS = ("patient-view", "order-select", "order-sign")
CASE_KEYS = {
    "name", "description", "profile", "hook", "now", "patient", "resources", "drafts", "selections",
    "expect", "expect_rules", "expect_not_rules", "indicators", "unknown",
}
UNKNOWN_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "the EHR could not provide this data"}],
}

# Compact resource form -> builder. Builders in NOW_AWARE take `now=` (dates count back from it).
BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "observation": fx.observation,
    "ferritin": fx.ferritin,
    "hemoglobin": fx.hemoglobin,
    "tsat": fx.tsat,
    "serum_iron": fx.serum_iron,
    "tibc": fx.tibc,
    "condition": fx.condition,
    "medication_request": fx.medication_request,
    "medication_statement": fx.medication_statement,
    "medication_administration": fx.medication_administration,
    "allergy": fx.allergy,
}
NOW_AWARE = set(BUILDERS) - {"allergy"}


class RuleCaseError(ValueError):
    """A test case file is malformed; the message names the file and the case."""


@dataclass(frozen=True)
class RuleCase:
    name: str
    file: str
    profile: str
    service_id: str
    hook: str
    request: dict[str, Any]
    expected: list[str]
    now: datetime
    expect_rules: tuple[str, ...] = ()
    """Rule ids that must be among the fired rules."""
    expect_not_rules: tuple[str, ...] = ()
    """Rule ids that must not fire (e.g. a precedence that must silence them)."""
    indicators: Mapping[str, str] = field(default_factory=dict)
    """Outcome code -> the card indicator the response must carry."""
    description: str | None = None

    @property
    def id(self) -> str:
        """A readable pytest id: file stem, profile and case name."""
        stem = self.file.removesuffix(".tests.yaml")
        return f"{stem}:{self.profile}:{self.name}"


@dataclass(frozen=True)
class CaseResult:
    case: RuleCase
    actual: list[str]
    """Outcome codes of the cards in the HTTP response, sorted."""
    fired: list[str]
    """Rule ids that fired (after precedence), from the in-process evaluation of the same request."""
    passed: bool
    problems: tuple[str, ...] = ()
    indicators: Mapping[str, str] = field(default_factory=dict)


def _parse_now(value: Any, where: str) -> datetime:
    if value is None:
        return fx.DEFAULT_NOW
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise RuleCaseError(f"{where}: now {value!r} is not an ISO date-time") from exc
    if moment.tzinfo is None:
        raise RuleCaseError(f"{where}: now must carry a time zone (e.g. 2026-11-26T09:00:00Z)")
    return moment.astimezone(timezone.utc)


def _birth_date_for_months(months: int, now: datetime) -> str:
    """A birthDate that makes the patient `months` completed months old on `now` (mid-month, no boundary)."""
    total = now.year * 12 + (now.month - 1) - months
    year, month = divmod(total, 12)
    born = date(year, month + 1, 1)
    if now.day <= 1:
        born -= timedelta(days=1)  # keep it a completed month on the first of the month
    return born.isoformat()


def _patient(spec: Any, now: datetime, where: str) -> dict[str, Any] | None:
    if spec is None:
        return fx.patient()
    if spec == "none":
        return None
    if not isinstance(spec, dict):
        raise RuleCaseError(f"{where}: patient must be a mapping or 'none'")
    kwargs = dict(spec)
    if "age" in kwargs:
        kwargs["birth_date"] = fx.birth_date_for_age(int(kwargs.pop("age")), now)
    if "age_months" in kwargs:
        kwargs["birth_date"] = _birth_date_for_months(int(kwargs.pop("age_months")), now)
    if "id" in kwargs:
        kwargs["pid"] = kwargs.pop("id")
    return fx.patient(**kwargs)


def expand_resource(item: Any, now: datetime, where: str) -> dict[str, Any]:
    """One compact resource (`{ferritin: 32}`, `{condition: {kind: rls, clinical: inactive}}`, `{fhir: {...}}`) as FHIR."""
    if isinstance(item, str):
        item = {"condition": item} if item in fx.CONDITIONS else {item: None}
    if not isinstance(item, dict) or len(item) != 1:
        raise RuleCaseError(f"{where}: a resource is a mapping with one builder name as key, got {item!r}")
    (name, args), = item.items()
    if name == "fhir":
        if not isinstance(args, dict) or "resourceType" not in args:
            raise RuleCaseError(f"{where}: fhir: needs a resource with resourceType")
        return copy.deepcopy(args)
    builder = BUILDERS.get(name)
    if builder is None:
        raise RuleCaseError(f"{where}: unknown builder {name!r} (one of {', '.join(sorted(BUILDERS))}, fhir)")
    kwargs: dict[str, Any] = {"now": now} if name in NOW_AWARE else {}
    try:
        if isinstance(args, dict):
            return builder(**{**kwargs, **args})
        if isinstance(args, list):
            return builder(*args, **kwargs)
        if args is None:
            return builder(**kwargs)
        return builder(args, **kwargs)
    except (TypeError, KeyError) as exc:
        raise RuleCaseError(f"{where}: {name}: {exc}") from exc


def _draft(spec: Any, now: datetime, where: str) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, dict) or "kind" not in spec:
        raise RuleCaseError(f"{where}: a draft is a medication kind or a mapping with kind (and id)")
    kwargs = dict(spec)
    if "id" in kwargs:
        kwargs["mid"] = kwargs.pop("id")
    try:
        return fx.draft_order(now=now, **kwargs)
    except (TypeError, KeyError) as exc:
        raise RuleCaseError(f"{where}: draft: {exc}") from exc


def _profile_prefixes(rules_dir: Path) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for path in sorted((rules_dir / "profiles").glob("*.yaml")):
        document = read_yaml(path) or {}
        prefixes[document["profile"]] = document.get("service_prefix", "rls-iron")
    return prefixes


def _as_list(value: Any, where: str, key: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleCaseError(f"{where}: {key} must be a list of strings")
    return list(value)


def _per_profile(value: Any, profile: str, prefixes: Mapping[str, str]) -> Any:
    """A value given per profile (`{article: [...], aasm-2024: [...]}`) resolved for one profile."""
    if isinstance(value, dict) and value and set(value) <= set(prefixes):
        return value.get(profile)
    return value


def _profiles(value: Any, where: str, prefixes: Mapping[str, str]) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names:
        raise RuleCaseError(f"{where}: profile must be a profile name or a list of them")
    unknown = [n for n in names if n not in prefixes]
    if unknown:
        raise RuleCaseError(f"{where}: unknown profile {unknown}")
    return names


def _cases(raw: Mapping[str, Any], file: str, default_profile: Any, prefixes: Mapping[str, str]) -> list[RuleCase]:
    """One case entry -> one RuleCase per profile it names (same chart, per-profile expectations)."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RuleCaseError(f"{file}: every case needs a name")
    where = f"{file}: case {name!r}"
    unknown = set(raw) - CASE_KEYS
    if unknown:
        raise RuleCaseError(f"{where}: unknown keys {sorted(unknown)}")
    if "expect" not in raw:
        raise RuleCaseError(f"{where}: expect (the exact outcome codes, [] for no card) is required")
    hook = raw.get("hook", "patient-view")
    if hook not in HOOKS:
        raise RuleCaseError(f"{where}: unknown hook {hook!r}")
    now = _parse_now(raw.get("now"), where)
    resources = [expand_resource(item, now, where) for item in raw.get("resources") or []]
    patient = _patient(raw.get("patient"), now, where)
    if patient is not None:
        resources.insert(0, patient)
    drafts = [_draft(d, now, where) for d in raw.get("drafts") or []]
    if drafts and hook == "patient-view":
        raise RuleCaseError(f"{where}: drafts need an order hook")
    selections = raw.get("selections")
    if selections is not None:
        selections = [s if "/" in s else f"MedicationRequest/{s}" for s in _as_list(selections, where, "selections")]
    request = fx.cds_request(
        resources,
        hook=hook,
        drafts=drafts if hook != "patient-view" else None,
        selections=selections,
        with_patient=patient is not None,
    )
    for key in _as_list(raw.get("unknown"), where, "unknown"):
        if key not in request["prefetch"]:
            raise RuleCaseError(f"{where}: unknown prefetch key {key!r} (one of {', '.join(sorted(request['prefetch']))})")
        request["prefetch"][key] = copy.deepcopy(UNKNOWN_OUTCOME)
    cases = []
    for profile in _profiles(raw.get("profile", default_profile), where, prefixes):
        expect = _per_profile(raw["expect"], profile, prefixes)
        if expect is None:
            raise RuleCaseError(f"{where}: expect gives no outcome list for profile {profile}")
        indicators = _per_profile(raw.get("indicators") or {}, profile, prefixes) or {}
        if not isinstance(indicators, dict):
            raise RuleCaseError(f"{where}: indicators must map outcome codes to info, warning or critical")
        cases.append(
            RuleCase(
                name=name,
                file=file,
                profile=profile,
                service_id=f"{prefixes[profile]}-{hook}",
                hook=hook,
                request=copy.deepcopy(request),
                expected=sorted(set(_as_list(expect, where, "expect"))),
                now=now,
                expect_rules=tuple(_as_list(_per_profile(raw.get("expect_rules"), profile, prefixes), where, "expect_rules")),
                expect_not_rules=tuple(_as_list(_per_profile(raw.get("expect_not_rules"), profile, prefixes), where, "expect_not_rules")),
                indicators=dict(indicators),
                description=raw.get("description"),
            )
        )
    return cases


def load_cases(rules_dir: Path = RULES_DIR) -> list[RuleCase]:
    """Every case of every `*.tests.yaml` in the rules directory, in file order."""
    prefixes = _profile_prefixes(rules_dir)
    cases: list[RuleCase] = []
    seen: set[tuple[str, str]] = set()
    for path in sorted(rules_dir.glob("*.tests.yaml")):
        document = read_yaml(path) or {}
        if document.get("format") != FORMAT:
            raise RuleCaseError(f"{path.name}: format must be {FORMAT}")
        default_profile = document.get("profile", "article")
        for raw in document.get("cases") or []:
            for case in _cases(raw, path.name, default_profile, prefixes):
                key = (case.profile, case.name)
                if key in seen:
                    raise RuleCaseError(f"{path.name}: case {case.name!r} is defined twice for profile {case.profile}")
                seen.add(key)
                cases.append(case)
    return cases


def run_case(client: Any, case: RuleCase) -> CaseResult:
    """POST the case to its service with the clock at the case's now; learn the fired rules in-process."""
    runtime = client.app.state.runtime
    previous = runtime.clock
    runtime.clock = lambda: case.now
    try:
        response = client.post(f"/cds-services/{case.service_id}", json=case.request)
    finally:
        runtime.clock = previous
    problems: list[str] = []
    actual: list[str] = []
    indicators: dict[str, str] = {}
    if response.status_code != 200:
        problems.append(f"HTTP {response.status_code}: {response.text[:300]}")
    else:
        for card in response.json().get("cards", []):
            code = ((card.get("source") or {}).get("topic") or {}).get("code") or "(no outcome code)"
            actual.append(code)
            indicators[code] = card.get("indicator")
    actual.sort()
    try:
        evaluation = offline.evaluate_document(runtime, copy.deepcopy(case.request), profile=case.profile, now=case.now)
    except Exception as exc:  # reported as a failed case, never a crash of the whole run
        problems.append(f"in-process evaluation failed: {type(exc).__name__}: {exc}")
        evaluation = None
    fired = evaluation.result.fired_ids() if evaluation else []
    if actual != case.expected:
        problems.append(f"outcomes {actual} != expected {case.expected}")
    if evaluation and response.status_code == 200 and sorted(set(evaluation.result.outcomes())) != sorted(set(actual)):
        problems.append(f"in-process outcomes {sorted(evaluation.result.outcomes())} differ from HTTP {actual}")
    missing = [r for r in case.expect_rules if r not in fired]
    if missing:
        problems.append(f"rules {missing} did not fire (fired: {fired})")
    unwanted = [r for r in case.expect_not_rules if r in fired]
    if unwanted:
        problems.append(f"rules {unwanted} fired but must not")
    for code, indicator in case.indicators.items():
        if indicators.get(code) != indicator:
            problems.append(f"{code}: indicator {indicators.get(code)!r} != expected {indicator!r}")
    return CaseResult(case=case, actual=actual, fired=fired, passed=not problems, problems=tuple(problems), indicators=indicators)


def run_cases(client: Any, cases: Iterable[RuleCase]) -> list[CaseResult]:
    """Run every case through the HTTP pipeline of `client` (a FastAPI TestClient)."""
    return [run_case(client, case) for case in cases]


def coverage(results: Iterable[CaseResult], rulesets: Mapping[str, RuleSet]) -> dict[str, set[str]]:
    """Profile -> ids of its rules that no case made fire (empty sets when fully covered)."""
    fired: dict[str, set[str]] = {profile: set() for profile in rulesets}
    for result in results:
        fired.setdefault(result.case.profile, set()).update(result.fired)
    return {profile: {r.id for r in rs.rules} - fired[profile] for profile, rs in rulesets.items()}


def report(results: list[CaseResult], uncovered: Mapping[str, set[str]]) -> str:
    """A plain-text summary for the CLI: failures with their problems, then uncovered rules."""
    lines = []
    failed = [r for r in results if not r.passed]
    for result in failed:
        lines.append(f"FAIL {result.case.id}")
        lines.extend(f"  - {p}" for p in result.problems)
    lines.append(f"{len(results) - len(failed)} of {len(results)} cases passed")
    for profile, ids in sorted(uncovered.items()):
        if ids:
            lines.append(f"profile {profile}: {len(ids)} rules no case makes fire: {', '.join(sorted(ids))}")
        else:
            lines.append(f"profile {profile}: every rule covered")
    return "\n".join(lines)
