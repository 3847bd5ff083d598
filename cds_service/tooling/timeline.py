"""A picture of the chart: ferritin, hemoglobin and TSAT over time against the profile's
thresholds, oral iron courses as spans, infusions as marks, and the day of the decision.

Drawn as server-rendered SVG (no charting library, nothing fetched at run time) from the same
readings the rules see: the usable lab results within their lookback (fhir_mappings), the oral
iron courses and IV iron the therapy facts are built from. A development and review aid (the test
page, `cds-service evaluate --timeline`), never on the CDS Hooks path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape
from typing import Any, Mapping

from cds_service.decision import Evaluation
from cds_service.pipeline.prefetch import collect, draft_orders
from fhir_mappings import medications, observations
from fhir_mappings.build import utc_today
from fhir_mappings.context import Context
from fhir_mappings.prefetch_keys import prefetch_templates

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 640, 90, 18, 64, 16, 10
PANELS = (
    ("ferritin", "Ferritin (ug/L)", ("ferritin_low", "ferritin_overload")),
    ("hemoglobin", "Hemoglobin (g/dL)", ()),
    ("tsat", "TSAT (%)", ("tsat_low", "tsat_overload")),
)


@dataclass
class Timeline:
    today: date
    points: dict[str, list[tuple[date, float]]] = field(default_factory=dict)
    thresholds: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    oral_courses: list[tuple[date, date]] = field(default_factory=list)
    infusions: list[date] = field(default_factory=list)


def chart_timeline(resources: list[dict[str, Any]], patient_id: str, now: datetime, params: Mapping[str, Any], drafts: list[dict[str, Any]] | None = None) -> Timeline:
    """What the picture shows, read as the rules read it."""
    ctx = Context(patient_id=patient_id, today=utc_today(now), params=params, full_urls={})
    resources = [r for r in resources if isinstance(r, dict)]
    labs = observations.candidates(resources, ctx)
    therapy = medications.collect(resources, [d for d in drafts or [] if isinstance(d, dict)], ctx)
    timeline = Timeline(today=ctx.today)
    for analyte, _, names in PANELS:
        timeline.points[analyte] = sorted((r.day, r.value) for r in labs.results.get(analyte, []))
        timeline.thresholds[analyte] = [(name, float(params[name])) for name in names if isinstance(params.get(name), (int, float))]
    for use in therapy.oral:
        start = use.day or ctx.today
        timeline.oral_courses.append((start, ctx.today))
    timeline.infusions = sorted({use.day for use in therapy.iv if use.day})
    return timeline


def render_svg(timeline: Timeline) -> str:
    """The picture, one panel per lab with its own scale and the same time axis."""
    days = [d for points in timeline.points.values() for d, _ in points] + [s for s, _ in timeline.oral_courses] + timeline.infusions
    first = min([*days, timeline.today - timedelta(days=90)]) - timedelta(days=7)
    span = max((timeline.today - first).days, 1) + 7
    height = TOP + len(PANELS) * (PANEL + GAP) + 20

    def x(day: date) -> float:
        return round(LEFT + (WIDTH - LEFT - RIGHT) * (day - first).days / span, 1)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="Lab results over time with thresholds, oral iron courses and infusions">',
        '<style>.axis{stroke:#999;stroke-width:1}.point{stroke:#fff;stroke-width:1}.ferritin{fill:#8a1c1c}.hemoglobin{fill:#1c4f8a}'
        '.tsat{fill:#5a3d8a}.threshold{stroke:#c77700;stroke-dasharray:4 3}.oral-course{fill:#2e7d32;opacity:.15}'
        '.infusion{stroke:#2e7d32;stroke-width:2}.decision-day{stroke:#000;stroke-width:1.5}text{font:10px sans-serif;fill:#333}</style>',
    ]
    bottom = TOP + len(PANELS) * (PANEL + GAP) - GAP
    for start, end in timeline.oral_courses:
        parts.append(f'<rect class="oral-course" x="{x(start)}" y="{TOP}" width="{max(x(end) - x(start), 2)}" height="{bottom - TOP}"><title>oral iron from {start}</title></rect>')
    for day in timeline.infusions:
        parts.append(f'<line class="infusion" x1="{x(day)}" x2="{x(day)}" y1="{TOP}" y2="{bottom}"><title>IV iron {day}</title></line>')
    for index, (analyte, label, _) in enumerate(PANELS):
        top = TOP + index * (PANEL + GAP)
        points = timeline.points.get(analyte, [])
        values = [v for _, v in points] + [v for _, v in timeline.thresholds.get(analyte, [])]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        low, high = min(low, 0.0), high * 1.1 if high > 0 else 1.0

        def y(value: float, top: int = top, low: float = low, high: float = high) -> float:
            return round(top + PANEL - (value - low) / (high - low) * PANEL, 1)

        parts.append(f'<text x="4" y="{top + 12}">{escape(label)}</text>')
        parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{top + PANEL}" y2="{top + PANEL}"/>')
        for name, value in timeline.thresholds.get(analyte, []):
            parts.append(f'<line class="threshold {analyte}" data-name="{escape(name)}" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(value)}" y2="{y(value)}"><title>{escape(name)} {value:g}</title></line>')
            parts.append(f'<text x="{WIDTH - RIGHT - 2}" y="{y(value) - 2}" text-anchor="end">{value:g}</text>')
        for day, value in points:
            parts.append(f'<circle class="point {analyte}" cx="{x(day)}" cy="{y(value)}" r="4"><title>{day}: {value:g}</title></circle>')
        if not points:
            parts.append(f'<text class="no-data" x="{LEFT + 6}" y="{top + PANEL / 2}">no usable result</text>')
    today = x(timeline.today)
    parts.append(f'<line class="decision-day" x1="{today}" x2="{today}" y1="{TOP}" y2="{bottom}"><title>decision {timeline.today}</title></line>')
    parts.append(f'<text x="{LEFT}" y="{height - 4}">{first}</text><text x="{WIDTH - RIGHT}" y="{height - 4}" text-anchor="end">{timeline.today} (decision)</text>')
    parts.append("</svg>")
    return "".join(parts)


def evaluation_svg(evaluation: Evaluation) -> str:
    """The timeline of an evaluated request, from the resources it carried."""
    request = evaluation.request
    data = collect(request, prefetch_templates())
    timeline = chart_timeline(data.resources, request.context.patientId, evaluation.now, evaluation.service.ruleset.parameters, draft_orders(request))
    return render_svg(timeline)
