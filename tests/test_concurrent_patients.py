"""Concurrent requests for different patients never see each other's facts (a real server, 16 threads)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

from cds_service.tooling import fixtures as fx
from tests.conftest import make_app
from tests.live_server import live_server

# Each patient's chart makes a different outcome and names a different ferritin in the summary.
CHARTS = {
    "pat-low": ([fx.condition("rls", patient_id="pat-low"), fx.ferritin(31, patient_id="pat-low")], "start-oral-iron", "31"),
    "pat-high": ([fx.condition("rls", patient_id="pat-high"), fx.ferritin(187, patient_id="pat-high")], "iron-stores-adequate", "187"),
    "pat-none": ([fx.condition("rls", patient_id="pat-none")], "order-iron-studies", None),
    "pat-norls": ([fx.ferritin(22, patient_id="pat-norls")], None, None),
}


def test_concurrent_requests_for_different_patients_never_mix(tmp_path):
    app = make_app(tmp_path)
    with live_server(app) as base, httpx.Client(base_url=base, timeout=30) as client:

        def ask(n: int) -> tuple[str, list[str], str]:
            pid = list(CHARTS)[n % len(CHARTS)]
            resources, _, _ = CHARTS[pid]
            body = fx.cds_request(resources, patient_id=pid)
            response = client.post("/cds-services/rls-iron-patient-view", json=body)
            assert response.status_code == 200, response.text
            cards = response.json()["cards"]
            return pid, [c["source"]["topic"]["code"] for c in cards], " ".join(c["summary"] + (c.get("detail") or "") for c in cards)

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(ask, range(400)))

    for pid, outcomes, text in answers:
        _, expected, ferritin = CHARTS[pid]
        assert outcomes == ([expected] if expected else []), (pid, outcomes)
        if ferritin:
            assert f"Ferritin {ferritin}" in text or f"{ferritin} ng/mL" in text, (pid, text)
            others = [v for p, (_, _, v) in CHARTS.items() if v and p != pid]
            assert not any(f"{v} ng/mL" in text for v in others), (pid, text)
