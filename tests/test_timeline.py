"""The timeline shows what the rules read: usable lab results within their lookback, the oral iron
courses and infusions, the profile's thresholds; nothing from another patient or entered in error."""

from __future__ import annotations

import re
from datetime import timedelta

from typer.testing import CliRunner

from cds_service.cli import app as cli
from cds_service.tooling import fixtures as fx
from cds_service.tooling.timeline import chart_timeline, render_svg

PARAMS = fx.article_params()


def test_points_are_the_usable_results_and_courses_and_infusions_are_marked():
    resources = [
        fx.patient(),
        fx.ferritin(32, days_ago=20),
        fx.ferritin(41, days_ago=200),
        fx.ferritin(999, days_ago=10, status="entered-in-error"),
        fx.ferritin(5, days_ago=12, patient_id="someone-else"),
        fx.hemoglobin(11.2, days_ago=20),
        fx.medication_request("ferrous-sulfate", days_ago=60),
        fx.medication_administration("ferric-carboxymaltose", days_ago=100),
    ]
    timeline = chart_timeline(fx.mapping_input(resources, params=PARAMS))
    today = fx.DEFAULT_NOW.date()
    assert timeline.points["ferritin"] == [(today - timedelta(days=200), 41.0), (today - timedelta(days=20), 32.0)]
    assert timeline.points["hemoglobin"] == [(today - timedelta(days=20), 11.2)]
    assert timeline.oral_courses == [(today - timedelta(days=60), today)]
    assert timeline.infusions == [today - timedelta(days=100)]
    assert dict(timeline.thresholds["ferritin"]) == {"ferritin_low": PARAMS["ferritin_low"], "ferritin_overload": PARAMS["ferritin_overload"]}

    svg = render_svg(timeline)
    assert svg.count('class="point ferritin"') == 2 and svg.count('class="point hemoglobin"') == 1
    assert svg.count('class="oral-course"') == 1 and svg.count('class="infusion"') == 1 and svg.count('class="decision-day"') == 1
    assert ": 999<" not in svg and ": 5<" not in svg, "entered in error, and another patient's, are not drawn"


def test_the_command_line_writes_the_picture(tmp_path):
    out = tmp_path / "timeline.svg"
    result = CliRunner().invoke(cli, ["evaluate", "examples/bundles/failed-oral-trial.json", "--now", "2026-11-26", "--timeline", str(out)])
    assert result.exit_code == 0, result.output
    assert len(re.findall(r'class="point ferritin"', out.read_text())) == 2
