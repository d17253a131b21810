"""Server-rendered pages: templates, the flash of one-time values, and page helpers."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from gateway import __version__

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["version"] = __version__


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    principal = context.get("principal")
    context.setdefault("csrf_token", principal.session.csrf_token if principal and principal.session else "")
    context.setdefault("user", principal.user if principal else None)
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a POST with a GET, so a reload never re-submits a form.
    return RedirectResponse(url, status_code=303)


def json_response(data, status_code: int = 200) -> JSONResponse:
    """JSON encoded here, in the handler's worker thread.

    FastAPI encodes a returned dict (a route without a response model) on the event loop,
    where a long list of events would hold up every other request.
    """
    return JSONResponse(jsonable_encoder(data), status_code=status_code)
