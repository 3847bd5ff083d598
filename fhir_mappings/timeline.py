"""The chart over time, read as the rules read it: the usable ferritin, hemoglobin and TSAT results
(within their lookback), the profile's thresholds, the oral iron courses and the IV iron infusions.

It is what the timeline picture draws (the test page, `cds-service evaluate --timeline`) and what
a decision record keeps for `cds-service decisions show --timeline` when the decision log may hold
patient values (lab values and dates are PHI). Built on demand, never for the CDS Hooks answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

from fhir_mappings import medications, observations
from fhir_mappings.build import MappingInput, utc_today
from fhir_mappings.context import Context, by_type

ANALYTE_THRESHOLDS: dict[str, tuple[str, ...]] = {
    "ferritin": ("ferritin_low", "ferritin_overload"),
    "hemoglobin": (),
    "tsat": ("tsat_low", "tsat_overload"),
}
"""The analytes drawn, in order, and the profile parameters drawn as threshold lines on each."""


@dataclass
class Timeline:
    today: date
    points: dict[str, list[tuple[date, float]]] = field(default_factory=dict)
    thresholds: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    oral_courses: list[tuple[date, date]] = field(default_factory=list)
    infusions: list[date] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (ISO dates), as a decision record keeps it."""
        return {
            "today": self.today.isoformat(),
            "points": {a: [[d.isoformat(), v] for d, v in points] for a, points in self.points.items()},
            "thresholds": {a: [[name, v] for name, v in items] for a, items in self.thresholds.items()},
            "oral_courses": [[s.isoformat(), e.isoformat()] for s, e in self.oral_courses],
            "infusions": [d.isoformat() for d in self.infusions],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Timeline:
        day = date.fromisoformat
        return cls(
            today=day(data["today"]),
            points={a: [(day(d), float(v)) for d, v in points] for a, points in (data.get("points") or {}).items()},
            thresholds={a: [(str(name), float(v)) for name, v in items] for a, items in (data.get("thresholds") or {}).items()},
            oral_courses=[(day(s), day(e)) for s, e in data.get("oral_courses") or []],
            infusions=[day(d) for d in data.get("infusions") or []],
        )


def chart_timeline(data: MappingInput) -> Timeline:
    """What the picture shows, read from the same input, by the same readers, as the facts."""
    params = data.params
    ctx = Context(patient_id=data.patient_id, today=utc_today(data.now), params=params, full_urls=data.full_urls or {})
    grouped = by_type(data.resources)
    labs = observations.candidates(grouped, ctx)
    therapy = medications.collect(grouped, by_type(data.draft_orders), ctx)
    timeline = Timeline(today=ctx.today)
    for analyte, names in ANALYTE_THRESHOLDS.items():
        timeline.points[analyte] = sorted((r.day, r.value) for r in labs.results.get(analyte, []))
        timeline.thresholds[analyte] = [(name, float(params[name])) for name in names if isinstance(params.get(name), (int, float))]
    for use in therapy.oral:
        timeline.oral_courses.append((use.day or ctx.today, ctx.today))
    timeline.infusions = sorted({use.day for use in therapy.iv if use.day})
    return timeline
