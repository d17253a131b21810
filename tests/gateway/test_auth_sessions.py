"""Sessions as an attacker sees them: replayed cookies (after logout, idle and absolute timeout,
after the user is disabled or changes role), cookie attributes, and CSRF."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.components import Components
from tests.gateway.authkit import (
    address_row,
    assert_error,
    csrf_from,
    event_count,
    events,
    last_event,
    recovery_rows,
    session_count,
    sessions_of,
    tokens_of,
)

COOKIE = "phigate_session"


def _replay(client, raw):
    client.cookies.clear()
    client.cookies.set(COOKIE, raw)
    return client.get("/api/v1/auth/me")


def test_cookie_replayed_after_logout_is_refused(client, factory, components, login):
    user = factory.user("practice_staff")
    csrf = login(client, user)
    raw = client.cookies.get(COOKIE)
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 204
    assert 'phigate_session=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert last_event(components, "auth.session.revoked").details == {"reason": "logout"}
    assert sessions_of(components, user.id) == []
    assert_error(_replay(client, raw), 401, "not_authenticated")
    ev = last_event(components, "request.refused")
    assert ev.details["reason"] == "not_authenticated" and ev.details["route"] == "/api/v1/auth/me"
    # The page answer for the same replay is the sign-in page.
    r = client.get("/home", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert session_count(components) == 0


def test_page_logout_then_replay(client, factory, components, login):
    user = factory.user("practice_staff")
    login(client, user)
    raw = client.cookies.get(COOKIE)
    home = client.get("/home")
    r = client.post("/logout", data={"csrf_token": csrf_from(home.text)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"
    client.cookies.set(COOKIE, raw)
    assert client.get("/home", follow_redirects=False).headers["location"] == "/login"


def test_idle_timeout(client, factory, components, login, fake_clock, settings):
    user = factory.user("practice_staff")
    login(client, user)
    fake_clock.advance(minutes=settings.session_idle_minutes - 1)
    assert client.get("/api/v1/auth/me").status_code == 200  # activity keeps it alive
    fake_clock.advance(minutes=settings.session_idle_minutes)
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    ev = last_event(components, "auth.session.expired")
    assert ev.details == {"reason": "idle_timeout"} and ev.target_id == user.id
    assert sessions_of(components, user.id) == []
    # Going back in time does not revive it.
    fake_clock.advance(minutes=-settings.session_idle_minutes)
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")


def test_half_authenticated_session_also_idles_out(client, factory, components, fake_clock, settings):
    user = factory.user("practice_staff")
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    fake_clock.advance(minutes=settings.session_idle_minutes)
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]})
    assert_error(r, 401, "not_authenticated")
    assert last_event(components, "auth.session.expired").details == {"reason": "idle_timeout"}
    assert events(components, "auth.login.succeeded") == []


def test_absolute_timeout_despite_activity(client, factory, components, login, fake_clock, settings):
    user = factory.user("practice_staff")
    login(client, user)
    steps = settings.session_absolute_hours * 6  # one request every 10 minutes dodges the idle limit
    for _ in range(steps - 1):
        fake_clock.advance(minutes=10)
        assert client.get("/api/v1/auth/me").status_code == 200
    fake_clock.advance(minutes=10)
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    assert last_event(components, "auth.session.expired").details == {"reason": "absolute_timeout"}
    assert sessions_of(components, user.id) == []


def test_absolute_lifetime_survives_rotation(client, factory, components, login, fake_clock, settings):
    """Rotating the id (password change) must not restart the 12-hour clock."""
    user = factory.user("practice_staff")
    csrf = login(client, user)
    created = sessions_of(components, user.id)[0].expires_at
    fake_clock.advance(minutes=10)
    r = client.post(
        "/api/v1/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": user.password, "new_password": "another long passphrase"},
    )
    assert r.status_code == 204
    assert sessions_of(components, user.id)[0].expires_at == created


def _admin_client(app, factory, login, fake_clock):
    admin = factory.user("admin")
    c = TestClient(app)
    return c, login(c, admin, fake_clock), admin


def test_disabled_user_loses_sessions_and_tokens_at_once(app, client, factory, components, login, fake_clock):
    user = factory.user("biller")
    csrf = login(client, user, fake_clock)
    token = client.post(
        "/api/v1/auth/tokens", json={"name": "billing system", "code": user.code()}, headers={"X-CSRF-Token": csrf}
    ).json()["token"]
    fake_clock.advance(seconds=30)
    admin_client, admin_csrf, admin = _admin_client(app, factory, login, fake_clock)
    try:
        r = admin_client.post(f"/api/v1/users/{user.id}/disable", headers={"X-CSRF-Token": admin_csrf})
        assert r.status_code == 200 and r.json()["active"] is False
    finally:
        admin_client.close()
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert_error(r, 401, "invalid_token")
    assert last_event(components, "admin.user.disabled").actor_user_id == admin.id
    revoked = [e.details for e in events(components, target_id=user.id) if e.action == "auth.session.revoked"]
    assert revoked == [{"reason": "user_disabled", "sessions": 1}]
    assert last_event(components, "auth.api_token.revoked").details == {"reason": "user_disabled", "tokens": 1}
    # Both refusals are anonymous: the address window recorded the first and counted the second.
    assert last_event(components, "request.refused").details["reason"] == "not_authenticated"
    assert address_row(components, "testclient").unrecorded == 1
    assert sessions_of(components, user.id) == []
    assert all(t.revoked_at is not None for t in tokens_of(components, user.id))
    # Disabled users cannot sign in again either.
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert_error(r, 401, "login_failed")


def test_role_change_revokes_sessions(app, client, factory, components, login, fake_clock):
    user = factory.user("practice_staff")
    login(client, user)
    admin_client, admin_csrf, _ = _admin_client(app, factory, login, fake_clock)
    try:
        r = admin_client.post(
            f"/api/v1/users/{user.id}/role", json={"role": "practice_approver"}, headers={"X-CSRF-Token": admin_csrf}
        )
        assert r.status_code == 200 and r.json()["role"] == "practice_approver"
    finally:
        admin_client.close()
    assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    assert last_event(components, "admin.user.role_changed").details == {
        "from": "practice_staff",
        "to": "practice_approver",
    }
    assert last_event(components, "auth.session.revoked").details == {"reason": "role_changed", "sessions": 1}


def test_password_change_revokes_other_sessions_and_rotates_this_one(
    app, client, factory, components, login, fake_clock
):
    user = factory.user("practice_staff")
    other = TestClient(app)
    try:
        login(other, user, fake_clock)
        csrf = login(client, user, fake_clock)
        before = client.cookies.get(COOKIE)
        r = client.post(
            "/api/v1/auth/password",
            headers={"X-CSRF-Token": csrf},
            json={"current_password": user.password, "new_password": "my second passphrase"},
        )
        assert r.status_code == 204
        assert client.cookies.get(COOKIE) != before
        assert client.get("/api/v1/auth/me").status_code == 200
        assert_error(other.get("/api/v1/auth/me"), 401, "not_authenticated")
        assert last_event(components, "auth.session.revoked").details == {"reason": "password_changed", "sessions": 1}
        assert len(sessions_of(components, user.id)) == 1
    finally:
        other.close()


def test_session_id_is_stored_hashed_and_rotated_at_each_stage(client, factory, components):
    import hashlib

    user = factory.user("practice_staff")
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    first = client.cookies.get(COOKIE)
    assert len(first) >= 43  # 256 bits, urlsafe base64
    assert [s.id_hash for s in sessions_of(components, user.id)] == [hashlib.sha256(first.encode()).hexdigest()]
    client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]})
    second = client.cookies.get(COOKIE)
    assert second != first
    assert [s.id_hash for s in sessions_of(components, user.id)] == [hashlib.sha256(second.encode()).hexdigest()]
    assert _replay(client, first).status_code == 401


def _cookie_attrs(set_cookie: str) -> dict:
    parts = [p.strip() for p in set_cookie.split(";")]
    name, _ = parts[0].split("=", 1)
    attrs = {"name": name}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v or True
    return attrs


def test_session_cookie_attributes_plain_http(client, factory):
    user = factory.user("practice_staff")
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    attrs = _cookie_attrs(r.headers["set-cookie"])
    assert attrs["name"] == "phigate_session"
    assert attrs["httponly"] is True and attrs["samesite"].lower() == "strict" and attrs["path"] == "/"
    assert "domain" not in attrs and "secure" not in attrs


def test_session_cookie_attributes_secure(settings, factory, components):
    s = settings.model_copy(update={"cookie_secure": True})
    c = Components(s)
    try:
        with TestClient(create_app(s, c), base_url="https://testserver") as client:
            user = factory.user("practice_staff")
            form = client.get("/login")
            assert "secure" in _cookie_attrs(form.headers["set-cookie"])
            r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
            attrs = _cookie_attrs(r.headers["set-cookie"])
            assert attrs["name"] == "__Host-phigate_session"
            assert attrs["secure"] is True and attrs["httponly"] is True
            assert attrs["samesite"].lower() == "strict" and attrs["path"] == "/" and "domain" not in attrs
            r = client.post(
                "/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]}
            )
            assert r.status_code == 200
            assert client.get("/api/v1/auth/me").json()["username"] == user.username
            # The non-prefixed name is not honoured when Secure cookies are configured.
            raw = client.cookies.get("__Host-phigate_session")
            client.cookies.clear()
            client.cookies.set("phigate_session", raw)
            assert_error(client.get("/api/v1/auth/me"), 401, "not_authenticated")
    finally:
        c.close()


# -- CSRF -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers", [{}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": ""}], ids=["missing", "wrong", "empty"]
)
def test_api_post_with_session_needs_the_csrf_header(client, factory, components, login, fake_clock, headers):
    user = factory.user("practice_staff")
    login(client, user, fake_clock)
    n = event_count(components)
    r = client.post("/api/v1/auth/tokens", json={"name": "x", "code": user.code()}, headers=headers)
    assert_error(r, 403, "csrf_failed")
    assert tokens_of(components, user.id) == []
    new = events(components)[n:]
    assert [(e.action, e.details["reason"], e.actor_user_id) for e in new] == [
        ("request.refused", "csrf_failed", user.id)
    ]
    r = client.post("/api/v1/auth/logout", headers=headers)
    assert_error(r, 403, "csrf_failed")
    assert len(sessions_of(components, user.id)) == 1


def test_csrf_token_of_another_session_is_wrong(app, client, factory, components, login, fake_clock):
    victim = factory.user("practice_staff")
    attacker = factory.user("practice_staff")
    login(client, victim, fake_clock)
    with TestClient(app) as other:
        attacker_csrf = login(other, attacker, fake_clock)
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": attacker_csrf})
    assert_error(r, 403, "csrf_failed")
    assert len(sessions_of(components, victim.id)) == 1


def test_page_form_needs_the_csrf_field(client, factory, components, login, fake_clock):
    user = factory.user("practice_staff")
    login(client, user, fake_clock)
    good = csrf_from(client.get("/account").text)
    for data in ({"code": user.code()}, {"code": user.code(), "csrf_token": "forged"}):
        r = client.post("/account/recovery-codes", data=data)
        assert r.status_code == 403 and "csrf_failed" in r.text and "<!doctype html>" in r.text.lower()
    # Multipart bodies are not read for the token: refused as well, never accepted.
    r = client.post("/account/recovery-codes", files={"code": (None, user.code()), "csrf_token": (None, good)})
    assert r.status_code == 403
    assert recovery_rows(components, user.id) == []
    assert [e.details["reason"] for e in events(components, "request.refused")] == ["csrf_failed"] * 3
    r = client.post("/account/recovery-codes", data={"code": user.code(), "csrf_token": good, "confirmed": "yes"})
    assert r.status_code == 200 and 'id="recovery-codes"' in r.text


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver.evil.example"])
def test_cross_site_origin_is_refused_even_with_the_right_token(client, factory, components, login, origin):
    user = factory.user("practice_staff")
    csrf = login(client, user)
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, "Origin": origin})
    assert_error(r, 403, "bad_origin")
    assert len(sessions_of(components, user.id)) == 1
    assert last_event(components, "request.refused").details["reason"] == "bad_origin"
    # Login itself (no session yet) checks the Origin too.
    r = client.post(
        "/api/v1/auth/login", json={"username": user.username, "password": user.password}, headers={"Origin": origin}
    )
    assert_error(r, 403, "bad_origin")
    assert len(sessions_of(components, user.id)) == 1
    # The same-site origin is fine.
    r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, "Origin": "http://testserver"})
    assert r.status_code == 204


def test_fetch_metadata_decides_for_a_null_origin(client, factory, components, login):
    """Browsers send `Origin: null` for same-origin form posts under Referrer-Policy: no-referrer."""
    user = factory.user("practice_staff")
    csrf = login(client, user)
    for headers in (
        {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "same-site"},
    ):
        r = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, **headers})
        assert_error(r, 403, "bad_origin")
    assert len(sessions_of(components, user.id)) == 1
    r = client.post(
        "/api/v1/auth/logout", headers={"X-CSRF-Token": csrf, "Origin": "null", "Sec-Fetch-Site": "same-origin"}
    )
    assert r.status_code == 204
    assert sessions_of(components, user.id) == []


def test_page_login_from_a_browser_with_null_origin(client, factory, components):
    user = factory.user("practice_staff")
    form = client.get("/login")
    r = client.post(
        "/login",
        data={"username": user.username, "password": user.password, "csrf_token": csrf_from(form.text)},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/mfa"


def test_bearer_requests_need_no_csrf(client, factory, components, login, fake_clock):
    admin = factory.user("admin")
    csrf = login(client, admin, fake_clock)
    token = client.post(
        "/api/v1/auth/tokens", json={"name": "provisioning", "code": admin.code()}, headers={"X-CSRF-Token": csrf}
    ).json()["token"]
    with TestClient(client.app) as api:
        r = api.post(
            "/api/v1/orgs",
            json={"name": "Bearer Practice", "kind": "practice"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 201
        assert last_event(components, "admin.org.created").actor_user_id == admin.id
        # A token in the body or query is not a credential.
        r = api.post(
            "/api/v1/orgs",
            json={"name": "Other Practice", "kind": "practice"},
            headers={"Authorization": f"Token {token}"},
        )
        assert_error(r, 401, "not_authenticated")


def test_sessions_are_never_created_by_safe_methods(client, components):
    for path in ("/", "/login", "/healthz", "/api/openapi.json"):
        r = client.get(path, follow_redirects=False)
        assert "phigate_session" not in r.headers.get("set-cookie", ""), path
    assert session_count(components) == 0
    assert re.search(r"no-store", client.get("/login").headers["cache-control"])
