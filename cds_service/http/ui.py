"""The developers' test page at `/`, and the JSON endpoint it calls (a development aid, not CDS Hooks).

On only in development mode or with CDS_UI_ENABLED=true; hidden from the OpenAPI document.
`POST /ui/evaluate` runs `pipeline.answer`, as the CDS Hooks route does, on an example or a
pasted Bundle and returns the request it built, the CDS Hooks response and the decision trace.
The cards' suggestion and feedback buttons call the real CDS Hooks feedback endpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from cds_service.errors import BadRequest
from cds_service.hooks import HOOKS
from cds_service.http.auth import fhir_servers_for
from cds_service.tooling.offline import (
    EXAMPLES_DIR,
    InputError,
    answer_request,
    as_request,
    find_example,
    load_examples,
    load_json,
    parse_now,
    read_drafts,
    response_body,
)
from cds_service.tooling.timeline import evaluation_svg

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
templates = Jinja2Templates(directory=WEB_DIR / "templates")


def ui_enabled(request: Request) -> None:
    """404 unless development mode or CDS_UI_ENABLED: the page evaluates arbitrary pasted data."""
    settings = request.app.state.settings
    if not (settings.development or settings.ui_enabled):
        raise HTTPException(status_code=404, detail="the test page is off: set CDS_MODE=development or CDS_UI_ENABLED=true")


router = APIRouter(include_in_schema=False)
router.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="ui-static")


class UIEvaluate(BaseModel):
    """What the page sends: an example name or a pasted document, and how to evaluate it."""

    example: str | None = Field(None, description="name of an example in examples/manifest.yaml")
    bundle: dict[str, Any] | None = Field(None, description="a pasted FHIR Bundle or CDS Hooks request")
    hook: str = "patient-view"
    service: str | None = Field(None, description="service id or profile; default the article profile")
    patient: str | None = None
    draft: str | None = Field(None, description="file name of a draft order in examples/drafts/ (order hooks)")
    now: str | None = Field(None, description="ISO date; default the example's `now`, else the service clock")


def _drafts(name: str | None) -> list[dict[str, Any]] | None:
    if not name:
        return None
    available = {p.name: p for p in (EXAMPLES_DIR / "drafts").glob("*.json")}
    if name not in available:
        raise InputError(f"no draft order {name!r} in examples/drafts/")
    return read_drafts(load_json(available[name]))


@router.get("/", response_class=HTMLResponse, dependencies=[Depends(ui_enabled)])
async def page(request: Request) -> HTMLResponse:
    """The test page: examples, hooks and services to choose from, cards and trace side by side."""
    runtime = request.app.state.runtime
    services = sorted(runtime.services.values(), key=lambda s: (not s.ruleset.default, s.profile, s.hook))
    profiles = list(dict.fromkeys(s.profile for s in services))
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "examples": load_examples(),
            "hooks": HOOKS,
            "profiles": profiles,
            "drafts": sorted(p.name for p in (EXAMPLES_DIR / "drafts").glob("*.json")),
            "ruleset_version": runtime.ruleset_version,
            "engine": runtime.engine_name,
        },
    )


@router.post("/ui/evaluate", dependencies=[Depends(ui_enabled)])
async def evaluate(body: UIEvaluate, request: Request) -> dict[str, Any]:
    """Run the pipeline on an example or a pasted document: {request, response, trace, facts, service}."""
    runtime = request.app.state.runtime
    try:
        now = parse_now(body.now)
        drafts = _drafts(body.draft)
        default_now = None
        if body.bundle is not None:
            document = body.bundle
        elif body.example:
            example = find_example(body.example)
            document, default_now = example.bundle(), example.now
            if drafts is None and body.hook == example.hook:
                drafts = example.draft_orders()
        else:
            raise InputError("choose an example or paste a Bundle")
        raw = as_request(document, body.hook, body.patient or None, drafts)
        # the page has no verified caller: it may fetch only from the operator's CDS_FHIR_SERVERS
        # (loopback servers by default in development mode)
        servers = fhir_servers_for(None, None, runtime.settings)
        evaluation = await answer_request(
            runtime, raw, profile=body.service or None, now=now or default_now or runtime.clock(), fhir_servers=servers, base_url=runtime.public_base(request)
        )
    except InputError as exc:
        raise BadRequest(str(exc)) from exc
    runtime.decision_log.record_decision(evaluation)
    return {
        "service": evaluation.service.id,
        "profile": evaluation.service.profile,
        "now": evaluation.now.isoformat(),
        "request": raw,
        "response": response_body(evaluation),
        "trace": evaluation.trace(),
        "facts": evaluation.facts.to_engine(),
        "timeline": evaluation_svg(evaluation),
    }
