"""The pipeline's two interfaces: where resources come from (`FhirSource`) and where decisions go
(`DecisionSink`). A test, the CLI or another deployment passes its own, and the HTTP route uses it."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from cds_service.decision import DecisionSink, Evaluation
from cds_service.hooks import CDSRequest, Feedback
from cds_service.pipeline import FhirSource
from cds_service.pipeline.fhir_access import FhirServerPolicy
from cds_service.pipeline.prefetch import PrefetchData, resources_in
from cds_service.tooling import fixtures as fx
from tests.conftest import make_app, outcomes

SERVICE = "/cds-services/rls-iron-patient-view"


class ChartSource:
    """Answers every request with one chart, whatever the request carries."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        self.resources = resources
        self.asked: list[str] = []

    async def gather(self, request: CDSRequest, allowed: FhirServerPolicy) -> PrefetchData:
        self.asked.append(request.context.patientId)
        return PrefetchData(resources=resources_in(fx.bundle(self.resources)))


class ListSink:
    """Keeps what it is given, in order."""

    def __init__(self) -> None:
        self.decisions: list[Evaluation] = []
        self.failures: list[dict[str, Any]] = []
        self.feedback: list[Feedback] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def record_decision(self, evaluation: Evaluation) -> None:
        self.decisions.append(evaluation)

    def record_failure(self, **fields: Any) -> None:
        self.failures.append(fields)

    def record_feedback(self, service_id: str, feedback: Feedback) -> None:
        self.feedback.append(feedback)

    def healthy(self) -> bool:
        return True


def test_the_route_reads_from_the_source_and_records_to_the_sink_it_is_given(tmp_path):
    chart = [fx.patient(), fx.condition("rls"), fx.ferritin(40), fx.tsat(25), fx.hemoglobin(13.2)]
    source, sink = ChartSource(chart), ListSink()
    source_typed: FhirSource = source
    sink_typed: DecisionSink = sink
    app = make_app(tmp_path)
    app.state.runtime.source, app.state.runtime.decision_log = source_typed, sink_typed

    with TestClient(app) as client:
        # no prefetch and no fhirServer: the service's own source would answer 412
        response = client.post(SERVICE, json={**fx.cds_request([]), "prefetch": None})
        assert sink.started
        assert outcomes(response) == ["start-oral-iron"]
        card = response.json()["cards"][0]
        feedback = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-26T09:05:00Z"}]}
        assert client.post(f"{SERVICE}/feedback", json=feedback).status_code == 200

    assert sink.stopped
    assert source.asked == [fx.DEFAULT_PATIENT]
    (decision,) = sink.decisions
    assert decision.decision_id == response.json()["extension"]["decision-id"]
    assert [f.rule.id for f in decision.result.fired] == ["start-oral-iron"]
    assert [item.card for f in sink.feedback for item in f.feedback] == [card["uuid"]]


def test_a_failure_of_the_source_is_recorded_as_a_failure(tmp_path):
    from cds_service.errors import PrefetchFailed

    class Unreachable:
        async def gather(self, request: CDSRequest, allowed: FhirServerPolicy) -> PrefetchData:
            raise PrefetchFailed([{"key": "labs", "reason": "unreachable", "message": "the FHIR server did not answer"}])

    sink = ListSink()
    app = make_app(tmp_path)
    app.state.runtime.source, app.state.runtime.decision_log = Unreachable(), sink
    with TestClient(app) as client:
        response = client.post(SERVICE, json=fx.cds_request([fx.patient()]))

    assert response.status_code == 412
    assert not sink.decisions
    (failure,) = sink.failures
    assert failure["status"] == 412 and failure["service_id"] == "rls-iron-patient-view"
