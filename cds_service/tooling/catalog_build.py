"""The rule catalog: every rule in plain language, for auditors, built only from the rule files.

One data model (`build_catalog`) and two renderings: Markdown (committed as docs/rule-catalog.md,
checked for staleness by a test) and a self-contained HTML page (served at /rules/catalog, where
the cards' links point: one anchor per rule id). Per rule: id, title, conditions in plain words
(field documentation from fhir_mappings.facts), parameters with their value in every profile side
by side (differences marked), outcome, card text, citation, the profiles that run it, and the
test cases that make it fire. Plus the escalation pathway (work-up -> oral -> IV) drawn from the
rules' own conditions. Nothing here depends on time or randomness: the output is reproducible.
"""

from __future__ import annotations

import html
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from cds_service.engine.ruleset import RULES_DIR, Rule, RuleSet, iter_leaves, load_all_rulesets, load_outcomes
from cds_service.pipeline.card_texts import summary_templates
from cds_service.runtime import build_runtime
from cds_service.settings import Settings
from cds_service.tooling.lint import required_literals
from cds_service.tooling.offline import evaluate_document
from cds_service.tooling.ruletests import load_cases
from fhir_mappings.datafiles import read_yaml
from fhir_mappings.facts import fact_schema

OP_WORDS = {"<": "is below", "<=": "is at or below", ">": "is above", ">=": "is at or above", "==": "equals", "!=": "differs from"}
PATHWAY_OUTCOMES = ("order-iron-studies", "start-oral-iron", "continue-oral-iron", "escalate-iv-iron", "iron-stores-adequate")
# Where the patient is before a rule fires, read from the facts the rule requires (first match wins).
STATES = (
    ("after-iv", "after IV iron (within iv_relief_days)", ("iv_iron", "recent", True)),
    ("on-oral", "on oral iron (or a draft oral iron order)", ("oral_iron", "active", True)),
    ("no-ferritin", "RLS, no current ferritin", ("ferritin", "current", False)),
    ("ferritin-known", "current ferritin known", None),
)
# The order the pathway is drawn in: work-up -> oral -> IV.
DISPLAY_ORDER = ("no-ferritin", "ferritin-known", "on-oral", "after-iv")
# Where acting on an outcome leads (the next state of the pathway).
LEADS_TO = {
    "order-iron-studies": "ferritin-known",
    "start-oral-iron": "on-oral",
    "continue-oral-iron": "on-oral",
    "escalate-iv-iron": "after-iv",
}


@dataclass
class ParamRow:
    name: str
    doc: str
    unit: str
    values: dict[str, Any]
    differs: bool


@dataclass
class RuleEntry:
    id: str
    title: str
    file: str
    description: str | None
    outcome: str
    outcome_display: str
    indicator: str
    reason: str | None
    reason_text: str | None
    overrides: list[str]
    conditions: dict[str, Any]
    """A tree: {"op": "all"|"any"|"none", "items": [...]} or {"text": ...} for a leaf."""
    parameters: list[ParamRow]
    card_summaries: list[str]
    citation: dict[str, Any]
    source_title: str
    profile_citations: dict[str, dict[str, Any]]
    """Profile -> the citation that profile gives the rule, where it differs from the rule file's."""
    notes: str | None
    profiles: list[str]
    cases: list[str]


@dataclass
class Edge:
    source: str
    target: str
    label: str
    rule: str


@dataclass
class Catalog:
    profiles: list[str]
    parameters: list[ParamRow]
    rules: list[RuleEntry]
    states: list[tuple[str, str]]
    edges: list[Edge]
    leads_to: dict[str, str]
    overriding: dict[str, list[str]] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)
    """The shared conditions (rules/conditions.yaml): name, title, description, condition, citation."""
    """Outcome code -> ids of the rules whose `overrides` silence it."""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


# --- building -----------------------------------------------------------------------------------

def _param_rows(names: Iterable[str], rulesets: Mapping[str, RuleSet]) -> list[ParamRow]:
    rows = []
    for name in names:
        docs = [rs.parameter_docs.get(name) for rs in rulesets.values() if name in rs.parameter_docs]
        values = {profile: rs.parameters.get(name) for profile, rs in rulesets.items()}
        rows.append(
            ParamRow(
                name=name,
                doc=(docs[0] or {}).get("doc", "") if docs else "",
                unit=(docs[0] or {}).get("unit", "") if docs else "",
                values=values,
                differs=len({repr(v) for v in values.values()}) > 1,
            )
        )
    return rows


def _leaf_text(leaf: Mapping[str, Any], schema: Mapping[str, Any], rulesets: Mapping[str, RuleSet]) -> str:
    name = f"{leaf['fact']}.{leaf['field']}"
    doc = schema.get(leaf["fact"], {}).get(leaf["field"], {}).get("doc", "")
    if "is" in leaf:
        return f"{name} is {'true' if leaf['is'] else 'false'}: {'' if leaf['is'] else 'NOT '}{doc}"
    if "equals" in leaf:
        return f"{name} is {leaf['equals']} ({doc})"
    values = ", ".join(f"{p} {_show(rs.parameters.get(leaf['param']))}" for p, rs in rulesets.items())
    return f"{name} {OP_WORDS[leaf['op']]} {leaf['param']} [{values}] ({doc})"


def _show(value: Any) -> str:
    return "disabled (null)" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _tree(condition: Mapping[str, Any], schema: Mapping[str, Any], rulesets: Mapping[str, RuleSet]) -> dict[str, Any]:
    if "named" in condition:
        return {"op": "named", "name": condition["named"], "items": [_tree(c, schema, rulesets) for c in condition["all"]]}
    for key in ("all", "any", "none"):
        if key in condition:
            return {"op": key, "items": [_tree(c, schema, rulesets) for c in condition[key]]}
    return {"text": _leaf_text(condition, schema, rulesets)}


def _state_of(rule: Rule) -> str:
    literals, _ = required_literals(rule.when)
    held = {(lit.fact, lit.field, lit.value) for lit in literals if lit.kind == "is" and lit.positive}
    for key, _, needs in STATES:
        if needs is None or needs in held:
            return key
    return STATES[-1][0]


def _summaries() -> dict[str, list[str]]:
    try:
        return summary_templates()
    except Exception:  # the card texts are optional for the catalog; the outcome display stands in
        return {}


def cases_by_rule(rules_dir: Path = RULES_DIR, runtime: Any = None) -> dict[str, list[str]]:
    """Rule id -> ids of the rule test cases that make it fire (in-process, same pipeline as HTTP)."""
    def run(rt: Any) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        try:
            cases = load_cases(rules_dir)
        except Exception:  # a malformed case file is `rules test`'s to report; the catalog still renders
            return found
        for case in cases:
            try:
                evaluation = evaluate_document(rt, case.request, profile=case.profile, now=case.now)
            except Exception:
                continue
            for rule_id in evaluation.result.fired_ids():
                found.setdefault(rule_id, []).append(case.id)
        return {k: sorted(set(v)) for k, v in found.items()}

    if runtime is not None:
        return run(runtime)

    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(auth_mode="off", rule_engine="python", rules_dir=rules_dir, database_url=f"sqlite:///{scratch}/catalog.db")
        return run(build_runtime(settings))


def build_catalog(rules_dir: Path = RULES_DIR, cases: Mapping[str, list[str]] | None = None) -> Catalog:
    """The catalog data of every rule in every profile of `rules_dir`."""
    rulesets = load_all_rulesets(rules_dir)  # the default profile first
    outcomes = load_outcomes(rules_dir)
    sources = (read_yaml(rules_dir / "sources.yaml") or {}).get("sources", {})
    schema = fact_schema()
    summaries = _summaries()
    cases = cases_by_rule(rules_dir) if cases is None else cases

    ordered: dict[str, Rule] = {}
    for rs in rulesets.values():
        for rule in rs.rules:
            ordered.setdefault(rule.id, rule)
    all_params: list[str] = []
    for rs in rulesets.values():
        for name in rs.parameters:
            if name not in all_params:
                all_params.append(name)

    entries = []
    for rule in ordered.values():
        params = []
        for leaf in iter_leaves(rule.when):
            if "param" in leaf and leaf["param"] not in params:
                params.append(leaf["param"])
        outcome = outcomes[rule.outcome]
        entries.append(
            RuleEntry(
                id=rule.id,
                title=rule.title,
                file=rule.file,
                description=rule.description,
                outcome=rule.outcome,
                outcome_display=outcome.display,
                indicator=rule.indicator or outcome.indicator,
                reason=rule.reason,
                reason_text=rule.reason_text,
                overrides=list(rule.overrides),
                conditions=_tree(rule.when, schema, rulesets),
                parameters=_param_rows(params, rulesets),
                card_summaries=summaries.get(rule.outcome) or [outcome.display],
                citation=dict(rule.citation),
                source_title=str((sources.get(rule.citation.get("source")) or {}).get("title", "")),
                profile_citations={
                    p: dict(r.citation)
                    for p, rs in rulesets.items()
                    for r in rs.rules
                    if r.id == rule.id and r.citation != rule.citation
                },
                notes=rule.notes,
                profiles=[p for p, rs in rulesets.items() if any(r.id == rule.id for r in rs.rules)],
                cases=list(cases.get(rule.id, [])),
            )
        )

    edges = [
        Edge(source=_state_of(rule), target=rule.outcome, label=rule.reason or rule.id.split(".", 1)[-1], rule=rule.id)
        for rule in ordered.values()
        if rule.outcome in PATHWAY_OUTCOMES
    ]
    overriding: dict[str, list[str]] = {}
    for rule in ordered.values():
        for code in rule.overrides:
            overriding.setdefault(code, []).append(rule.id)
    return Catalog(
        profiles=list(rulesets),
        parameters=_param_rows(all_params, rulesets),
        rules=entries,
        states=sorted(((key, label) for key, label, _ in STATES), key=lambda s: DISPLAY_ORDER.index(s[0])),
        edges=edges,
        leads_to=dict(LEADS_TO),
        overriding=overriding,
        shared=[
            {
                "name": c.name,
                "title": c.title,
                "description": c.description,
                "conditions": _tree(c.when, schema, rulesets),
                "citation": dict(c.citation),
                "rules": [r.id for r in ordered.values() if any(_names(r.when, c.name))],
            }
            for c in next(iter(rulesets.values())).shared_conditions.values()
        ],
    )


def _names(condition: Mapping[str, Any], name: str) -> Iterable[bool]:
    """True for each use of the shared condition `name` in the condition tree."""
    if condition.get("named") == name:
        yield True
    for key in ("all", "any", "none"):
        for child in condition.get(key, ()):
            yield from _names(child, name)


# --- Markdown -------------------------------------------------------------------------------------

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_tree(node: Mapping[str, Any], depth: int = 0) -> list[str]:
    pad = "  " * depth
    if "text" in node:
        return [f"{pad}- {node['text']}"]
    if node["op"] == "named":
        lines = [f"{pad}- shared condition [`{node['name']}`](#{node['name']}):"]
        for child in node["items"]:
            lines += _md_tree(child, depth + 1)
        return lines
    words = {"all": "all of", "any": "any of", "none": "none of"}
    lines = [f"{pad}- **{words[node['op']]}**:"]
    for child in node["items"]:
        lines += _md_tree(child, depth + 1)
    return lines


def _md_params(rows: list[ParamRow], profiles: list[str]) -> list[str]:
    lines = ["| parameter | meaning | " + " | ".join(profiles) + " |", "|---|---|" + "---|" * len(profiles)]
    for row in rows:
        cells = [f"**{_show(row.values.get(p))}**" if row.differs else _show(row.values.get(p)) for p in profiles]
        unit = f" ({row.unit})" if row.unit else ""
        lines.append(f"| `{row.name}` | {_md_escape(row.doc)}{unit} | " + " | ".join(cells) + " |")
    return lines


def _node_id(name: str) -> str:
    return "n_" + name.replace("-", "_")


def mermaid(catalog: Catalog) -> str:
    labels = dict(catalog.states)
    lines = ["flowchart LR"]
    for key, label in catalog.states:
        lines.append(f'  {_node_id(key)}(["{label}"])')
    for code in PATHWAY_OUTCOMES:
        lines.append(f'  {_node_id(code)}["{code}"]')
    for edge in catalog.edges:
        lines.append(f"  {_node_id(edge.source)} -->|{edge.label}| {_node_id(edge.target)}")
    for code, state in catalog.leads_to.items():
        if state in labels:
            lines.append(f"  {_node_id(code)} -.-> {_node_id(state)}")
    return "\n".join(lines)


def render_markdown(catalog: Catalog) -> str:
    out = [
        "# Rule catalog",
        "",
        "Generated from the rule files in `rules/` by `cds-service rules catalog --out docs/rule-catalog.md`",
        "(`make catalog`); do not edit by hand. A test fails when this file is stale. The service serves",
        "the same catalog as HTML at `/rules/catalog` (one anchor per rule id), where the cards link.",
        "",
        "Profiles: " + ", ".join(f"`{p}`" for p in catalog.profiles) + ". Values that differ between profiles are in **bold**.",
        "",
        "## Escalation pathway (work-up -> oral -> IV)",
        "",
        "Drawn from the rules: a solid arrow is a rule (labelled with its escalation reason or the",
        "last part of its id) from the state its conditions require to its outcome; a dotted arrow is",
        "where acting on the outcome leads.",
        "",
        "```mermaid",
        mermaid(catalog),
        "```",
        "",
    ]
    for code, rules in sorted(catalog.overriding.items()):
        if code in PATHWAY_OUTCOMES:
            out.append(f"- `{code}` is silenced whenever one of these fires: " + ", ".join(f"[`{r}`](#{r})" for r in rules))
    out += ["", "## Parameters", ""] + _md_params(catalog.parameters, catalog.profiles)
    out += ["", "## Shared conditions", "", "Defined once in `rules/conditions.yaml`; rules name them, and the decision trace reports them by name."]
    for shared in catalog.shared:
        out += ["", f'<a id="{shared["name"]}"></a>', "", f"### {shared['name']}", "", f"**{shared['title']}**", ""]
        if shared["description"]:
            out += [" ".join(shared["description"].split()), ""]
        out += _md_tree(shared["conditions"]) + ["", f"- Cited: {shared['citation']['text']} ({shared['citation'].get('section', shared['citation']['source'])})"]
        out.append("- Required by: " + ", ".join(f"[`{r}`](#{r})" for r in shared["rules"]))
    out += ["", "## Rules", ""]
    out += [f"- [`{r.id}`](#{r.id}): {r.title}" for r in catalog.rules]
    for rule in catalog.rules:
        out += ["", f'<a id="{rule.id}"></a>', "", f"### {rule.id}", "", f"**{rule.title}**", ""]
        if rule.description:
            out += [rule.description.strip(), ""]
        out.append(f"- Outcome: `{rule.outcome}` ({rule.outcome_display}), indicator {rule.indicator}")
        if rule.reason:
            out.append(f"- Reason ({rule.reason}): {rule.reason_text or ''}".rstrip())
        if rule.overrides:
            out.append("- Overrides (silences): " + ", ".join(f"`{c}`" for c in rule.overrides))
        out.append("- Profiles: " + ", ".join(f"`{p}`" for p in rule.profiles) + f"; file `rules/{rule.file}`")
        out += ["", "When:", ""] + _md_tree(rule.conditions) + [""]
        if rule.parameters:
            out += _md_params(rule.parameters, catalog.profiles) + [""]
        out.append("Card summary (the first that applies):")
        out.append("")
        out += [f"- {s}" for s in rule.card_summaries]
        citation = rule.citation
        out += ["", f"Citation: {rule.source_title or citation.get('source')}" + (f", {citation['section']}" if citation.get("section") else ""), ""]
        out.append("> " + " ".join(str(citation.get("text", "")).split()))
        if citation.get("strength"):
            out += ["", f"Strength: {citation['strength']}"]
        for profile, cited in rule.profile_citations.items():
            out += ["", f"Citation in profile `{profile}`:", "", "> " + " ".join(str(cited.get("text", "")).split())]
            if cited.get("strength"):
                out += ["", f"Strength: {cited['strength']}"]
        if rule.notes:
            out += ["", "Notes: " + " ".join(rule.notes.split())]
        out += ["", "Test cases: " + (", ".join(f"`{c}`" for c in rule.cases) if rule.cases else "**none**")]
    return "\n".join(out) + "\n"


# --- HTML -----------------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d232a}
h1,h2,h3{line-height:1.2} h3{margin-top:2.2em;border-top:1px solid #ccd;padding-top:1em}
code{background:#f1f3f6;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ccd;padding:.25em .5em;vertical-align:top;text-align:left}
td.differs{background:#fff3c4;font-weight:600}
blockquote{margin:.5em 0;padding:.3em .8em;border-left:4px solid #8aa;background:#f6f8f8}
.tag{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.85em;color:#fff}
.info{background:#3b6ea5}.warning{background:#b7791f}.critical{background:#b83232}
.lanes{display:grid;grid-template-columns:repeat(4,1fr);gap:.8em;margin:1em 0}
.lane{border:1px solid #ccd;border-radius:6px;padding:.6em;background:#fafbfc}
.lane h4{margin:.1em 0 .5em}.box{border:1px solid #9ab;border-radius:4px;padding:.35em .5em;margin:.35em 0;background:#fff}
.box b{display:block}.box small{color:#556}
.none{color:#b83232;font-weight:600}
"""


def _h(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _html_tree(node: Mapping[str, Any]) -> str:
    if "text" in node:
        return f"<li>{_h(node['text'])}</li>"
    if node["op"] == "named":
        label = f"shared condition <a href='#{_h(node['name'])}'><code>{_h(node['name'])}</code></a>"
        return f"<li>{label}:<ul>" + "".join(_html_tree(c) for c in node["items"]) + "</ul></li>"
    words = {"all": "all of", "any": "any of", "none": "none of"}
    return f"<li><b>{words[node['op']]}</b>:<ul>" + "".join(_html_tree(c) for c in node["items"]) + "</ul></li>"


def _html_params(rows: list[ParamRow], profiles: list[str]) -> str:
    head = "<tr><th>parameter</th><th>meaning</th>" + "".join(f"<th>{_h(p)}</th>" for p in profiles) + "</tr>"
    body = ""
    for row in rows:
        cls = ' class="differs"' if row.differs else ""
        unit = f" ({_h(row.unit)})" if row.unit else ""
        body += f"<tr><td><code>{_h(row.name)}</code></td><td>{_h(row.doc)}{unit}</td>" + "".join(
            f"<td{cls}>{_h(_show(row.values.get(p)))}</td>" for p in profiles
        ) + "</tr>"
    return f"<table>{head}{body}</table>"


def _html_pathway(catalog: Catalog) -> str:
    """The pathway as CSS boxes (no script, no CDN): one lane per state, the rules leaving it."""
    lanes = []
    for key, label in catalog.states:
        boxes = ""
        for edge in (e for e in catalog.edges if e.source == key):
            nxt = catalog.leads_to.get(edge.target)
            then = f"<small>then: {_h(dict(catalog.states).get(nxt, ''))}</small>" if nxt else ""
            boxes += f'<div class="box"><b>{_h(edge.target)}</b><small>rule <a href="#{_h(edge.rule)}">{_h(edge.rule)}</a></small> {then}</div>'
        lanes.append(f'<div class="lane"><h4>{_h(label)}</h4>{boxes or "<small>no rule starts here</small>"}</div>')
    return '<div class="lanes">' + "".join(lanes) + "</div>"


def render_html(catalog: Catalog) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>RLS iron rule catalog</title>",
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>",
        "<h1>Rule catalog</h1>",
        "<p>Generated from the rule files in <code>rules/</code>. Profiles: " + ", ".join(f"<code>{_h(p)}</code>" for p in catalog.profiles)
        + ". Values that differ between profiles are highlighted.</p>",
        "<h2 id='pathway'>Escalation pathway (work-up &rarr; oral &rarr; IV)</h2>",
        "<p>Each box is a rule leaving the state its conditions require, with the outcome it produces and where acting on it leads.</p>",
        _html_pathway(catalog),
        "<h2 id='parameters'>Parameters</h2>",
        _html_params(catalog.parameters, catalog.profiles),
        "<h2 id='shared'>Shared conditions</h2><p>Defined once in <code>rules/conditions.yaml</code>; rules name them, and the decision trace reports them by name.</p>",
        "".join(
            f"<section id='{_h(c['name'])}'><h3><code>{_h(c['name'])}</code>: {_h(c['title'])}</h3><p>{_h(' '.join((c['description'] or '').split()))}</p>"
            f"<ul>{_html_tree(c['conditions'])}</ul><p>Cited: {_h(c['citation']['text'])}</p><p>Required by: "
            + ", ".join(f"<a href='#{_h(r)}'><code>{_h(r)}</code></a>" for r in c["rules"]) + "</p></section>"
            for c in catalog.shared
        ),
        "<h2 id='rules'>Rules</h2><ul>",
        "".join(f"<li><a href='#{_h(r.id)}'><code>{_h(r.id)}</code></a>: {_h(r.title)}</li>" for r in catalog.rules),
        "</ul>",
    ]
    for rule in catalog.rules:
        citation = rule.citation
        parts.append(f"<section id='{_h(rule.id)}'><h3><code>{_h(rule.id)}</code>: {_h(rule.title)}</h3>")
        if rule.description:
            parts.append(f"<p>{_h(rule.description)}</p>")
        parts.append(
            f"<p>Outcome <code>{_h(rule.outcome)}</code> ({_h(rule.outcome_display)}) <span class='tag {_h(rule.indicator)}'>{_h(rule.indicator)}</span>"
            + (f"<br>Reason ({_h(rule.reason)}): {_h(rule.reason_text or '')}" if rule.reason else "")
            + ("<br>Overrides: " + ", ".join(f"<code>{_h(c)}</code>" for c in rule.overrides) if rule.overrides else "")
            + "<br>Profiles: " + ", ".join(f"<code>{_h(p)}</code>" for p in rule.profiles) + f"; file <code>rules/{_h(rule.file)}</code></p>"
        )
        parts.append("<p>When:</p><ul>" + _html_tree(rule.conditions) + "</ul>")
        if rule.parameters:
            parts.append(_html_params(rule.parameters, catalog.profiles))
        parts.append("<p>Card summary (the first that applies):</p><ul>" + "".join(f"<li>{_h(s)}</li>" for s in rule.card_summaries) + "</ul>")
        parts.append(
            f"<p>Citation: {_h(rule.source_title or citation.get('source'))}" + (f", {_h(citation['section'])}" if citation.get("section") else "") + "</p>"
            + f"<blockquote>{_h(citation.get('text', ''))}</blockquote>"
            + (f"<p>Strength: {_h(citation['strength'])}</p>" if citation.get("strength") else "")
            + "".join(
                f"<p>Citation in profile <code>{_h(p)}</code>:</p><blockquote>{_h(c.get('text', ''))}</blockquote>"
                + (f"<p>Strength: {_h(c['strength'])}</p>" if c.get("strength") else "")
                for p, c in rule.profile_citations.items()
            )
        )
        if rule.notes:
            parts.append(f"<p>Notes: {_h(rule.notes)}</p>")
        cases = ", ".join(f"<code>{_h(c)}</code>" for c in rule.cases) if rule.cases else "<span class='none'>none</span>"
        parts.append(f"<p>Test cases: {cases}</p></section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(catalog: Catalog, markdown: Path | None, html_path: Path | None, emit: Callable[[str], None] = print) -> None:
    if markdown:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(render_markdown(catalog), encoding="utf-8")
        emit(f"wrote {markdown}")
    if html_path:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(render_html(catalog), encoding="utf-8")
        emit(f"wrote {html_path}")
