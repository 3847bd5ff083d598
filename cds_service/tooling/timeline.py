"""A picture of the chart: ferritin, hemoglobin and TSAT over time against the profile's
thresholds, oral iron courses as spans, infusions as marks, and the day of the decision.

Drawn as server-rendered SVG (no charting library, nothing fetched at run time) from the same
readings the rules see (`fhir_mappings.timeline`). A development and review aid (the test page,
`cds-service evaluate --timeline`, and `cds-service decisions show --timeline` for a decision
whose record kept its timeline), never on the CDS Hooks path.
"""

from __future__ import annotations

from datetime import date, timedelta
from html import escape

from cds_service.decision import Evaluation
from fhir_mappings.timeline import Timeline, chart_timeline

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 640, 90, 18, 64, 16, 10
PANELS = (("ferritin", "Ferritin (ug/L)"), ("hemoglobin", "Hemoglobin (g/dL)"), ("tsat", "TSAT (%)"))


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
    for index, (analyte, label) in enumerate(PANELS):
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
    """The timeline of an evaluated request, read from what its facts were built from (prefetch and fetched)."""
    return render_svg(chart_timeline(evaluation.inputs))
