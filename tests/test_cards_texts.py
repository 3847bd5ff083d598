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
