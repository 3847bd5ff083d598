from cds_service.tooling import fixtures as fx
from tests.conftest import outcomes


def test_low_ferritin_with_rls_starts_oral_iron(client):
    request = fx.cds_request([fx.condition("rls"), fx.ferritin(32, days_ago=20)])
    response = client.post("/cds-services/rls-iron-patient-view", json=request)
    assert outcomes(response) == ["start-oral-iron"]
