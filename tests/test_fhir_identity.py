"""Patient identity: relative, absolute and urn:uuid references; other patients; two Patients -> 400."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.tooling import fixtures as fx
from fhir_mappings import build_facts, references
from fhir_mappings.errors import MappingInputError

PV = "/cds-services/rls-iron-patient-view"


def reasons(fs):
    return {(e.resource_id, e.reason) for e in fs.exclusions}


@pytest.mark.parametrize(
    "reference",
    ["Patient/pat-1", "https://ehr.example.org/fhir/Patient/pat-1", "https://ehr.example.org/fhir/Patient/pat-1/_history/3", "Patient/pat-1/_history/2"],
)
def test_relative_and_absolute_references_to_the_context_patient(reference):
    obs = fx.ferritin(30, subject={"reference": reference})
    assert build_facts(fx.mapping_input([fx.patient(), obs])).ferritin.current is True


def test_urn_uuid_reference_resolved_through_the_bundle_full_urls():
    patient = fx.patient()
    bundle, urls = fx.full_url_bundle([patient])
    patient_url = next(iter(urls))
    obs = fx.ferritin(30, subject={"reference": patient_url})
    fs = build_facts(fx.mapping_input([patient, obs], full_urls=urls))
    assert fs.ferritin.current is True


def test_urn_uuid_naming_another_patient_or_nothing_drops_the_resource():
    other = {"resourceType": "Patient", "id": "other"}
    _, urls = fx.full_url_bundle([other])
    other_url = next(iter(urls))
    to_other = fx.ferritin(30, oid="o", subject={"reference": other_url})
    dangling = fx.ferritin(30, oid="d", subject={"reference": "urn:uuid:6f1c1f7e-0000-4000-8000-000000000000"})
    fs = build_facts(fx.mapping_input([fx.patient(), to_other, dangling], full_urls=urls))
    assert fs.ferritin.current is False
    assert {("o", "subject is Patient/other"), ("d", "subject reference not resolved")} <= reasons(fs)


@pytest.mark.parametrize(
    "subject, reason",
    [
        ({"reference": "Patient/other"}, "subject is Patient/other"),
        ({"reference": "https://ehr.example.org/fhir/Patient/other"}, "subject is Patient/other"),
        ({"reference": "Group/g1"}, "subject is Group/g1"),
        ({"display": "Jane Example"}, "subject has no reference"),
        ({"reference": "#p"}, "subject reference not resolved"),
        (None, "no subject"),
    ],
)
def test_resources_of_anyone_else_are_dropped(subject, reason):
    obs = fx.ferritin(30, oid="x")
    if subject is None:
        del obs["subject"]
    else:
        obs["subject"] = subject
    fs = build_facts(fx.mapping_input([fx.patient(), obs]))
    assert fs.ferritin.current is False
    assert ("x", reason) in reasons(fs)


def test_allergy_uses_patient_and_medications_use_subject():
    allergy = fx.allergy("ferrous-sulfate", patient_id="other", aid="a")
    order = fx.medication_request("ferrous-sulfate", patient_id="other", mid="m")
    fs = build_facts(fx.mapping_input([fx.patient(), allergy, order]))
    assert fs.allergies.oral_iron_intolerance is False and fs.oral_iron.active is False
    assert {("a", "patient is Patient/other"), ("m", "subject is Patient/other")} <= reasons(fs)


def test_two_distinct_patients_raise():
    with pytest.raises(MappingInputError):
        build_facts(fx.mapping_input([fx.patient(), fx.patient("pat-2")]))


def test_the_same_patient_twice_is_one_patient():
    fs = build_facts(fx.mapping_input([fx.patient(), fx.patient()]))
    assert fs.patient.age_known is True


def test_a_single_other_patient_is_ignored_and_noted():
    fs = build_facts(fx.mapping_input([fx.patient("someone-else"), fx.ferritin(30)]))
    assert fs.patient.age_known is False
    assert fs.ferritin.current is True  # the Observation names pat-1: still the context patient's
    assert any("Patient/someone-else is not the context patient" in n for n in fs.notes)


def test_two_patients_in_prefetch_is_http_400(client):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(32)])
    request["prefetch"]["labs"]["entry"].append({"resource": fx.patient("pat-2")})
    response = client.post(PV, json=request)
    assert response.status_code == 400


def test_another_patients_ferritin_is_not_used_through_http(client):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(32, patient_id="other")])
    response = client.post(PV, json=request)
    assert [c["source"]["topic"]["code"] for c in response.json()["cards"]] == ["order-iron-studies"]


def test_urn_uuid_subjects_through_http(client):
    patient = fx.patient()
    cond, ferritin = fx.condition("rls"), fx.ferritin(32, days_ago=20)
    patient_bundle, urls = fx.full_url_bundle([patient])
    patient_url = next(iter(urls))
    cond["subject"] = {"reference": patient_url}
    ferritin["subject"] = {"reference": patient_url}
    request = fx.cds_request([cond, ferritin])
    request["prefetch"]["patient"] = patient_bundle
    response = client.post(PV, json=request)
    assert "start-oral-iron" in [c["source"]["topic"]["code"] for c in response.json()["cards"]]


_ID_TEXT = st.sampled_from(["pat-1", "pat-2", "pat.1", "p", "pat 1", "pat/1", "", "x" * 65, "pat-1\n", "ünï"])
_REFERENCE = st.one_of(
    st.builds(lambda i: f"Patient/{i}", _ID_TEXT),
    st.builds(lambda i: f"https://ehr.example.org/fhir/Patient/{i}", _ID_TEXT),
    st.sampled_from(["urn:uuid:1", "#p", "Group/pat-1", "Patient/pat-1/_history/2", "patient/pat-1", ""]),
)


def _resolved_problem(resource, patient_id, full_urls):
    """`subject_problem` as it reads every reference: through `named_patient`, with no shortcut."""
    problem = references.subject_problem({**resource, "subject": {"reference": 0}}, patient_id, full_urls)
    assert problem == "subject has no reference"
    target = references.named_patient(resource, full_urls)
    if target is None:
        return "subject reference not resolved"
    return None if target == f"Patient/{patient_id}" else f"subject is {target}"


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_REFERENCE, _ID_TEXT, st.booleans())
def test_the_usual_reference_is_read_as_every_other(reference, patient_id, in_bundle):
    """The shortcut for `Patient/<context id>` answers as the general reading does."""
    resource = {"resourceType": "Observation", "id": "o1", "subject": {"reference": reference}}
    full_urls = {reference: "Patient/pat-2"} if in_bundle else {}
    assert references.subject_problem(resource, patient_id, full_urls) == _resolved_problem(resource, patient_id, full_urls)
