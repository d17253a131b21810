"""The API's schema and its docs page, for signed-in users only.

FastAPI's own docs route loads Swagger UI from a CDN with an inline script, which the
gateway's CSP blocks (and a PHI gateway must not pull scripts from the internet). Here the
page is a template that loads the vendored bundle (scripts/vendor_swagger_ui.py) and the
gateway's own gateway/static/api-docs.js from /static, under the unchanged strict CSP.
The schema itself is no secret, but the docs say "once signed in" and it maps the attack
surface, so both answer only to a fully signed-in user of any role.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.deps import CurrentPrincipal
from gateway.web import render

SCHEMA_PATH = "/api/openapi.json"
PAGE_PATH = "/api/docs"

router = APIRouter(include_in_schema=False)


@router.get(SCHEMA_PATH)
async def openapi_schema(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get(PAGE_PATH)
def docs_page(request: Request, principal: CurrentPrincipal):
    return render(request, "api_docs.html", principal=principal, schema_url=SCHEMA_PATH)
