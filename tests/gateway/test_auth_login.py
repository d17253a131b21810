"""First factor through HTTP as an attacker would try it: wrong passwords, unknown, disabled
and locked accounts (indistinguishable), lockout, per-address throttle, forged X-Forwarded-For,
malformed and over-long input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from gateway import clock
from gateway.app import create_app
from gateway.audit.models import Outcome, Severity
from gateway.components import Components
from tests.gateway.authkit import (
    address_failures,
    address_row,
    assert_error,
    event_count,
    events,
    last_event,
    session_count,
    update_user,
    user_row,
)

LOGIN = "/api/v1/auth/login"


def _login(client, username, password, **kw):
    return client.post(LOGIN, json={"username": username, "password": password}, **kw)


def test_wrong_password_is_refused_recorded_and_counted(client, factory, components):
    user = factory.user("practice_staff")
    r = _login(client, user.username, user.password + "x", headers={"user-agent": "attacker/1.0"})
    err = assert_error(r, 401, "login_failed")
    assert "not correct" in err["message"]
    assert "set-cookie" not in r.headers
    ev = last_event(components, "auth.login.failed")
    assert ev.outcome == Outcome.failure and ev.details == {"reason": "bad_password"}
    assert ev.target_id == user.id and ev.ip == "testclient" and ev.user_agent == "attacker/1.0"
    assert session_count(components) == 0
    assert user_row(components, user.id).failed_attempts == 1
    assert address_failures(components, "testclient") == 1


def test_unknown_disabled_and_locked_accounts_answer_exactly_like_a_wrong_password(client, factory, components):
    wrong = factory.user("practice_staff")
    disabled = factory.user("practice_staff")
    locked = factory.user("practice_staff")
    update_user(components, disabled.id, active=False)
    update_user(components, locked.id, locked_until=clock.now() + timedelta(minutes=5))

    answers = {
        "bad_password": _login(client, wrong.username, "not the password at all"),
        "unknown_user": _login(client, "nobody-here", "not the password at all"),
        # Disabled and locked accounts refuse even the right password, and say nothing more.
        "disabled": _login(client, disabled.username, disabled.password),
        "locked": _login(client, locked.username, locked.password),
    }
    reference = answers["bad_password"]
    for reason, r in answers.items():
        assert r.status_code == reference.status_code == 401, reason
        assert r.json() == reference.json(), reason
        assert "set-cookie" not in r.headers, reason
    recorded = [e.details["reason"] for e in events(components, "auth.login.failed")]
    assert recorded == ["bad_password", "unknown_user", "disabled", "locked"]
    assert session_count(components) == 0
    # Refusals of disabled and locked accounts do not extend the lock or the counter.
    assert user_row(components, disabled.id).failed_attempts == 0
    assert user_row(components, locked.id).failed_attempts == 0


def test_unknown_user_pays_for_a_password_hash(client, factory, monkeypatch):
    """Timing must not reveal which usernames exist: an unknown user costs one argon2 verify too."""
    from gateway.auth import passwords

    calls = []
    real = passwords._hasher

    class Spy:
        def __getattr__(self, name):
            return getattr(real, name)

        def verify(self, h, p):
            calls.append(h)
            return real.verify(h, p)

    monkeypatch.setattr(passwords, "_hasher", Spy())
    r = _login(client, "ghost-user", "whatever whatever")
    assert_error(r, 401, "login_failed")
    assert calls == [passwords._DUMMY_HASH]


def test_both_answers_say_whether_a_new_password_is_due(client, factory):
    """`must_change_password` in the login and second-factor answers (docs/api.md): true after a password reset."""
    for due in (False, True):
        user = factory.user("practice_staff", must_change_password=due)
        r = _login(client, user.username, user.password)
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "mfa" and r.json()["must_change_password"] is due
        r = client.post(
            "/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]}
        )
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "full" and r.json()["must_change_password"] is due
        client.cookies.clear()


def test_username_is_matched_case_insensitively_and_trimmed(client, factory):
    user = factory.user("biller")
    r = _login(client, f"  {user.username.upper()} ", user.password)
    assert r.status_code == 200 and r.json()["stage"] == "mfa"


def test_ten_failures_lock_the_account_even_for_the_right_password(client, factory, components, fake_clock, settings):
    user = factory.user("practice_approver")
    for _ in range(settings.lockout_threshold):
        assert_error(_login(client, user.username, "wrong wrong wrong"), 401, "login_failed")
    locked = last_event(components, "auth.account.locked")
    assert locked.severity == Severity.high and locked.target_id == user.id
    assert locked.details == {"failed_attempts": 10, "minutes": settings.lockout_minutes}
    row = user_row(components, user.id)
    assert row.locked_until == clock.now() + timedelta(minutes=settings.lockout_minutes)

    r = _login(client, user.username, user.password)
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.login.failed").details["reason"] == "locked"
    assert session_count(components) == 0

    fake_clock.advance(minutes=settings.lockout_minutes - 1)
    assert_error(_login(client, user.username, user.password), 401, "login_failed")
    fake_clock.advance(minutes=1, seconds=1)
    r = _login(client, user.username, user.password)
    assert r.status_code == 200 and r.json()["stage"] == "mfa"
    # A successful full sign-in clears the counter.
    client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]})
    row = user_row(components, user.id)
    assert row.failed_attempts == 0 and row.locked_until is None


def test_wrong_second_factor_counts_towards_the_lockout(client, factory, components, settings):
    user = factory.user("biller")
    r = _login(client, user.username, user.password)
    csrf = r.json()["csrf_token"]
    for _ in range(settings.lockout_threshold):
        assert_error(
            client.post("/api/v1/auth/mfa", json={"code": "000000"}, headers={"X-CSRF-Token": csrf}),
            401,
            "login_failed",
        )
    assert last_event(components, "auth.account.locked").target_id == user.id
    # The right code no longer helps while locked.
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": csrf})
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "locked"}


def _small_limit_app(settings, **extra):
    s = settings.model_copy(update={"ip_failure_limit": 5, **extra})
    c = Components(s)
    return create_app(s, c), c


def test_address_limit_answers_429_and_does_not_lock_accounts(settings, factory, components):
    app, c = _small_limit_app(settings)
    victim = factory.user("practice_staff")
    try:
        with TestClient(app) as attacker, TestClient(app, client=("198.51.100.20", 4000)) as other:
            for _ in range(5):
                assert_error(_login(attacker, victim.username, "guess guess guess"), 401, "login_failed")
            r = _login(attacker, victim.username, victim.password)
            err = assert_error(r, 429, "rate_limited")
            assert "Try again in" in err["message"]
            assert 1 <= int(r.headers["retry-after"]) <= settings.ip_window_minutes * 60
            # The limit was recorded once, when reached; the throttled attempt is a count in the window.
            (reached,) = events(components, "auth.address.throttled")
            assert reached.ip == "testclient" and reached.details["failures"] == 5
            assert len(events(components, "auth.login.failed")) == 5
            assert address_row(components, "testclient").refused == 1
            # The throttled attempts did not reach the account: no lockout of the victim.
            row = user_row(components, victim.id)
            assert row.failed_attempts == 5 and row.locked_until is None
            assert events(components, "auth.account.locked") == []
            # The victim, from their own address, still signs in.
            r = _login(other, victim.username, victim.password)
            assert r.status_code == 200 and r.json()["stage"] == "mfa"
    finally:
        c.close()


def test_address_limit_window_ends_on_the_fake_clock(settings, factory, components, fake_clock):
    app, c = _small_limit_app(settings)
    user = factory.user("practice_staff")
    try:
        with TestClient(app) as client:
            for _ in range(5):
                _login(client, "nobody", "guess guess guess")
            assert_error(_login(client, user.username, user.password), 429, "rate_limited")
            fake_clock.advance(minutes=settings.ip_window_minutes)
            assert _login(client, user.username, user.password).status_code == 200
    finally:
        c.close()


def test_forged_x_forwarded_for_is_ignored_from_an_untrusted_peer(settings, components):
    app, c = _small_limit_app(settings)
    try:
        with TestClient(app) as attacker:
            for i in range(5):
                _login(attacker, "nobody", "guess guess guess", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            # A fresh forged address does not dodge the limit: the peer address is what counts.
            r = _login(attacker, "nobody", "guess guess guess", headers={"X-Forwarded-For": "192.0.2.99"})
            assert_error(r, 429, "rate_limited")
        assert {e.ip for e in events(components, "auth.login.failed")} == {"testclient"}
        assert address_failures(components, "testclient") == 5
    finally:
        c.close()


def test_x_forwarded_for_is_honoured_from_a_trusted_proxy(settings, components):
    app, c = _small_limit_app(settings, trusted_proxies=("10.0.0.0/8",))
    try:
        with TestClient(app, client=("10.0.0.5", 1234)) as proxy:
            _login(proxy, "nobody", "x" * 12, headers={"X-Forwarded-For": "203.0.113.7"})
            # Left-most entries are client-supplied and forgeable: the right-most untrusted hop counts.
            _login(proxy, "nobody", "x" * 12, headers={"X-Forwarded-For": "6.6.6.6, 198.51.100.4, 10.0.0.9"})
            _login(proxy, "nobody", "x" * 12, headers={"X-Forwarded-For": "not-an-ip"})
            _login(proxy, "nobody", "x" * 12)
        assert [e.ip for e in events(components, "auth.login.failed")] == [
            "203.0.113.7",
            "198.51.100.4",
            "10.0.0.5",
            "10.0.0.5",
        ]
        # Each real client has its own address budget.
        assert address_failures(components, "203.0.113.7") == 1
        assert address_failures(components, "10.0.0.5") == 2
    finally:
        c.close()


def test_malformed_json_is_400_recorded_and_harmless(client, components):
    r = client.post(LOGIN, content=b'{"username": "a", "password": ', headers={"content-type": "application/json"})
    assert_error(r, 400, "malformed_json")
    ev = last_event(components, "request.refused")
    assert ev.details["reason"] == "malformed_json" and ev.details["route"] == "/api/v1/auth/login"
    assert ev.ip == "testclient"
    assert session_count(components) == 0
    # Anyone can send garbage: it counts against the address like a failed sign-in.
    assert address_failures(components, "testclient") == 1


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": "u" * 65, "password": "p" * 20}, "username"),
        ({"username": "someone", "password": "p" * 2000}, "password"),
        ({"username": "", "password": "p" * 20}, "username"),
        ({"username": "someone", "password": "p" * 20, "role": "admin"}, "role"),
        ({"username": "someone"}, "password"),
    ],
)
def test_over_long_missing_and_extra_login_fields_are_422(client, components, body, field):
    r = client.post(LOGIN, json=body)
    err = assert_error(r, 422, "invalid_input")
    assert field in err["message"]
    # The submitted values are never echoed back.
    assert "p" * 100 not in err["message"] and "u" * 65 not in err["message"]
    ev = last_event(components, "request.refused")
    assert ev.details["reason"] == "invalid_input" and field in ev.details["fields"]
    assert session_count(components) == 0


def test_over_long_code_is_422_and_does_not_count_as_a_guess(client, factory, components):
    user = factory.user("practice_staff")
    csrf = _login(client, user.username, user.password).json()["csrf_token"]
    before = user_row(components, user.id).failed_attempts
    r = client.post("/api/v1/auth/mfa", json={"code": "1" * 33}, headers={"X-CSRF-Token": csrf})
    assert_error(r, 422, "invalid_input")
    ev = last_event(components, "request.refused")
    assert ev.details["reason"] == "invalid_input" and ev.actor_user_id == user.id
    assert user_row(components, user.id).failed_attempts == before
    assert user_row(components, user.id).totp_last_step is None


def test_json_body_sent_as_text_plain_is_not_parsed(client, factory, components):
    """A cross-site form can post text/plain; the API must not read it as JSON."""
    user = factory.user("practice_staff")
    n = event_count(components)
    r = client.post(
        LOGIN,
        content=f'{{"username": "{user.username}", "password": "{user.password}"}}',
        headers={"content-type": "text/plain"},
    )
    assert r.status_code in (400, 422)
    assert session_count(components) == 0
    assert event_count(components) == n + 1


def test_parallel_failures_are_all_counted(components, factory):
    """Service level, one DB session per thread: simultaneous guesses (the first ones from a new
    address included) each count against the account and the address, and none errors out."""
    import threading

    from gateway.audit.service import Actor
    from gateway.auth.service import check_password
    from gateway.errors import LoginFailed

    user = factory.user("practice_staff")
    n = 6
    barrier = threading.Barrier(n)
    outcomes = []

    def guess(i):
        with components.db.sessions() as db:
            barrier.wait()
            try:
                check_password(
                    db, components.settings, user.username, f"wrong guess number {i}", Actor(ip="192.0.2.50")
                )
                outcomes.append("accepted")
            except LoginFailed:
                outcomes.append("refused")
            except Exception as exc:  # noqa: BLE001 - any other error is the bug
                outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert outcomes == ["refused"] * n
    assert user_row(components, user.id).failed_attempts == n
    assert address_failures(components, "192.0.2.50") == n
    assert len(events(components, "auth.login.failed")) == n
