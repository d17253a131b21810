"""Helpers for the foundation's security tests: audit queries, DB state, page forms.

Every read opens its own short snapshot session and closes it, so a test never
holds a transaction open while the application serves a request.
"""

from __future__ import annotations

import re

from sqlalchemy import func, select

from gateway.audit.models import AuditEvent
from gateway.audit.sequencer import catch_up
from gateway.auth.models import AddressThrottle, ApiToken, WebSession
from gateway.users.models import RecoveryCode, User

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def events(components, action: str | None = None, **where) -> list[AuditEvent]:
    """Audit events in order, optionally filtered by action and column values.

    An event recorded while serving a request carries the request's id in its details;
    its form is checked here and it is moved to `event.request_id` (None for events of
    no request), so that the tests compare the details that belong to the action itself.
    Queued events are integrated first, as every reader of the log does (sequencer.catch_up).
    """
    catch_up(components.db)
    with components.db.snapshot() as s:
        query = select(AuditEvent).order_by(AuditEvent.seq)
        if action:
            query = query.where(AuditEvent.action == action)
        for column, value in where.items():
            query = query.where(getattr(AuditEvent, column) == value)
        rows = list(s.scalars(query))
        s.expunge_all()
        s.rollback()
    for row in rows:
        details = dict(row.details or {})
        row.request_id = details.pop("request_id", None)
        assert row.request_id is None or REQUEST_ID.fullmatch(row.request_id), row.request_id
        row.details = details
    return rows


def last_event(components, action: str | None = None, **where) -> AuditEvent:
    rows = events(components, action, **where)
    assert rows, f"no audit event {action} {where}; have {[e.action for e in events(components)]}"
    return rows[-1]


def event_count(components) -> int:
    catch_up(components.db)
    with components.db.snapshot() as s:
        n = s.scalar(select(func.count()).select_from(AuditEvent))
        s.expunge_all()
        s.rollback()
        return n


def sessions_of(components, user_id: str) -> list[WebSession]:
    with components.db.snapshot() as s:
        rows = list(s.scalars(select(WebSession).where(WebSession.user_id == user_id)))
        s.expunge_all()
        s.rollback()
        return rows


def session_count(components) -> int:
    with components.db.snapshot() as s:
        n = s.scalar(select(func.count()).select_from(WebSession))
        s.expunge_all()
        s.rollback()
        return n


def user_row(components, user_id: str) -> User:
    with components.db.snapshot() as s:
        user = s.get(User, user_id)
        s.expunge_all()
        s.rollback()
        return user


def tokens_of(components, user_id: str) -> list[ApiToken]:
    with components.db.snapshot() as s:
        rows = list(s.scalars(select(ApiToken).where(ApiToken.user_id == user_id)))
        s.expunge_all()
        s.rollback()
        return rows


def recovery_rows(components, user_id: str) -> list[RecoveryCode]:
    with components.db.snapshot() as s:
        rows = list(s.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user_id)))
        s.expunge_all()
        s.rollback()
        return rows


def address_row(components, address: str) -> AddressThrottle | None:
    with components.db.snapshot() as s:
        row = s.get(AddressThrottle, address)
        s.expunge_all()
        s.rollback()
        return row


def address_failures(components, address: str) -> int:
    row = address_row(components, address)
    return row.failures if row else 0


def update_user(components, user_id: str, **values) -> None:
    with components.db.transaction() as s:
        user = s.get(User, user_id)
        for k, v in values.items():
            setattr(user, k, v)


def csrf_from(html: str) -> str:
    m = CSRF_FIELD.search(html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]


def password_stage(client, user) -> str:
    """Password only (half-authenticated); returns the CSRF token of that session."""
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert r.status_code == 200, r.text
    return r.json()["csrf_token"]


def page_login(client, username: str, password: str):
    """Sign in through the /login form with its double-submit CSRF cookie; returns the POST response."""
    form = client.get("/login")
    assert form.status_code == 200
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": csrf_from(form.text)},
        follow_redirects=False,
    )
