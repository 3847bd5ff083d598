"""rules/cards.yaml is complete and checked: every outcome has words, every placeholder exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.engine.ruleset import RuleFileError, load_outcomes
from cds_service.pipeline.card_texts import PLACEHOLDERS, fill, load_card_texts, placeholder_names, summary_templates


def test_every_outcome_has_summaries_and_detail():
    texts = load_card_texts()
    for code in load_outcomes():
        assert code in texts.outcomes, f"rules/cards.yaml has no texts for {code}"
        spec = texts.outcomes[code]
        assert spec.summaries and spec.detail
        assert spec.summaries[-1].when is None and not spec.summaries[-1].reasons


def test_every_template_uses_known_placeholders_only():
    texts = load_card_texts()
    for spec in texts.outcomes.values():
        for template in (*spec.summaries, *spec.detail):
            assert placeholder_names(template.text) <= PLACEHOLDERS


def test_every_placeholder_has_a_value_but_the_two_its_line_supplies():
    """A placeholder without a value would leave every text naming it unused (`fill` gives None);
    `count` (the "and N more" of left-out resources) and `request_id` (a stop suggestion) are filled
    where those lines are written."""
    from cds_service.pipeline.cards import _VALUES

    assert set(_VALUES) == PLACEHOLDERS - {"count", "request_id"}


def test_the_catalog_can_read_the_summary_templates():
    templates = summary_templates()
    assert templates["start-oral-iron"][-1] == "Ferritin {ferritin} ({ferritin_date}) is at or below {ferritin_low}: consider oral iron"


def test_override_reasons_are_coded():
    texts = load_card_texts()
    assert texts.override_system.startswith("https://")
    assert len(texts.override_codes) >= 3 and all(c["code"] and c["display"] for c in texts.override_codes)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "cards.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_an_unknown_placeholder_stops_loading_with_the_file_name(tmp_path):
    path = _write(tmp_path, "outcomes:\n  start-oral-iron:\n    summaries:\n      - text: 'Ferritin {ferritn}'\n    detail: [x]\n")
    with pytest.raises(RuleFileError, match=r"cards.yaml: .*unknown placeholder.*ferritn"):
        load_card_texts(path)


def test_a_summary_list_without_a_final_unconditional_entry_is_rejected(tmp_path):
    path = _write(tmp_path, "outcomes:\n  start-oral-iron:\n    summaries:\n      - {text: a, reasons: [a]}\n    detail: [x]\n")
    with pytest.raises(RuleFileError, match="last summary must have no condition"):
        load_card_texts(path)


def test_fill_refuses_blanks():
    assert fill("Ferritin {ferritin}", {"ferritin": "32 ng/mL"}) == "Ferritin 32 ng/mL"
    assert fill("Ferritin {ferritin}", {"ferritin": None}) is None
    assert fill("Ferritin {ferritin}", {"ferritin": ""}) is None


def test_an_unknown_suggestion_kind_is_rejected(tmp_path):
    path = _write(tmp_path, "outcomes:\n  start-oral-iron:\n    summaries: [a]\n    detail: [x]\n    suggestions:\n      dopamine_agonist: {label: Start pramipexole}\n")
    with pytest.raises(RuleFileError, match="dopamine_agonist: unknown suggestion kind"):
        load_card_texts(path)


def test_a_condition_on_a_field_that_does_not_exist_is_rejected(tmp_path):
    body = (
        "outcomes:\n  start-oral-iron:\n    summaries: [a]\n    detail: [x]\n    suggestions:\n"
        "      oral_iron: {label: a, unless: {fact: patient, field: is_kid, is: true}}\n"
        "facts_used:\n  ferritin:\n    - - {when: {fact: ferritin, field: currnt, is: true}, text: F}\n"
    )
    path = _write(tmp_path, body)
    with pytest.raises(RuleFileError, match=r"no fact field patient.is_kid.*no fact field ferritin.currnt|no fact field ferritin.currnt.*patient.is_kid"):
        load_card_texts(path)


def test_the_safety_exclusions_of_suggestions_are_in_the_file():
    """Safety rules 3 and 4 are read from cards.yaml, where an auditor sees them."""
    suggestions = {code: spec.suggestions for code, spec in load_card_texts().outcomes.items()}
    oral, referral = suggestions["start-oral-iron"]["oral_iron"], suggestions["escalate-iv-iron"]["referral"]
    assert oral.because.startswith("safety rule 3")
    assert not oral.offered({"patient": {"age_known": True, "is_child": True}}, {})
    assert not oral.offered({"patient": {"age_known": False, "is_child": False}}, {})
    assert oral.offered({"patient": {"age_known": True, "is_child": False}}, {})
    no_flags = {"allergies": {"iv_iron_allergy": False}, "conditions": {"pregnancy": False}, "record": {"pregnancy_unknown": False}}
    assert referral.offered(no_flags, {})
    for fact, field in (("allergies", "iv_iron_allergy"), ("conditions", "pregnancy"), ("record", "pregnancy_unknown")):
        assert not referral.offered({**no_flags, fact: {field: True}}, {})


def test_every_fact_type_has_facts_used_lines():
    from fhir_mappings.facts import fact_schema

    lines = load_card_texts().facts_used
    assert set(fact_schema()) - set(lines) <= {"context", "record"}
