"""A new user's first sign-in (one-time password, TOTP enrolment, password change), through the
API and through the pages, and half-authenticated sessions on every other route."""

from __future__ import annotations

import re

import pytest

from gateway import clock
from gateway.auth import totp
from gateway.web import with_next
from tests.gateway.authkit import (
    address_row,
    assert_error,
    csrf_from,
    events,
    last_event,
    page_login,
    password_stage,
    recovery_rows,
    sessions_of,
    user_row,
)

API_FULL_ROUTES = [
    ("GET", "/api/v1/auth/me"),
    ("GET", "/api/v1/auth/tokens"),
    ("POST", "/api/v1/auth/tokens"),
    ("POST", "/api/v1/auth/recovery-codes"),
    ("POST", "/api/v1/auth/password"),
    ("GET", "/api/v1/orgs"),
    ("POST", "/api/v1/orgs"),
    ("GET", "/api/v1/users"),
    ("POST", "/api/v1/users"),
    ("POST", "/api/v1/users/someid/disable"),
    ("DELETE", "/api/v1/auth/tokens/someid"),
]
PAGES = ["/home", "/account", "/password", "/admin/orgs", "/admin/users"]


@pytest.mark.parametrize("enrolled", [True, False], ids=["mfa-stage", "enrol-stage"])
def test_half_authenticated_session_reaches_nothing_else(client, factory, components, enrolled):
    user = factory.user("admin", enrolled=enrolled, must_change_password=not enrolled)
    csrf = password_stage(client, user)
    for method, path in API_FULL_ROUTES:
        r = client.request(method, path, json={"code": "123456"}, headers={"X-CSRF-Token": csrf})
        assert_error(r, 401, "mfa_required")
    refused = events(components, "request.refused")
    assert len(refused) == len(API_FULL_ROUTES)
    assert {e.details["reason"] for e in refused} == {"mfa_required"}
    assert {e.actor_user_id for e in refused} == {user.id}
    for path in PAGES:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == with_next("/mfa", path), path
    # /mfa itself sends a not-yet-enrolled user on to enrolment.
    r = client.get("/mfa", follow_redirects=False)
    if enrolled:
        assert r.status_code == 200 and 'action="/mfa"' in r.text
    else:
        assert r.status_code == 303 and r.headers["location"] == "/mfa/enrol"
    assert [s.stage.value for s in sessions_of(components, user.id)] == ["mfa" if enrolled else "enrol"]
    assert user_row(components, user.id).totp_last_step is None


def test_new_user_enrols_and_changes_password_through_the_api(client, factory, components):
    user = factory.user("practice_staff", enrolled=False, must_change_password=True)
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert r.status_code == 200 and r.json()["stage"] == "enrol"
    # The answer says at once that a new password comes after enrolment (docs/api.md).
    assert r.json()["must_change_password"] is True
    csrf = r.json()["csrf_token"]
    # Not the code step: there is no secret yet.
    assert_error(
        client.post("/api/v1/auth/mfa", json={"code": "123456"}, headers={"X-CSRF-Token": csrf}), 403, "wrong_stage"
    )

    r = client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    body = r.json()
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert body["otpauth_uri"].startswith("otpauth://totp/") and f"secret={secret}" in body["otpauth_uri"]
    assert body["qr_svg_data_uri"].startswith("data:image/svg+xml")
    row = user_row(components, user.id)
    assert row.totp_secret_sealed is not None and row.totp_enrolled_at is None
    assert secret.encode() not in row.totp_secret_sealed

    good = totp.code_at(secret, clock.now())
    wrong = f"{(int(good) + 500) % 1_000_000:06d}"
    r = client.post("/api/v1/auth/mfa/enrol/confirm", json={"code": wrong}, headers={"X-CSRF-Token": csrf})
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.mfa.enrol_failed").details == {"reason": "bad_code"}
    assert user_row(components, user.id).totp_enrolled_at is None
    assert recovery_rows(components, user.id) == []

    before = client.cookies.get("phigate_session")
    r = client.post("/api/v1/auth/mfa/enrol/confirm", json={"code": good}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and all(re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", c) for c in codes)
    assert client.cookies.get("phigate_session") != before  # rotated after the second factor
    assert last_event(components, "auth.mfa.enrolled").target_id == user.id
    assert last_event(components, "auth.login.succeeded").details == {"second_factor": "totp"}
    assert user_row(components, user.id).totp_enrolled_at is not None
    assert len(recovery_rows(components, user.id)) == 10
    # The old half-authenticated cookie is gone.
    assert [s.stage.value for s in sessions_of(components, user.id)] == ["full"]

    # Enrolled but still on the one-time password: only /me and the password change.
    me = client.get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["must_change_password"] is True
    csrf = me.json()["csrf_token"]
    assert_error(client.get("/api/v1/auth/tokens"), 403, "password_change_required")
    assert_error(
        client.post("/api/v1/auth/recovery-codes", json={"code": "123456"}, headers={"X-CSRF-Token": csrf}),
        403,
        "password_change_required",
    )
    assert last_event(components, "request.refused").details["reason"] == "password_change_required"
    # Enrolling again is refused.
    assert_error(client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": csrf}), 403, "wrong_stage")

    new_password = "a brand new passphrase for me"
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": user.password, "new_password": new_password},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 204
    assert last_event(components, "auth.password.changed").target_id == user.id
    assert client.get("/api/v1/auth/tokens").status_code == 200
    row = user_row(components, user.id)
    assert row.must_change_password is False and row.password_hash.startswith("$argon2id$")


def test_enrolment_secret_cannot_be_swapped_after_confirmation(client, factory, components):
    user = factory.user("practice_staff", enrolled=False)
    csrf = password_stage(client, user)
    secret = client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": csrf}).json()["secret"]
    r = client.post(
        "/api/v1/auth/mfa/enrol/confirm",
        json={"code": totp.code_at(secret, clock.now())},
        headers={"X-CSRF-Token": csrf},
    )
    assert r.status_code == 200
    sealed = user_row(components, user.id).totp_secret_sealed
    csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    assert_error(client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": csrf}), 403, "wrong_stage")
    assert user_row(components, user.id).totp_secret_sealed == sealed


def _secret_from(html: str) -> str:
    m = re.search(r'<code id="totp-secret">([^<]+)</code>', html)
    assert m
    return m.group(1).replace(" ", "")


def test_new_user_enrols_through_the_pages(client, factory, components):
    user = factory.user("biller", enrolled=False, must_change_password=True)
    r = page_login(client, user.username, user.password)
    assert r.status_code == 303 and r.headers["location"] == "/mfa/enrol"
    assert "phigate_session" in r.headers["set-cookie"]
    # Anything else sends the browser back to the step it has to finish.
    assert client.get("/home", follow_redirects=False).headers["location"] == "/mfa"

    page = client.get("/mfa/enrol")
    assert page.status_code == 200
    secret = _secret_from(page.text)
    assert 'src="data:image/svg+xml' in page.text
    assert _secret_from(client.get("/mfa/enrol").text) == secret  # reloading keeps the pending secret
    csrf = csrf_from(page.text)

    good = totp.code_at(secret, clock.now())
    r = client.post("/mfa/enrol", data={"code": "000000" if good != "000000" else "111111", "csrf_token": csrf})
    assert r.status_code == 401 and "not correct" in r.text and 'id="totp-secret"' in r.text
    assert last_event(components, "auth.mfa.enrol_failed").details == {"reason": "bad_code"}

    r = client.post("/mfa/enrol", data={"code": f"{good[:3]} {good[3:]}", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 200 and 'id="recovery-codes"' in r.text
    assert len(re.findall(r"<li><code>[a-z2-9-]{19}</code></li>", r.text)) == 10
    assert 'href="/password"' in r.text

    assert client.get("/home", follow_redirects=False).headers["location"] == "/password"
    form = client.get("/password")
    assert form.status_code == 200 and "issued by an administrator" in form.text
    csrf = csrf_from(form.text)
    r = client.post(
        "/password",
        data={
            "current_password": user.password,
            "new_password": "x" * 12 + "differs",
            "confirm_password": "y" * 20,
            "csrf_token": csrf,
        },
    )
    assert r.status_code == 422 and "differ" in r.text
    r = client.post(
        "/password",
        data={
            "current_password": user.password,
            "new_password": "short",
            "confirm_password": "short",
            "csrf_token": csrf,
        },
    )
    assert r.status_code == 422 and "at least 12" in r.text
    assert user_row(components, user.id).must_change_password is True

    new = "billing is my favourite pastime"
    r = client.post(
        "/password",
        data={"current_password": user.password, "new_password": new, "confirm_password": new, "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/home"
    home = client.get("/home")
    assert home.status_code == 200 and "Welcome, Test User" in home.text
    assert user_row(components, user.id).must_change_password is False
    # The new password works for a fresh sign-in, the one-time one does not.
    client.cookies.clear()
    assert page_login(client, user.username, user.password).status_code == 401
    assert page_login(client, user.username, new).headers["location"] == "/mfa"


def test_page_login_needs_its_double_submit_token(client, factory, components):
    user = factory.user("practice_staff")
    form = client.get("/login")
    assert "phigate_login_csrf" in form.headers["set-cookie"]
    assert "HttpOnly" in form.headers["set-cookie"] and "SameSite=strict" in form.headers["set-cookie"]
    token = csrf_from(form.text)
    data = {"username": user.username, "password": user.password}

    r = client.post("/login", data={**data, "csrf_token": token + "x"}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    client.cookies.delete("phigate_login_csrf", path="/login")
    r = client.post("/login", data={**data, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    r = client.post("/login", data=data, follow_redirects=False)
    assert r.status_code == 403
    # Nobody signed in: the address window records the first refusal and counts the others.
    assert [e.details["reason"] for e in events(components, "request.refused")] == ["csrf_failed"]
    row = address_row(components, "testclient")
    assert (row.failures, row.unrecorded) == (3, 2)
    assert sessions_of(components, user.id) == []
    # No password was even checked.
    assert events(components, "auth.login.password_accepted") == []
    assert events(components, "auth.login.failed") == []


def test_page_login_errors_look_the_same_for_every_refusal(client, factory, components):
    user = factory.user("practice_staff")
    wrong = page_login(client, user.username, "wrong wrong wrong")
    unknown = page_login(client, "no-such-user", "wrong wrong wrong")
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda html: re.sub(r'(value|name="username")="[^"]*"', "", html)  # noqa: E731
    assert strip(wrong.text) == strip(unknown.text)
    assert "The username, password or code is not correct" in wrong.text


def test_page_mfa_wrong_and_replayed_codes(client, factory, components):
    user = factory.user("practice_staff")
    assert page_login(client, user.username, user.password).headers["location"] == "/mfa"
    page = client.get("/mfa")
    csrf = csrf_from(page.text)
    r = client.post("/mfa", data={"code": "12345", "csrf_token": csrf})
    assert r.status_code == 401 and "not correct" in r.text
    r = client.post("/mfa", data={"code": user.code(), "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/home"
    client.cookies.clear()
    page_login(client, user.username, user.password)
    csrf = csrf_from(client.get("/mfa").text)
    r = client.post("/mfa", data={"code": f" {user.code()} ", "csrf_token": csrf})
    assert r.status_code == 401
    assert [e.details["reason"] for e in events(components, "auth.mfa.failed")] == ["bad_code", "replayed_code"]
