"""Request dependencies: the database session, the caller, and who may call a route.

Every route declares its audience through one of these `Annotated` aliases;
`require(...)` is the only way to reach a full session, and it also enforces
CSRF on state-changing requests made with the session cookie.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from gateway.audit.models import Outcome
from gateway.audit.service import Actor, record_event
from gateway.auth.models import SessionStage
from gateway.auth.service import Principal, resolve_api_token, resolve_session
from gateway.components import Components
from gateway.config import Settings
from gateway.errors import CsrfFailed, Forbidden, MfaRequired, NotAuthenticated, PasswordChangeRequired
from gateway.users.models import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_components(request: Request) -> Components:
    return request.app.state.components


def get_settings(request: Request) -> Settings:
    return request.app.state.components.settings


def get_db(request: Request) -> Iterator[Session]:
    # Nothing is committed implicitly: services commit what they mean to keep,
    # and whatever a failing request left uncommitted is rolled back here.
    with request.app.state.components.db.sessions() as session:
        # The error handler records refusals through this session, after rolling back.
        request.state.db = session
        yield session


DbSession = Annotated[Session, Depends(get_db)]
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


def get_actor(request: Request, settings: AppSettings) -> Actor:
    return Actor(ip=client_address(request, settings), user_agent=request.headers.get("user-agent", "")[:256])


RequestActor = Annotated[Actor, Depends(get_actor)]


def _principal(request: Request, db: Session, settings: Settings, actor: Actor) -> Principal | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found = resolve_api_token(db, auth[7:].strip())
        if found is None:
            record_event(db, "auth.api_token.rejected", actor=actor, outcome=Outcome.failure)
            db.commit()
            exc = NotAuthenticated("The API token is not valid.", code="invalid_token")
            exc.audited = True
            raise exc
        token, user = found
        db.commit()
        return Principal(user, None, token, Actor(user.id, user.org_id, actor.ip, actor.user_agent))
    raw = request.cookies.get(settings.session_cookie_name)
    if not raw:
        return None
    session = resolve_session(db, settings, raw, actor)
    if session is None:
        return None
    from gateway.users.models import User

    user = db.get(User, session.user_id)
    # End the transaction now: nothing of the request's session stays open (on SQLite
    # an open transaction holds the write lock) while a long upload or download runs.
    db.commit()
    return Principal(user, session, None, Actor(user.id, user.org_id, actor.ip, actor.user_agent))


async def check_csrf(request: Request, principal: Principal) -> None:
    """Session-cookie requests that change state must echo the session's CSRF token."""
    if request.method in SAFE_METHODS or principal.session is None:
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        sent = (await request.form()).get("csrf_token")
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


async def partial_principal(request: Request, db: DbSession, settings: AppSettings, actor: RequestActor) -> Principal:
    """A session at any stage: used only by the second-factor and enrolment steps."""
    check_origin(request)
    principal = _principal(request, db, settings, actor)
    # Kept for the error handler, so that a refusal further on names who was refused.
    request.state.principal = principal
    if principal is None:
        raise NotAuthenticated()
    await check_csrf(request, principal)
    return principal


PartialPrincipal = Annotated[Principal, Depends(partial_principal)]


async def full_principal(principal: PartialPrincipal) -> Principal:
    """Password and TOTP both done; the password may still be a one-time one."""
    if principal.session is not None and principal.session.stage != SessionStage.full:
        raise MfaRequired()
    return principal


PasswordChangePrincipal = Annotated[Principal, Depends(full_principal)]


def require(*roles: Role):
    """Dependency: a fully signed-in user holding one of `roles` (all roles when none given)."""
    allowed = frozenset(roles) if roles else frozenset(Role)

    async def dependency(principal: PasswordChangePrincipal) -> Principal:
        if principal.user.must_change_password:
            raise PasswordChangeRequired()
        if principal.user.role not in allowed:
            raise Forbidden()
        return principal

    return dependency


CurrentPrincipal = Annotated[Principal, Depends(require())]
AdminPrincipal = Annotated[Principal, Depends(require(Role.admin))]
