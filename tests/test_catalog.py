"""The rule catalog: committed Markdown is current, every rule is there with a citation and a test
case, and the service serves the HTML (anchors per rule id, where card links point) and JSON."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service.engine.ruleset import load_all_rulesets
from cds_service.tooling import fixtures as fx
from cds_service.tooling.catalog_build import build_catalog, render_html, render_markdown
from tests.conftest import outcomes

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "rule-catalog.md"


@pytest.fixture(scope="module")
def catalog():
    return build_catalog()


def all_rule_ids() -> set[str]:
    return {r.id for rs in load_all_rulesets().values() for r in rs.rules}


def test_committed_catalog_is_current(catalog):
    assert COMMITTED.read_text(encoding="utf-8") == render_markdown(catalog), (
        "docs/rule-catalog.md is stale: run `make catalog` (cds-service rules catalog --out docs/rule-catalog.md)"
    )


def test_every_rule_has_a_citation_and_a_test_case(catalog):
    assert {r.id for r in catalog.rules} == all_rule_ids()
    uncited = [r.id for r in catalog.rules if not str(r.citation.get("text", "")).strip() or not r.source_title]
    untested = [r.id for r in catalog.rules if not r.cases]
    assert uncited == [] and untested == []


def test_markdown_shows_plain_conditions_parameters_side_by_side_and_the_pathway(catalog):
    text = render_markdown(catalog)
    assert "```mermaid" in text and "flowchart LR" in text
    for rule_id in all_rule_ids():
        assert f'<a id="{rule_id}"></a>' in text
    section = text.split('<a id="start-oral-iron"></a>', 1)[1].split("<a id=", 1)[0]
    assert "ferritin.value_ug_per_l is at or below ferritin_low" in section
    assert "latest current ferritin in ug/L" in section  # the fact's doc, in plain words
    if {"article", "aasm-2024"} <= set(catalog.profiles):
        assert re.search(r"\| `ferritin_low` \|.*\| \*\*50\*\* \| \*\*75\*\* \|", section)  # differing values in bold
    assert "Test cases: `" in section
    # the pathway goes work-up -> oral -> IV, from the rules' own conditions
    assert "n_on_oral -->|a| n_escalate_iv_iron" in text
    assert "n_start_oral_iron -.-> n_on_oral" in text


def test_html_is_self_contained(catalog):
    page = render_html(catalog)
    assert "<script" not in page and "http://" not in page and "https://cdn" not in page
    assert "<style>" in page


def test_service_serves_the_catalog_where_card_links_point(client):
    response = client.post("/cds-services/rls-iron-patient-view", json=fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)]))
    assert outcomes(response) == ["start-oral-iron"]
    link = response.json()["cards"][0]["links"][0]["url"]
    path, anchor = link.split("#", 1)
    assert path.endswith("/rules/catalog")
    page = client.get("/rules/catalog")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"id='{anchor}'" in page.text
    for rule_id in all_rule_ids():
        assert f"id='{rule_id}'" in page.text
    data = client.get("/rules/catalog.json").json()
    assert {r["id"] for r in data["rules"]} == all_rule_ids()
    assert all(r["cases"] for r in data["rules"])
