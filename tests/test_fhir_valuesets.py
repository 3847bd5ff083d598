"""The value set files: well-formed, sourced, and holding the codes the spec makes a contract."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from fhir_mappings import valuesets as vs

REQUIRED = {"ferritin", "hemoglobin", "tsat", "serum_iron", "tibc", "rls", "ida", "pregnancy", "absorption_disorder", "iron_overload_disorder", "oral_iron", "iv_iron", "dopamine_agonist", "rls_aggravating"}


def test_one_file_per_concept_each_with_version_and_source():
    assert REQUIRED <= set(vs.VALUESETS)
    for valueset in vs.VALUESETS.values():
        assert valueset.version and valueset.source and valueset.title
        for entry in valueset.codes:
            assert entry["system"] in vs.SYSTEM_ALIASES and entry["code"] and entry["display"], (valueset.id, entry)


@pytest.mark.parametrize(
    "system, code, concept",
    [
        (vs.RXNORM, "310325", "oral_iron"),
        (vs.RXNORM, "36437", "rls_aggravating"),
        (vs.RXNORM, "312941", "rls_aggravating"),
        (vs.RXNORM, "72302", "dopamine_agonist"),
        *[(vs.RXNORM, c, "iv_iron") for c in ("1435169", "1435174", "2552400", "2552401", "2602296", "2602297", "1741261", "1741267", "1741270", "2274398", "2274403", "2274406", "2274407", "2274408", "2274409", "242761", "261123")],
        *[(vs.RXNORM, c, "dopamine_agonist") for c in ("858625", "859033", "859040", "859044", "859048", "859052", "901534", "901541", "901546", "901550", "901555", "1114479")],
        (vs.ATC, "B03AA07", "oral_iron"),
        (vs.ATC, "B03AA02", "oral_iron"),
        (vs.ATC, "B03AA03", "oral_iron"),
        (vs.ATC, "B03AC", "iv_iron"),
        (vs.ATC, "N04BC05", "dopamine_agonist"),
    ],
)
def test_contract_codes(system, code, concept):
    assert vs.concepts_for(system, code) == {concept}


def test_bupropion_is_in_no_value_set_by_code_or_name():
    assert vs.concepts_for(vs.RXNORM, "42347") == frozenset()
    assert vs.concepts_for_name("bupropion hydrochloride 150 MG Extended Release Oral Tablet") == frozenset()


def test_ferritin_goal_is_not_a_ferritin_code():
    assert "86914-9" not in vs.FERRITIN_LOINC
    assert vs.excluded_reason(vs.LOINC, "86914-9")


def test_lab_codes_of_the_prefetch_template_come_from_the_files():
    assert set(vs.lab_loinc_codes()) == {str(e["code"]) for v in ("ferritin", "hemoglobin", "tsat", "serum_iron", "tibc") for e in vs.VALUESETS[v].codes}


def test_names_match_whole_words_only():
    assert vs.concepts_for_name("Ferrous sulfate 325 mg") == {"oral_iron"}
    assert vs.concepts_for_name("carbonyl ironclad") == frozenset()
    assert vs.looks_like_iron("Slow Fe 45 mg")
    assert not vs.looks_like_iron("metformin 500 mg")


_NAME_WORDS = sorted({word for v in vs.VALUESETS.values() for name in v.names for word in vs.normalize_name(name).split()})
_SEPARATORS = st.sampled_from([" ", "  ", "-", "/", ", ", "(", ")", "_", "."])
_WORDS = st.sampled_from(_NAME_WORDS) | st.text(alphabet="abcfiloersu0123", min_size=1, max_size=6)


def _by_regex(text: str) -> frozenset[str]:
    """The name matcher's meaning: a name's words, as whole words, in the normalized text."""
    norm = vs.normalize_name(text)
    return frozenset(
        v.id
        for v in vs.VALUESETS.values()
        for name in v.names
        if vs.normalize_name(name) and re.search(r"\b" + re.escape(vs.normalize_name(name)) + r"\b", norm)
    )


@hypothesis_settings(max_examples=600, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(_WORDS, _SEPARATORS), max_size=8), st.booleans())
def test_names_match_as_the_whole_word_pattern_says(parts, upper):
    text = "".join(word + sep for word, sep in parts)
    text = text.upper() if upper else text
    assert vs.concepts_for_name(text) == _by_regex(text)
