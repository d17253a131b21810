"""The refusal ledger: garbage credentials cannot grow the audit log, and cannot lock others out.

An attacker at one address sends made-up tokens and cookies: the first refusal is
recorded, the limit is recorded once when reached, later requests answer 429 with
Retry-After, and the window's end leaves one event with the counts. A real user at
another address, and a valid credential at the same one, are unaffected.
"""

from __future__ import annotations

import asyncio
import secrets
import threading

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.audit.models import AuditEvent
from gateway.audit.sequencer import catch_up
from gateway.auth import throttle
from gateway.jobs import close_address_windows
from tests.gateway.authkit import address_row, assert_error, events

ME = "/api/v1/auth/me"
ATTACKER = ("203.0.113.66", 4000)
TOKENS = "/api/v1/auth/tokens"
REQUESTS = 10_000


def _event_count(components) -> int:
    catch_up(components.db)  # what is queued first, as every reader of the log does
    with components.db.snapshot() as s:
        return s.scalar(select(func.count()).select_from(AuditEvent))


def _actions_after(components, count: int) -> list[str]:
    catch_up(components.db)
    with components.db.snapshot() as s:
        return list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq).offset(count)))


def _garbage(i: int) -> dict:
    if i % 2:
        return {"Authorization": "Bearer phg_" + secrets.token_urlsafe(32)}
    return {"Cookie": f"phigate_session={secrets.token_urlsafe(32)}"}


async def _flood(app, requests: int, settings) -> dict[int, int]:
    """Garbage credentials from one address, twenty in flight at a time; the answers' statuses counted."""
    statuses: dict[int, int] = {}
    window = settings.ip_window_minutes * 60
    transport = httpx.ASGITransport(app=app, client=ATTACKER)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        gate = asyncio.Semaphore(20)

        async def one(i: int) -> None:
            async with gate:
                r = await client.get(ME, headers=_garbage(i))
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 429:
                err = assert_error(r, 429, "rate_limited")
                assert "Try again in" in err["message"] and 1 <= int(r.headers["retry-after"]) <= window
            else:
                assert_error(r, 401, "invalid_token" if i % 2 else "not_authenticated")

        await asyncio.gather(*(one(i) for i in range(requests)))
    return statuses


def test_ten_thousand_garbage_credentials_add_a_handful_of_events(
    app, components, factory, login, fake_clock, settings
):
    user = factory.user("practice_staff")
    with TestClient(app) as real:
        csrf = login(real, user, fake_clock)
        token = real.post(TOKENS, json={"name": "ehr", "code": user.code()}, headers={"X-CSRF-Token": csrf}).json()[
            "token"
        ]
    before = _event_count(components)
    limit = settings.ip_failure_limit
    statuses = asyncio.run(_flood(app, REQUESTS, settings))
    with TestClient(app, client=ATTACKER) as attacker:
        # A valid token at the same address still works: only failures are throttled.
        assert attacker.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert statuses == {401: limit, 429: REQUESTS - limit}
    # Three events for all those requests: the first refusal, the limit being reached, and the
    # alert that a high-severity event raises at once (auditors hear of it).
    first, *rest = _actions_after(components, before)
    assert first in ("request.refused", "auth.api_token.rejected")  # a cookie or a token, whichever came first
    assert rest == ["auth.address.throttled", "audit.alert.raised"]
    (reached,) = events(components, "auth.address.throttled")
    assert reached.ip == ATTACKER[0] and reached.details["failures"] == limit
    row = address_row(components, ATTACKER[0])
    assert (row.failures, row.unrecorded, row.refused) == (limit, limit - 1, REQUESTS - limit)

    # A real user at another address is unaffected, with a cookie and with a token.
    fake_clock.advance(seconds=30)  # a fresh TOTP step: codes are single-use
    with TestClient(app, client=("198.51.100.7", 5000)) as other:
        login(other, user, fake_clock)
        assert other.get(ME).status_code == 200
        assert other.get(ME, headers={"Authorization": f"Bearer {token}"}).status_code == 200

    # The window ends: the sweep writes one event with the counts and forgets the window.
    fake_clock.advance(minutes=settings.ip_window_minutes)
    assert close_address_windows(components) == 1
    (closed,) = events(components, "auth.address.window_closed")
    assert closed.ip == ATTACKER[0]
    assert {k: closed.details[k] for k in ("failures", "unrecorded", "refused")} == {
        "failures": limit,
        "unrecorded": limit - 1,
        "refused": REQUESTS - limit,
    }
    assert address_row(components, ATTACKER[0]) is None
    assert close_address_windows(components) == 0
    # The address starts afresh: its next refusal is recorded again and answers 401.
    with TestClient(app, client=ATTACKER) as attacker:
        assert_error(attacker.get(ME, headers=_garbage(1)), 401, "invalid_token")
    assert address_row(components, ATTACKER[0]).failures == 1


def test_returning_after_the_window_closes_it_first(app, components, fake_clock, settings):
    with TestClient(app, client=ATTACKER) as attacker:
        for i in range(3):
            attacker.get(ME, headers=_garbage(i))
        fake_clock.advance(minutes=settings.ip_window_minutes + 1)
        attacker.get(ME, headers=_garbage(1))
    (closed,) = events(components, "auth.address.window_closed")
    assert (closed.details["failures"], closed.details["unrecorded"], closed.details["refused"]) == (3, 2, 0)
    # Two windows, each with its first refusal recorded as itself.
    assert len(events(components, "request.refused")) + len(events(components, "auth.api_token.rejected")) == 2
    assert address_row(components, ATTACKER[0]).failures == 1


def test_a_window_with_nothing_unrecorded_closes_silently(components, fake_clock, settings):
    with components.db.transaction() as db:
        counted = throttle.count_address_failure(db, settings, "192.0.2.1", recorded=False)
    assert counted.first_in_window and counted.throttled is None
    fake_clock.advance(minutes=settings.ip_window_minutes)
    assert close_address_windows(components) == 1
    assert events(components, "auth.address.window_closed") == []


def test_parallel_failures_each_count_once(components, settings):
    """Twenty refusals at once from one address: every one counted, exactly one is the window's first."""
    results: list[throttle.Counted] = []
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def one() -> None:
        try:
            start.wait()
            with components.db.transaction() as db:
                results.append(throttle.count_address_failure(db, settings, "192.0.2.9", recorded=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(r.first_in_window for r in results) == 1
    row = address_row(components, "192.0.2.9")
    assert (row.failures, row.unrecorded) == (20, 19)
