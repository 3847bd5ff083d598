"""The rule catalog, served where the cards' links point: /rules/catalog#<rule-id>."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from cds_service.engine.ruleset import RULES_DIR
from cds_service.tooling.catalog_build import build_catalog, cases_by_rule, render_html

router = APIRouter(tags=["rules"])
_BUILD_LOCK = threading.Lock()


def _catalog(request: Request) -> Any:
    """Built once per process from the rules this process runs (its test cases included), then kept."""
    runtime = request.app.state.runtime
    with _BUILD_LOCK:
        if runtime.catalog is None:
            rules_dir = runtime.settings.rules_dir or RULES_DIR
            runtime.catalog = build_catalog(rules_dir, cases=cases_by_rule(rules_dir, runtime))
    return runtime.catalog


@router.get("/rules/catalog", response_class=HTMLResponse)
def catalog_html(request: Request) -> HTMLResponse:
    """The rule catalog as one self-contained HTML page; each rule has the anchor `#<rule-id>`."""
    return HTMLResponse(render_html(_catalog(request)))


@router.get("/rules/catalog.json")
def catalog_json(request: Request) -> dict[str, Any]:
    """The same catalog as data: rules, conditions in plain words, parameters per profile, pathway."""
    return _catalog(request).as_json()
