"""The ceiling: a bare FastAPI endpoint that parses the same CDS Hooks body and returns a fixed card."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()

FIXED = {
    "cards": [
        {
            "uuid": "00000000-0000-4000-8000-000000000000",
            "summary": "Fixed card",
            "indicator": "info",
            "source": {"label": "baseline"},
        }
    ]
}


@app.post("/cds-services/{service_id}")
async def invoke(service_id: str, body: dict[str, Any]) -> dict[str, Any]:
    return FIXED


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
