"""orjson at the HTTP boundary: CDS request bodies read and validated here, answers written here.

The two CDS Hooks POST routes read their body with `read_body` instead of declaring a body
parameter. FastAPI's generic body dependency cost about 30 us a call on a 10 KB request (a tenth
of the service's whole in-process time on the typical request): content-type parsing through
`email.message`, dependency resolution and a second pass over the parsed document. `read_body`
keeps FastAPI's own contract: JSON only under a JSON media type, the same errors raised as
`RequestValidationError` (answered as 400 `invalid-request` by the app), locations prefixed with
`body`, and no input values echoed back. `body_schema` gives the route its OpenAPI request body,
as FastAPI documents for routes that read their own body (`openapi_extra`).

Those routes are `DirectRoute`s: with no body parameter and no dependency left to solve, FastAPI's
per-request handler still cost about 25 us (dependency solving, which builds a Response and
parses query string, headers and cookies whether or not anything asks for them). A DirectRoute
calls its endpoint with the request and its path parameters; FastAPI still documents the route
from its signature. `add_direct_routes` puts them in the app's own router (an included router
is one more matching layer on every request).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Coroutine, TypeVar, get_type_hints

import orjson
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

PARSED_KEY = "cds.parsed_json"
"""Scope key where limits.RequestLimits leaves the body it has already parsed."""

ModelT = TypeVar("ModelT", bound=BaseModel)
_UNPARSED = object()
COMPONENTS = "#/components/schemas/{model}"


def is_json(content_type: str | None) -> bool:
    """application/json or application/<anything>+json, parameters ignored (FastAPI's rule)."""
    if not content_type:
        return False
    maintype, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    return maintype == "application" and (subtype == "json" or subtype.endswith("+json"))


async def read_body(request: Request, model: type[ModelT]) -> ModelT:
    """The request body validated as `model`; RequestValidationError when it is not one."""
    if not is_json(request.headers.get("content-type")):
        raise RequestValidationError([_error((), "model_attributes_type", "Input should be a valid dictionary or object to extract fields from")])
    document = request.scope.get(PARSED_KEY, _UNPARSED)
    if document is _UNPARSED:
        raw = await request.body()
        if not raw:
            raise RequestValidationError([_error((), "missing", "Field required")])
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RequestValidationError([_error((exc.pos,), "json_invalid", "JSON decode error")]) from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([_error(e["loc"], e["type"], e["msg"]) for e in errors]) from None


def _error(loc: tuple[Any, ...], kind: str, msg: str) -> dict[str, Any]:
    return {"loc": ("body", *loc), "type": kind, "msg": msg}


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads `model` with `read_body` (see `component_schemas`)."""
    schema = {"$ref": COMPONENTS.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def component_schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    """OpenAPI component schemas of these request models and every model they use."""
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=COMPONENTS)
    return top.get("$defs", {})


class OrjsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class DirectRoute(APIRoute):
    """A route whose endpoint is awaited with the request and its path parameters, as they are.

    For endpoints that read their own body (`read_body`) and return a Response they built. The
    endpoint must be a coroutine taking a `Request` and `str` path parameters only, with no
    dependencies: checked when the route is added, since nothing would resolve anything else.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Called by APIRoute when the route is built, after its dependant is known."""
        endpoint = self.endpoint
        dependant = self.dependant
        request_name = dependant.request_param_name
        unsupported = (
            not inspect.iscoroutinefunction(endpoint)
            or request_name is None
            or dependant.dependencies
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or any(get_type_hints(endpoint).get(param.name) is not str for param in dependant.path_params)
        )
        if unsupported:
            raise TypeError(f"{endpoint.__name__}: a DirectRoute endpoint is async and takes a Request and str path parameters only")

        async def handler(request: Request) -> Response:
            return await endpoint(**request.path_params, **{request_name: request})

        return handler


def add_direct_routes(app: FastAPI, router: APIRouter) -> None:
    """Put a router of DirectRoutes into the app's own router, instead of including it.

    FastAPI includes a router as one more route, which matches by asking the router's own
    routes: three more frames on every request to them, about 5 us in-process (a fifth of
    FastAPI's cost for a trivial route). Only for DirectRoutes: they take no prefix, tags or
    dependencies from an inclusion, so nothing an inclusion would add is lost.
    """
    for route in router.routes:
        if not isinstance(route, DirectRoute):
            raise TypeError(f"{getattr(route, 'path', route)}: only DirectRoutes are added directly")
        app.router.routes.append(route)
