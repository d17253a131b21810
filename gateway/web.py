"""Server-rendered pages: templates, the flash of one-time values, and page helpers; list paging in HTTP; request
bodies as streams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from fastapi import Depends, Form, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from gateway import __version__, paging
from gateway.auth.service import Proof
from gateway.errors import ClientDisconnected, GatewayError

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.globals["version"] = __version__


def age(delta: timedelta) -> str:
    """How long something has waited, as a person says it: 5 min, 3 h, 2 days."""
    minutes = max(0, int(delta.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


TEMPLATES.env.filters["age"] = age


def render(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
    """A page; a signed-in user's navigation shows the counts of their waiting work (gateway/home/pages.py).

    Call it from a plain `def` handler: the counts are read from the database, which the
    event loop never waits on.
    """
    from gateway.home.pages import navigation_counts  # the home page renders through here too

    principal = context.get("principal")
    context.setdefault("csrf_token", principal.session.csrf_token if principal and principal.session else "")
    context.setdefault("user", principal.user if principal else None)
    if "waiting" not in context:
        context["waiting"] = navigation_counts(request.app.state.components, principal)
    if request.method != "GET":
        # A form answered in place (its error, a confirmation, a one-time value) names the page it
        # belongs to; static/forms.js puts that address in the location bar, so a reload or a
        # bookmark opens the page instead of sending the form again.
        context.setdefault("canonical", page_of(request))
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def page_of(request: Request) -> str:
    """The nearest page at or above this request's path: `/transfers/x/approve` belongs to `/transfers/x`.

    Also answers a GET of an action's URL (a form's address reopened or bookmarked) with a
    redirect there (app.py), instead of a "method not allowed" dead end.
    """
    parts = request.url.path.rstrip("/").split("/")
    while len(parts) > 1:
        path = "/".join(parts)
        scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
        for route in request.app.router.routes:
            if route.matches(scope)[0] == Match.FULL:
                return path
        parts.pop()
    return "/home"


# The steps of signing in: never a place to land after it (a loop, or a form to submit again).
_SIGN_IN_STEPS = ("/login", "/logout", "/mfa", "/password")
MAX_NEXT = 2048


def local_target(value: str | None) -> str:
    """Where signing in may lead: a page of this gateway named by its path (`next`), else /home.

    `next` arrives in a link anyone can craft, so only a plain absolute path passes: no scheme or
    host (`https://x`, `//x`, which browsers read as another site), no backslash (`/\\x` is `//x`
    to a browser), no control, space or non-ASCII character (stripped or rewritten by browsers into
    the cases above), no dot segments.  Anything else lands on /home, the default, not an error.
    """
    if not value or len(value) > MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return "/home"
    if "\\" in value or any(not 0x21 <= ord(ch) <= 0x7E for ch in value):
        return "/home"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(seg in (".", "..") for seg in parts.path.split("/")):
        return "/home"
    path = parts.path.rstrip("/") or "/"
    if path == "/" or any(path == step or path.startswith(step + "/") for step in _SIGN_IN_STEPS):
        return "/home"
    return value


def with_next(step: str, target: str) -> str:
    """The address of a sign-in step that leads to `target` once done (no parameter for the default)."""
    target = local_target(target)
    return step if target == "/home" else f"{step}?{urlencode({'next': target})}"


def requested_page(request: Request) -> str:
    """The page a GET asked for (path and query, as sent), to come back to after signing in."""
    path = quote(request.url.path, safe="/-._~!$&'()*+,;=:@%")
    return f"{path}?{request.url.query}" if request.url.query else path


def redirect(url: str) -> RedirectResponse:
    # 303: the browser follows a POST with a GET, so a reload never re-submits a form.
    return RedirectResponse(url, status_code=303)


T = TypeVar("T")

STEPUP_REFUSED = {
    "code": "The authenticator code is not correct.",
    "passkey": "The passkey was not accepted.",
}

# The hidden field a consequential form carries once its user confirmed it: set by the
# <dialog> of static/forms.js, or by the confirmation page that a POST without it gets.
Confirmed = Form(default="", max_length=3)


def confirm_page(
    request: Request,
    principal,
    *,
    question: str,
    fields: Mapping[str, str | list[str]],
    cancel: str,
    button: str,
    factor=None,
) -> HTMLResponse:
    """The confirmation step of a consequential form, for a browser without script: the same form again
    (its values as hidden fields) with `confirmed=yes`, and a way back. Nothing was done yet.

    `factor`: the form asks for a fresh second factor (gateway.auth.service.factor_choice). The confirmation
    page asks for it itself rather than carrying the one typed into the form: a code is never echoed into
    a page, and one typed on this page has not gone stale while the question was read.
    """
    hidden = [(k, v) for k, vs in fields.items() for v in ([vs] if isinstance(vs, str) else vs)]
    return render(
        request,
        "confirm.html",
        principal=principal,
        question=question,
        action=request.url.path,
        fields=hidden,
        cancel=cancel,
        button=button,
        factor=factor,
    )


def submit(
    db: Session,
    action: Callable[[], T],
    *,
    form: Callable[..., Response],
    done: Callable[[T], Response],
    commit: bool = True,
    messages: Mapping[str, str] | None = None,
    stepup: Proof | None = None,
) -> Response:
    """A form's POST: run the service call, commit, answer `done(result)` (a redirect, a page).

    On a domain error nothing of the call is kept (rollback) and the form comes back with the
    error's message and status, `form(status_code=..., error=...)`, showing what was typed (the
    page's template fills its fields from the submitted values, never from defaults);
    `messages` rewords an error code for this form.  `commit=False` where the call commits its
    own steps.  `stepup`: the fresh factor the form asked for, to word its refusal.
    """
    try:
        result = action()
    except GatewayError as exc:
        db.rollback()
        if stepup is not None and exc.code == "login_failed":
            # A signed-in user's fresh factor refused: that field is wrong (422; the session is fine,
            # 401 would mean "sign in"), in the words of the factor used: no password was asked.
            code = "code" if stepup.code else "passkey"
            return form(status_code=422, error=STEPUP_REFUSED[code])
        return form(status_code=exc.status, error=(messages or {}).get(exc.code, exc.message))
    if commit:
        db.commit()
    return done(result)


def json_response(data, status_code: int = 200) -> JSONResponse:
    """JSON encoded here, in the handler's worker thread.

    FastAPI encodes a returned dict (a route without a response model) on the event loop,
    where a long list of events would hold up every other request.
    """
    return JSONResponse(jsonable_encoder(data), status_code=status_code)


class _HungUp(ClientDisconnect, ClientDisconnected):
    """Both at once: the app's ClientDisconnect handler answers it, services recognise it."""


async def request_body(request: Request) -> AsyncIterator[bytes]:
    """The request body for a service (gateway.transfers.intake.body_chunks): bytes, never a Request."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise _HungUp() from exc


# The query parameters of every paged list (gateway/paging.py), API and pages alike.
Limit = Annotated[int, Query(ge=1, le=paging.MAX_LIMIT, description=f"items per page, at most {paging.MAX_LIMIT}")]
Cursor = Annotated[
    str | None,
    Query(max_length=paging.MAX_CURSOR_LENGTH, description="the `X-Next-Cursor` of the previous page"),
]


def next_page_url(request: Request, next_cursor: str | None, param: str = "cursor") -> str | None:
    """The same page's address with the list's cursor moved on (None: no more), keeping every other parameter."""
    if not next_cursor:
        return None
    following = request.url.include_query_params(**{param: next_cursor})
    return f"{following.path}?{following.query}"


@dataclass(frozen=True)
class PageLinks:
    """A page's links along its list (templates/paging.html `pager`): the next page, and back to the first."""

    next: str | None
    first: str | None


def page_links(request: Request, next_cursor: str | None, param: str = "cursor") -> PageLinks:
    first = None
    if request.query_params.get(param):
        back = request.url.remove_query_params(param)
        first = f"{back.path}?{back.query}" if back.query else back.path
    return PageLinks(next_page_url(request, next_cursor, param), first)


@dataclass(frozen=True)
class PageRequest:
    """The page of a list a client asked for (`limit`, `cursor`), and its answer: the page's items, with the next
    page's cursor in `X-Next-Cursor` and its address in `Link` (RFC 8288), so the body stays the list itself.
    Neither header on the last page."""

    limit: int
    cursor: str | None
    request: Request
    response: Response  # the route's own response, whose headers FastAPI sends with a returned model

    def items(self, page: paging.Page[T]) -> list[T]:
        """The page's items, for the route's response model."""
        self._link(self.response, page.next_cursor)
        return page.items

    def json(self, page: paging.Page, body: object) -> Response:
        """`body`, the page as the route shapes it (bytes: JSON encoded already), as a finished response."""
        response = Response(body, media_type="application/json") if isinstance(body, bytes) else json_response(body)
        return self._link(response, page.next_cursor)

    def _link(self, response: Response, next_cursor: str | None) -> Response:
        url = next_page_url(self.request, next_cursor)
        if url:
            response.headers["X-Next-Cursor"] = next_cursor or ""
            response.headers["Link"] = f'<{url}>; rel="next"'
        return response


def _page_query(default_limit: int) -> Callable[..., Awaitable[PageRequest]]:
    # `async def`: it only reads the query, and a plain `def` dependency would cost every paged list a thread
    # hop of its own (each one a wait for the interpreter lock under load).
    async def page_query(
        request: Request, response: Response, limit: Limit = default_limit, cursor: Cursor = None
    ) -> PageRequest:
        return PageRequest(limit, cursor, request, response)

    return page_query


# The `limit` and `cursor` of every paged list of the API, and its answer.
PageQuery = Annotated[PageRequest, Depends(_page_query(paging.DEFAULT_LIMIT))]
# A list a client usually reads whole (one user's day, one target's timeline): the largest page by default.
FullPageQuery = Annotated[PageRequest, Depends(_page_query(paging.MAX_LIMIT))]
