"""The API's schema and its docs page, for signed-in users only.

FastAPI's own docs route loads Swagger UI from a CDN with an inline script, which the
gateway's CSP blocks (and a PHI gateway must not pull scripts from the internet). Here the
page is a template that loads the vendored bundle (scripts/vendor_swagger_ui.py) and the
gateway's own gateway/static/api-docs.js from /static, under the unchanged strict CSP.
The schema itself is no secret, but the docs say "once signed in" and it maps the attack
surface, so both answer only to a fully signed-in user of any role.

How a caller authenticates is declared here, in one place, from each route's dependency
tree (`complete`): the routes say who may call them through `gateway.deps`, and the
schema follows, so it cannot drift from what the dependencies enforce.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import fastapi.routing
from fastapi import APIRouter, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from gateway.deps import SAFE_METHODS, CurrentPrincipal, checks_in_handler, full_principal, partial_principal
from gateway.web import render

SCHEMA_PATH = "/api/openapi.json"
PAGE_PATH = "/api/docs"

# The security schemes' names in components.securitySchemes.
BEARER = "apiToken"
SESSION = "sessionCookie"
CSRF = "csrfToken"
CSRF_HEADER = "X-CSRF-Token"

router = APIRouter(include_in_schema=False)


@router.get(SCHEMA_PATH)
def openapi_schema(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    """A plain `def`: the first call builds the schema (a quarter of a second of CPU) and every call
    serialises 270 kB; both run in the worker threads, never on the event loop."""
    return JSONResponse(request.app.openapi())


@router.get(PAGE_PATH)
def docs_page(request: Request, principal: CurrentPrincipal):
    return render(request, "api_docs.html", principal=principal, schema_url=SCHEMA_PATH)


def schema_routes(app: FastAPI) -> Iterator[Any]:
    """Every route in the schema, as the route FastAPI documents it (path under its prefixes, methods, dependant).

    Recent FastAPI versions keep an included router as one entry of `app.routes` and document each of
    its routes through a route context; older versions list the `APIRoute`s themselves.
    """
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Iterable[Any] = contexts(app.routes) if contexts else app.routes
    for route in routes:
        if isinstance(getattr(route, "original_route", route), APIRoute) and route.include_in_schema:
            yield route


def _calls(dependant: Dependant) -> set[Any]:
    """Every dependency callable under `dependant`, however deeply nested."""
    found = set()
    for sub in dependant.dependencies:
        found.add(sub.call)
        found |= _calls(sub)
    return found


def security_of(route: Any, method: str) -> list[dict[str, list[str]]]:
    """The security requirements a route's dependencies enforce: [] for a public one.

    A fully signed-in caller (`full_principal`) is either an API token or a session cookie;
    the sign-in steps themselves (`partial_principal` alone) need the session. A session
    cookie that changes state must come with the session's CSRF token (gateway.deps.check_csrf).
    """
    calls = _calls(route.dependant)
    in_handler = any(checks_in_handler(call) for call in calls)  # require_in_handler: `require`'s checks, later
    if partial_principal not in calls and not in_handler:
        return []
    session: dict[str, list[str]] = {SESSION: []} if method in SAFE_METHODS else {SESSION: [], CSRF: []}
    if full_principal in calls or in_handler:
        return [{BEARER: []}, session]
    return [session]


def complete(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Add the security schemes and each operation's security, and the CSRF header where a session needs it."""
    schema.setdefault("components", {})["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token (`phg_...`, POST /api/v1/auth/tokens): no cookie, no CSRF token.",
        },
        SESSION: {
            "type": "apiKey",
            "in": "cookie",
            "name": app.state.components.settings.session_cookie_name,
            "description": "The session cookie set by POST /api/v1/auth/login and renewed by each sign-in step.",
        },
        CSRF: {
            "type": "apiKey",
            "in": "header",
            "name": CSRF_HEADER,
            "description": "The session's CSRF token (`csrf_token` of the sign-in answers and of GET /api/v1/auth/me), "
            "sent with the session cookie on every request that changes state.",
        },
    }
    for route in schema_routes(app):
        for method in route.methods:
            operation = schema["paths"][route.path_format][method.lower()]
            security = security_of(route, method)
            operation["security"] = security
            if any(CSRF in requirement for requirement in security):
                operation.setdefault("parameters", []).append(
                    {
                        "name": CSRF_HEADER,
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "The session's CSRF token: required with the session cookie, "
                        "not sent with an API token.",
                    }
                )
    return schema


def file_response(media_type: str, description: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A response whose body is a file (bytes, or text such as CSV) of `media_type`, for a route's `responses=`."""
    binary = not media_type.startswith("text/")
    schema = {"type": "string", "format": "binary"} if binary else {"type": "string"}
    return {
        "description": description,
        "content": {media_type: {"schema": schema}},
        "headers": {
            name: {"description": text, "schema": {"type": "string"}} for name, text in (headers or {}).items()
        },
    }


def no_body(description: str, headers: dict[str, str]) -> dict[str, Any]:
    """A response that says everything in its headers (tus), for a route's `responses=` (with `response_class=Response`,
    which has no media type of its own)."""
    return {
        "description": description,
        "headers": {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()},
    }
