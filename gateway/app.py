"""The FastAPI application: middleware, one error handler, and the routers."""

from __future__ import annotations

import logging
import sys
import threading
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp

from gateway import __version__, api_docs, api_errors, logs
from gateway.audit.actions import Action
from gateway.auditor import alerts
from gateway.auth.models import SessionStage
from gateway.components import Components
from gateway.config import Settings, check_production
from gateway.errors import GatewayError, MfaRequired, NotAuthenticated, PasswordChangeRequired, RateLimited
from gateway.jobs import serve_scheduler
from gateway.metrics import MetricsServer, follow_leadership
from gateway.notifications import service as notifications
from gateway.security_headers import SecurityHeaders
from gateway.telemetry import Telemetry, route_template
from gateway.web import TEMPLATES, page_of, redirect, requested_page, with_next

log = logging.getLogger("phigate")

API_PREFIX = "/api/"


def _wants_json(request: Request) -> bool:
    path = request.url.path
    # The docs page is a page: an anonymous visitor is sent to sign in, as on every other page.
    return (path.startswith(API_PREFIX) and path != api_docs.PAGE_PATH) or path in ("/healthz", "/readyz")


async def _error_response(request: Request, status: int, code: str, message: str, headers: dict | None = None):
    if _wants_json(request):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)
    # A signed-in user keeps the menu and the way out on an error page: it is not a dead end.
    principal = await _page_visitor(request)
    signed_in = principal is not None and principal.session is not None and principal.session.stage == SessionStage.full
    return TEMPLATES.TemplateResponse(
        request,
        "error.html",
        {
            "code": code,
            "message": message,
            "status": status,
            "title": _status_phrase(status),
            "user": principal.user if signed_in else None,
            "csrf_token": principal.session.csrf_token if signed_in else "",
        },
        status_code=status,
        headers=headers,
    )


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _page_visitor(request: Request):
    """Who is looking at an error page, for its menu; never raises.

    Looked up afresh (in a worker thread): the request's own rows may have been expired by the
    rollback of what failed, and reading them now would go back to the database on the event loop.
    """
    from gateway.audit.service import Actor
    from gateway.deps import client_address, resolve_principal

    if not request.cookies:
        return None
    components = request.app.state.components
    actor = Actor(ip=client_address(request, components.settings), user_agent="")
    try:
        return await run_in_threadpool(resolve_principal, components, request, actor)
    except Exception:  # the error page still answers, without the menu
        log.debug("no principal for the error page", exc_info=True)
        return None


async def _audit_refusal(request: Request, reason: str, **details) -> RateLimited | None:
    """Record a refused request (CSRF, stage, role, bad input); RateLimited when it must answer 429 instead.

    The write runs in a worker thread: the event loop never waits on the database. A
    caller with no valid credential answers 429 once its address is over the limit
    (gateway/auth/throttle.py).
    """
    return await run_in_threadpool(_record_refusal, request, reason, details)


async def _refusal(request: Request, reason: str, status: int, code: str, message: str, **details) -> Response:
    """Record a refusal and answer it (or 429)."""
    if (limited := await _audit_refusal(request, reason, **details)) is not None:
        return await _error_response(request, limited.status, limited.code, limited.message, limited.headers)
    return await _error_response(request, status, code, message)


def _record_refusal(request: Request, reason: str, details: dict) -> RateLimited | None:
    principal = getattr(request.state, "principal", None)
    components = request.app.state.components
    settings = components.settings
    presented = request.cookies.get(settings.session_cookie_name) or request.headers.get(
        "authorization", ""
    ).lower().startswith("bearer ")
    if reason == "not_authenticated" and not presented:
        # Every browser meets this before signing in, and it changes nothing: not a refusal worth a line.
        return None
    from gateway.audit.models import Outcome
    from gateway.audit.service import Actor, record_event
    from gateway.auth import throttle
    from gateway.deps import client_address

    address = client_address(request, settings)
    # The principal's Actor holds plain values: its user row may have been expired by the
    # rollback of the refused request's session (a failed flush expires every row in it).
    actor = Actor(
        user_id=principal.actor.user_id if principal else None,
        org_id=principal.actor.org_id if principal else None,
        ip=address,
        user_agent=request.headers.get("user-agent", "")[:256],
    )
    # The route template, not the URL: never anything a user typed into a path.
    details = {"reason": reason, "method": request.method, "route": route_template(request.scope)[:200], **details}
    try:
        # Its own short transaction: whatever the refused request left pending was rolled back
        # when its session closed; only the refusal is kept.
        with components.db.transaction() as db:
            if principal is None:
                # Nobody we know: anyone can send this, as often as they like. It counts against the
                # address, and only the window's first is recorded as itself (the refusal ledger).
                counted = throttle.count_address_failure(db, settings, address or throttle.UNKNOWN, recorded=False)
                if counted.throttled is not None:
                    return counted.throttled
                if not counted.first_in_window:
                    return None
            target, vendor_id = _refused_target(db, request)
            if vendor_id:
                details["vendor_id"] = vendor_id
            if reason == "invalid_token":
                record_event(db, Action.AUTH_API_TOKEN_REJECTED, actor=actor, outcome=Outcome.failure, details=details)
            else:
                record_event(db, Action.REQUEST_REFUSED, actor=actor, outcome=Outcome.denied, details=details, **target)
    except Exception:  # the refusal still answers if the audit write fails
        log.exception("could not record a refused request")
    return None


def _refused_target(db, request: Request) -> tuple[dict, str | None]:
    """A refusal about a transfer names it and both its organisations, so each side's auditors see it."""
    transfer_id = request.path_params.get("transfer_id")
    if not isinstance(transfer_id, str) or not 0 < len(transfer_id) <= 64:
        return {}, None
    from gateway.transfers.service import parties

    found = parties(db, transfer_id)
    target = {"target_type": "transfer", "target_id": transfer_id}
    if found is None:
        return target, None
    return {**target, "target_org_id": found[0]}, found[1]


def _constraint_name(exc: IntegrityError) -> str:
    diag = getattr(exc.orig, "diag", None)  # psycopg names the constraint; SQLite does not
    return getattr(diag, "constraint_name", None) or "(unnamed)"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GatewayError)
    async def gateway_error(request: Request, exc: GatewayError):
        if not exc.audited and exc.status < 500 and (limited := await _audit_refusal(request, exc.code)) is not None:
            exc = limited
        if not _wants_json(request) and request.method == "GET":
            # Pages send the browser to the step it still has to complete.
            # Each step carries the page asked for (a link from a notification e-mail), to land on it after.
            wanted = requested_page(request)
            if isinstance(exc, NotAuthenticated):
                return redirect(with_next("/login", wanted))
            if isinstance(exc, MfaRequired):
                return redirect(with_next("/mfa", wanted))
            if isinstance(exc, PasswordChangeRequired):
                return redirect(with_next("/password", wanted))
        return await _error_response(request, exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return await _refusal(
                request, "malformed_json", 400, "malformed_json", "The request body is not valid JSON."
            )
        # Name the fields and the problem, never echo the submitted values back.
        fields = sorted({".".join(str(p) for p in e.get("loc", ())[1:]) or "body" for e in errors})
        problems = "; ".join(
            sorted({f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}" for e in errors})
        )
        return await _refusal(
            request,
            "invalid_input",
            422,
            "invalid_input",
            f"Invalid fields: {', '.join(fields)} ({problems})",
            fields=fields[:20],
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 405 and request.method == "GET" and not _wants_json(request):
            # A form's address opened as a page (reopened, bookmarked, typed): its page, not a dead end.
            return redirect(page_of(request))
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status_code, "http_error")
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
        return await _error_response(request, exc.status_code, code, message)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnected(request: Request, exc: ClientDisconnect):
        # Any client can hang up mid-request at will: expected, already handled and audited
        # where it matters (an upload records transfer.upload.failed), so one line, no trace.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return await _error_response(request, 400, "client_disconnected", "The request ended before its body did.")

    @app.exception_handler(IntegrityError)
    async def integrity_conflict(request: Request, exc: IntegrityError):
        # A constraint refused the write: two requests raced to create the same thing, or the
        # input named a row that changed meanwhile. The transaction was rolled back, nothing was
        # kept, and a retry sees the winner: a conflict, not an internal error (no trace; the
        # constraint's name only, never the values, which the database message would quote).
        log.warning(
            "request refused by database constraint %s on %s %s",
            _constraint_name(exc),
            request.method,
            request.url.path,
        )
        return await _refusal(
            request,
            "conflict",
            409,
            "conflict",
            "The request conflicts with a change made at the same moment; reload and try again.",
        )

    @app.exception_handler(DataError)
    async def unstorable_value(request: Request, exc: DataError):
        # The database refused a value the request carried (PostgreSQL holds no NUL in text, no
        # number past its column): bad input, refused before anything was written (the transaction
        # was rolled back). The type of refusal only, never the value.
        log.warning(
            "request refused by the database as bad input (%s) on %s %s",
            type(exc.orig).__name__,
            request.method,
            route_template(request.scope),
        )
        return await _refusal(
            request, "invalid_input", 422, "invalid_input", "A value in the request cannot be stored or looked up."
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        # The trace goes to the operator's log; the user gets a code, never internals.
        log.error("unhandled error on %s %s", request.method, route_template(request.scope), exc_info=exc)
        return await _error_response(request, 500, "internal_error", "Something went wrong on our side.")


def _prepare_routes(router) -> None:
    """Build every route's handler now, before the first request.

    FastAPI builds a route's handler (its pydantic adapters) lazily on the first request
    that reaches it, which takes a tenth of a second on the event loop; a server under
    load must not pay that in the middle of serving others.
    """
    for route in getattr(router, "routes", ()):
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            for candidate in candidates():
                _prepare_routes(getattr(candidate, "original_router", None))


class _Gateway(FastAPI):
    """FastAPI with telemetry and the security headers outermost, around Starlette's ServerErrorMiddleware too:
    a 500 page gets the same headers (add_middleware would sit inside it, and unhandled errors would answer
    without them), and the request id and the latency cover everything, error pages included."""

    settings: Settings
    _schema_lock = threading.Lock()

    def openapi(self) -> dict[str, Any]:
        """FastAPI's schema, completed once: how each operation authenticates (gateway/api_docs.py) and its
        real error answers (gateway/api_errors.py). Worker threads may ask at once: one builds it."""
        with self._schema_lock:
            if self.openapi_schema is None:
                self.openapi_schema = api_errors.declare(api_docs.complete(super().openapi(), self), self)
        return self.openapi_schema

    def build_middleware_stack(self) -> ASGIApp:
        proxies = self.settings.trusted_proxy_networks
        return Telemetry(
            SecurityHeaders(super().build_middleware_stack(), trusted_proxies=proxies), trusted_proxies=proxies
        )


def create_worker_app() -> FastAPI:
    """The app of one of `phigate serve`'s worker processes (PHIGATE_WORKERS > 1), set up from the environment.

    uvicorn starts each worker as a fresh process, which keeps none of the parent's log set-up: without its
    own, a worker dropped its access lines and every INFO log (and the load benchmark its server-side times).
    """
    settings = Settings()
    logs.configure(settings.log_format)
    return create_app(settings)


def create_app(settings: Settings | None = None, components: Components | None = None) -> FastAPI:
    settings = settings or Settings()
    check_production(settings)
    components = components or Components(settings)
    alerts.install(components)
    notifications.install(components)

    @asynccontextmanager
    async def lifespan(app):
        # Database, key-service, storage and hashing work runs in these threads, never on the loop;
        # so do starting and stopping the scheduler and the metrics server (they touch the database
        # and join threads).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.worker_threads
        # Every thread hop (a handler, a dependency, a session's close) ends with the event loop asking
        # for the interpreter lock back; while worker threads compute, each such request waits up to
        # the switch interval per busy thread. Python's 5 ms made a list under load wait several times
        # its own work; 1 ms costs the busy threads no measurable throughput (docs/BENCHMARKS.md, load).
        sys.setswitchinterval(settings.switch_interval_ms / 1000)

        def start():
            _prepare_routes(app.router)
            scheduler = serve_scheduler(components)
            follow_leadership(scheduler.leadership)
            metrics = None
            if settings.metrics_port is not None:
                metrics = MetricsServer(
                    components, settings.metrics_host, settings.metrics_port, settings.metrics_token.get_secret_value()
                )
                metrics.start()
            app.state.metrics_server = metrics
            scheduler.start()
            return scheduler, metrics

        def stop(scheduler, metrics):
            scheduler.shutdown()
            if metrics is not None:
                metrics.stop()
            # Mail handed to threads a moment ago: let it finish (what does not is retried after a restart).
            components.outbox.wait(settings.smtp_timeout)

        scheduler, metrics = await anyio.to_thread.run_sync(start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(stop, scheduler, metrics)

    app = _Gateway(
        lifespan=lifespan,
        title="PHI Gate",
        version=__version__,
        description="Secure PHI file exchange. JSON API under /api/v1; authenticate with a session or a personal API token.",
        # Served by gateway/api_docs.py instead: behind sign-in, and without a CDN or inline script.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # Operation ids (and so a generated client's function names) are the handlers' names: unique, and
        # stable when a path changes (tests/gateway/test_openapi_schema.py).
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.components = components
    install_error_handlers(app)

    from gateway import health
    from gateway.auditor import pages as audit_pages
    from gateway.auditor import routes as audit_routes
    from gateway.auth import pages as auth_pages
    from gateway.auth import routes as auth_routes
    from gateway.baas import pages as baa_pages
    from gateway.baas import routes as baa_routes
    from gateway.home import pages as home_pages
    from gateway.orgs import pages as org_pages
    from gateway.orgs import routes as org_routes
    from gateway.retention import pages as retention_pages
    from gateway.retention import routes as retention_routes
    from gateway.transfers import pages as transfer_pages
    from gateway.transfers import routes as transfer_routes
    from gateway.uploads import routes as upload_routes
    from gateway.users import pages as user_pages
    from gateway.users import routes as user_routes

    for module in (
        health,
        api_docs,
        auth_pages,
        home_pages,
        org_pages,
        user_pages,
        baa_pages,
        transfer_pages,
        audit_pages,
        retention_pages,
    ):
        app.include_router(module.router)
    for module in (
        auth_routes,
        org_routes,
        user_routes,
        baa_routes,
        transfer_routes,
        upload_routes,
        audit_routes,
        retention_routes,
    ):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(transfer_routes.partners_router, prefix="/api/v1")
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")
    app.settings = settings
    return app
