"""Request dependencies: the database session, the caller, and who may call a route.

Every route declares its audience through one of these `Annotated` aliases;
`require(...)` is the only way to reach a full session, and it also enforces
CSRF on state-changing requests made with the session cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gateway.audit.service import Actor
from gateway.auth.models import SessionStage
from gateway.auth.service import (
    Principal,
    check_session,
    expire_session,
    needs_touch,
    resolve_api_token,
    touch_api_token,
    touch_session,
)
from gateway.components import Components
from gateway.config import Settings
from gateway.errors import CsrfFailed, Forbidden, MfaRequired, NotAuthenticated, PasswordChangeRequired
from gateway.users.models import Role, User

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# Dependencies that only read the request are `async def`: FastAPI runs a plain `def` one in a
# worker thread, and a thread hop per trivial lookup costs the event loop more than the lookup.


async def get_components(request: Request) -> Components:
    return request.app.state.components


async def get_settings(request: Request) -> Settings:
    return request.app.state.components.settings


async def get_db(request: Request) -> AsyncIterator[Session]:
    """The request's session: a snapshot reader for GET/HEAD, a writer for anything that changes state.

    Closed as soon as the handler and its response model are done (scope "function"),
    never held while a response streams. Nothing is committed implicitly: services
    commit what they mean to keep, and whatever a failing request left uncommitted is
    rolled back here. Opening one touches no connection (that happens at its first query,
    in the handler's thread), so only the close goes to a worker thread, and only when the
    handler left a transaction open: one the handler ended itself (the lists close theirs
    in their own thread) holds no connection, and closing it is bookkeeping, not I/O; each
    thread hop saved is one wait less for the interpreter lock under load.
    """
    session = request.app.state.components.db.session(write=request.method not in SAFE_METHODS)
    try:
        yield session
    finally:
        if session.in_transaction():
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(session.close)
        else:
            session.close()


DbSession = Annotated[Session, Depends(get_db, scope="function")]


def get_write_db(request: Request, db: DbSession) -> Session:
    """The request's session, made a writer: for the few safe-method routes that record what they did."""
    request.app.state.components.db.make_writer(db)
    return db


WriteSession = Annotated[Session, Depends(get_write_db)]
AppComponents = Annotated[Components, Depends(get_components)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def client_address(request: Request, settings: Settings) -> str:
    """The peer address; X-Forwarded-For is believed only from a configured trusted proxy."""
    peer = request.client.host if request.client else "unknown"
    if not settings.trusted_proxy_networks:
        return peer

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in settings.trusted_proxy_networks)

    if not trusted(peer):
        return peer
    # Walk from the right: the first hop that is not one of our proxies is the client.
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


async def get_actor(request: Request, settings: AppSettings) -> Actor:
    return Actor(ip=client_address(request, settings), user_agent=request.headers.get("user-agent", "")[:256])


RequestActor = Annotated[Actor, Depends(get_actor)]


def resolve_principal(c: Components, request: Request, actor: Actor) -> Principal | None:
    """Who is calling: looked up in a snapshot, with the few writes it needs in short transactions of their own."""
    settings = c.settings
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        with c.db.snapshot() as db:
            found = resolve_api_token(db, auth[7:].strip())
        if found is None:
            # Recorded by the error handler through the refusal ledger: a made-up token is
            # something anyone can send, so only the address window's first becomes an event.
            raise NotAuthenticated("The API token is not valid.", code="invalid_token")
        token, user = found
        if needs_touch(token.last_used_at):
            with c.db.transaction() as db:
                touch_api_token(db, token)
        return Principal(user, None, token, Actor(user.id, user.org_id, actor.ip, actor.user_agent))
    raw = request.cookies.get(settings.session_cookie_name)
    if not raw:
        return None
    with c.db.snapshot() as db:
        session, ended = check_session(db, settings, raw)
        # A live session has its user: the session row is deleted with it (ON DELETE CASCADE).
        owner = db.get_one(User, session.user_id) if session is not None and ended is None else None
    if session is None:
        return None
    if ended is not None:
        with c.db.transaction() as db:
            expire_session(db, session, ended, actor)
        return None
    assert owner is not None  # noqa: S101 - narrows the type: found above for a live session
    if needs_touch(session.last_seen_at):
        with c.db.transaction() as db:
            touch_session(db, session)
    return Principal(owner, session, None, Actor(owner.id, owner.org_id, actor.ip, actor.user_agent))


async def csrf_sent(request: Request) -> str | None:
    """The CSRF token a state-changing request echoes: the header, or a classic form's field."""
    if request.method in SAFE_METHODS:
        return None
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        value = (await request.form()).get("csrf_token")
        sent = value if isinstance(value, str) else None
    return sent


def check_csrf(request: Request, principal: Principal, sent: str | None) -> None:
    """Session-cookie requests that change state must echo the session's CSRF token."""
    if request.method in SAFE_METHODS or principal.session is None:
        return
    if not sent or not hmac.compare_digest(str(sent), principal.session.csrf_token):
        raise CsrfFailed()


def check_origin(request: Request) -> None:
    """Refuse a state-changing request whose Origin is another site (defence beside SameSite=Strict)."""
    if request.method in SAFE_METHODS:
        return
    # Fetch metadata: set by the browser itself, a page cannot forge it.
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CsrfFailed("The request came from another site.", code="bad_origin")
    origin = request.headers.get("origin")
    if origin == "null":
        # Under our own `Referrer-Policy: no-referrer`, browsers send `Origin: null` even for
        # same-origin form posts; believe it only when fetch metadata says same-origin.
        if site != "same-origin":
            raise CsrfFailed("The request came from another site.", code="bad_origin")
    elif origin:
        host = request.headers.get("host", "")
        if origin.split("://", 1)[-1] != host:
            raise CsrfFailed("The request came from another site.", code="bad_origin")


def partial_principal(
    request: Request,
    db: DbSession,
    c: AppComponents,
    actor: RequestActor,
    sent: Annotated[str | None, Depends(csrf_sent)],
) -> Principal:
    """A session at any stage: used only by the second-factor and enrolment steps.

    A plain `def`: the framework runs it in a worker thread, so its database work never
    holds up the event loop.
    """
    return _partial(request, db, c, actor, sent)


def _partial(request: Request, db: Session, c: Components, actor: Actor, sent: str | None) -> Principal:
    check_origin(request)
    principal = resolve_principal(c, request, actor)
    # Kept for the error handler, so that a refusal further on names who was refused.
    request.state.principal = principal
    if principal is None:
        raise NotAuthenticated()
    check_csrf(request, principal, sent)
    # The handler works on these rows in its own session (a failed step-up counts on the user row).
    for row in (principal.user, principal.session, principal.token):
        if row is not None:
            db.add(row)
    return principal


PartialPrincipal = Annotated[Principal, Depends(partial_principal)]


async def full_principal(principal: PartialPrincipal) -> Principal:
    """Password and TOTP both done; the password may still be a one-time one."""
    return _full(principal)


def _full(principal: Principal) -> Principal:
    if principal.session is not None and principal.session.stage != SessionStage.full:
        raise MfaRequired()
    return principal


def _permitted(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.user.must_change_password:
        raise PasswordChangeRequired()
    if principal.user.role not in allowed:
        raise Forbidden()
    return principal


PasswordChangePrincipal = Annotated[Principal, Depends(full_principal)]


def require(*roles: Role):
    """Dependency: a fully signed-in user holding one of `roles` (all roles when none given)."""
    allowed = frozenset(roles) if roles else frozenset(Role)

    async def dependency(principal: PasswordChangePrincipal) -> Principal:
        return _permitted(principal, allowed)

    return dependency


class Caller:
    """Who is calling, found when the handler asks: in the handler's own worker thread, not in a hop before it.

    For the busiest reads (the transfer lists). A plain `def` dependency is a thread hop of its own, and
    under load every hop waits for the interpreter lock twice (the thread to run, the loop to take its
    answer back): timed inside the server under the 20-client load, the wait between the principal's hop
    and the handler's was the largest part of a list's time. The route still declares who may call it
    (`require_in_handler(...)`), and the checks are `require`'s, in its order (origin, token or session,
    CSRF, second factor, password change, role). A handler cannot skip them: what it reads is scoped by a
    `Principal`, and calling this is the only way it gets one.
    """

    def __init__(
        self, request: Request, db: Session, c: Components, actor: Actor, sent: str | None, allowed: frozenset[Role]
    ):
        self._args, self._allowed = (request, db, c, actor, sent), allowed

    def __call__(self) -> Principal:
        return _permitted(_full(_partial(*self._args)), self._allowed)


def require_in_handler(*roles: Role):
    """Dependency: `require(*roles)`, checked when the (plain `def`) handler calls the `Caller` it gets."""
    allowed = frozenset(roles) if roles else frozenset(Role)

    async def dependency(
        request: Request,
        db: DbSession,
        c: AppComponents,
        actor: RequestActor,
        sent: Annotated[str | None, Depends(csrf_sent)],
    ) -> Caller:
        return Caller(request, db, c, actor, sent, allowed)

    _IN_HANDLER.add(dependency)
    return dependency


_IN_HANDLER: set[object] = set()  # the dependencies made by require_in_handler


def checks_in_handler(call: object) -> bool:
    """Whether a dependency is a `require_in_handler(...)`: a fully signed-in caller, checked in the handler."""
    return call in _IN_HANDLER


def checks_the_caller(call: object) -> bool:
    """Whether a dependency checks who is calling (401/403/429), at once or in the handler (gateway/api_errors.py)."""
    return call is partial_principal or checks_in_handler(call)


CurrentPrincipal = Annotated[Principal, Depends(require())]
AdminPrincipal = Annotated[Principal, Depends(require(Role.admin))]
