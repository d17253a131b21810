"""Administration (organisations and users) through the API and the admin pages, and the
password policy."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gateway.audit.models import Severity
from tests.gateway.authkit import assert_error, csrf_from, event_count, events, last_event, sessions_of, user_row

NON_ADMIN = ["practice_staff", "practice_approver", "biller", "auditor"]


@pytest.mark.parametrize("role", NON_ADMIN)
def test_only_administrators_reach_administration(client, factory, components, login, role):
    user = factory.user(role)
    target = factory.user("practice_staff")
    csrf = login(client, user)
    h = {"X-CSRF-Token": csrf}
    calls = [
        client.get("/api/v1/orgs"),
        client.post("/api/v1/orgs", json={"name": "Sneaky", "kind": "vendor"}, headers=h),
        client.get("/api/v1/users"),
        client.post(
            "/api/v1/users",
            json={
                "org_id": target.org_id,
                "username": "sneaky",
                "full_name": "S",
                "email": "s@example.invalid",
                "role": "admin",
            },
            headers=h,
        ),
        client.post(f"/api/v1/users/{target.id}/disable", headers=h),
        client.post(f"/api/v1/users/{target.id}/enable", headers=h),
        client.post(f"/api/v1/users/{target.id}/role", json={"role": "practice_approver"}, headers=h),
    ]
    for r in calls:
        assert_error(r, 403, "forbidden")
    for path in ("/admin/orgs", "/admin/users"):
        r = client.get(path)
        assert r.status_code == 403 and "forbidden" in r.text
    for path, data in (
        ("/admin/orgs", {"name": "Sneaky", "kind": "vendor"}),
        (f"/admin/users/{target.id}/disable", {}),
        (f"/admin/users/{target.id}/reset-password", {}),
    ):
        r = client.post(path, data={**data, "csrf_token": csrf})
        assert r.status_code == 403
    refused = events(components, "request.refused", actor_user_id=user.id)
    assert len(refused) == len(calls) + 5 and {e.details["reason"] for e in refused} == {"forbidden"}
    assert (
        user_row(components, target.id).active is True
        and user_row(components, target.id).role.value == "practice_staff"
    )
    assert events(components, "admin.org.created") == [] or all(
        e.actor_user_id != user.id for e in events(components, "admin.org.created")
    )
    assert len(sessions_of(components, target.id)) == 0


@pytest.fixture
def admin_client(client, factory, login):
    admin = factory.user("admin")
    csrf = login(client, admin)
    client.headers["X-CSRF-Token"] = csrf
    client.admin = admin
    return client


def test_admin_creates_organisations_and_users_with_events(admin_client, components):
    c = admin_client
    r = c.post("/api/v1/orgs", json={"name": "  Riverside   Clinic ", "kind": "practice"})
    assert r.status_code == 201
    org = r.json()
    assert org["name"] == "Riverside Clinic" and org["kind"] == "practice"
    ev = last_event(components, "admin.org.created")
    assert ev.target_id == org["id"] and ev.actor_user_id == c.admin.id and ev.details == {"kind": "practice"}
    assert_error(c.post("/api/v1/orgs", json={"name": "Riverside Clinic", "kind": "vendor"}), 409, "org_exists")
    assert_error(c.post("/api/v1/orgs", json={"name": "X" * 201, "kind": "vendor"}), 422, "invalid_input")
    assert_error(c.post("/api/v1/orgs", json={"name": "Acme", "kind": "hospital"}), 422, "invalid_input")
    assert org["id"] in {o["id"] for o in c.get("/api/v1/orgs").json()}

    r = c.post(
        "/api/v1/users",
        json={
            "org_id": org["id"],
            "username": "Front.Desk",
            "full_name": "Front Desk",
            "email": "desk@example.invalid",
            "role": "practice_staff",
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert body["username"] == "front.desk" and body["must_change_password"] is True
    assert body["mfa_enrolled"] is False and len(body["one_time_password"]) >= 20
    ev = last_event(components, "admin.user.created")
    assert ev.target_id == body["id"] and ev.details == {"role": "practice_staff"} and ev.actor_user_id == c.admin.id
    row = user_row(components, body["id"])
    assert row.password_hash.startswith("$argon2id$") and body["one_time_password"] not in row.password_hash
    assert_error(
        c.post(
            "/api/v1/users",
            json={
                "org_id": org["id"],
                "username": "front.desk",
                "full_name": "D",
                "email": "d@example.invalid",
                "role": "practice_staff",
            },
        ),
        409,
        "username_taken",
    )
    assert_error(
        c.post(
            "/api/v1/users",
            json={
                "org_id": "nope",
                "username": "someone",
                "full_name": "D",
                "email": "d@example.invalid",
                "role": "practice_staff",
            },
        ),
        404,
        "org_not_found",
    )
    listed = c.get("/api/v1/users", params={"org_id": org["id"]}).json()
    assert [u["username"] for u in listed] == ["front.desk"] and "password_hash" not in listed[0]


@pytest.mark.parametrize(
    "role, kind",
    [("biller", "practice"), ("practice_staff", "vendor"), ("admin", "practice"), ("practice_approver", "operator")],
)
def test_role_must_match_the_organisation_kind(admin_client, factory, components, role, kind):
    org = factory.org(kind)
    n = event_count(components)
    r = admin_client.post(
        "/api/v1/users",
        json={"org_id": org.id, "username": "mismatch", "full_name": "M", "email": "m@example.invalid", "role": role},
    )
    assert_error(r, 422, "role_org_mismatch")
    new = events(components)[n:]
    assert [(e.action, e.details["reason"]) for e in new] == [("request.refused", "role_org_mismatch")]
    assert events(components, "admin.user.created") == [] or all(
        e.details["role"] != role or e.target_org_id != org.id for e in events(components, "admin.user.created")
    )


def test_role_change_to_a_mismatched_role_is_refused(admin_client, factory, components):
    user = factory.user("biller")
    r = admin_client.post(f"/api/v1/users/{user.id}/role", json={"role": "practice_staff"})
    assert_error(r, 422, "role_org_mismatch")
    assert user_row(components, user.id).role.value == "biller"
    assert events(components, "admin.user.role_changed") == []


def test_disable_enable_and_role_change_events(admin_client, factory, components):
    user = factory.user("practice_staff")
    c = admin_client
    assert c.post(f"/api/v1/users/{user.id}/disable").json()["active"] is False
    ev = last_event(components, "admin.user.disabled")
    assert ev.severity == Severity.warning and ev.target_id == user.id and ev.actor_user_id == c.admin.id
    assert c.post(f"/api/v1/users/{user.id}/enable").json()["active"] is True
    assert last_event(components, "admin.user.enabled").target_id == user.id
    assert c.post(f"/api/v1/users/{user.id}/role", json={"role": "auditor"}).json()["role"] == "auditor"
    assert last_event(components, "admin.user.role_changed").details == {"from": "practice_staff", "to": "auditor"}
    assert_error(c.post("/api/v1/users/nosuchuser/disable"), 404, "user_not_found")
    assert_error(c.post(f"/api/v1/users/{user.id}/role", json={"role": "superuser"}), 422, "invalid_input")


def test_admin_cannot_disable_or_demote_self(admin_client, components):
    c = admin_client
    assert_error(c.post(f"/api/v1/users/{c.admin.id}/disable"), 422, "cannot_disable_self")
    assert_error(c.post(f"/api/v1/users/{c.admin.id}/role", json={"role": "auditor"}), 422, "cannot_change_own_role")
    row = user_row(components, c.admin.id)
    assert row.active and row.role.value == "admin"
    assert events(components, "admin.user.disabled") == []
    assert c.get("/api/v1/auth/me").status_code == 200


def test_admin_pages_create_org_and_user_and_disable(client, factory, components, login):
    admin = factory.user("admin")
    login(client, admin)
    page = client.get("/admin/orgs")
    assert page.status_code == 200
    csrf = csrf_from(page.text)
    r = client.post(
        "/admin/orgs", data={"name": "Lakeside Billing", "kind": "vendor", "csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    org_id = last_event(components, "admin.org.created").target_id
    r = client.post("/admin/orgs", data={"name": "Bad", "kind": "hospital", "csrf_token": csrf})
    assert r.status_code == 422 and "Choose practice, vendor or operator" in r.text

    r = client.post(
        "/admin/users",
        data={
            "org_id": org_id,
            "username": "new.biller",
            "full_name": "New Biller",
            "email": "nb@example.invalid",
            "role": "biller",
            "csrf_token": csrf,
        },
    )
    assert r.status_code == 200 and "new.biller" in r.text
    created = last_event(components, "admin.user.created")
    assert created.actor_user_id == admin.id
    r = client.post(
        "/admin/users",
        data={
            "org_id": org_id,
            "username": "wrong.role",
            "full_name": "W",
            "email": "w@example.invalid",
            "role": "practice_staff",
            "csrf_token": csrf,
        },
    )
    assert r.status_code == 422 and "belongs to a practice organisation" in r.text
    # One click is not enough: without the confirmation step the answer is a page asking for it.
    r = client.post(f"/admin/users/{created.target_id}/disable", data={"csrf_token": csrf})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and "new.biller" in r.text
    assert user_row(components, created.target_id).active is True
    r = client.post(
        f"/admin/users/{created.target_id}/disable",
        data={"csrf_token": csrf, "confirmed": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert user_row(components, created.target_id).active is False
    r = client.post(f"/admin/users/{admin.id}/disable", data={"csrf_token": csrf, "confirmed": "yes"})
    assert r.status_code == 422 and "cannot disable your own account" in r.text
    # Without the form token nothing happens.
    r = client.post(f"/admin/users/{created.target_id}/enable", data={})
    assert r.status_code == 403
    assert user_row(components, created.target_id).active is False


# -- passwords --------------------------------------------------------------------


def _common_long_password() -> str:
    from gateway.auth.passwords import _common_passwords

    return sorted(p for p in _common_passwords() if 12 <= len(p) <= 128 and p.isascii())[0]


@pytest.mark.parametrize(
    "new, code",
    [
        ("short pass", "password_too_short"),
        ("p" * 129, "password_too_long"),
        ("COMMON", "password_common"),
        ("my name is {username} ok", "password_contains_username"),
    ],
)
def test_password_policy(client, factory, components, login, new, code):
    user = factory.user("practice_staff")
    csrf = login(client, user)
    before = user_row(components, user.id).password_hash
    new = _common_long_password().upper() if new == "COMMON" else new.format(username=user.username.upper())
    r = client.post(
        "/api/v1/auth/password",
        json={"current_password": user.password, "new_password": new},
        headers={"X-CSRF-Token": csrf},
    )
    assert_error(r, 422, code)
    assert user_row(components, user.id).password_hash == before
    ev = last_event(components, "request.refused")
    assert ev.details["reason"] == code and ev.actor_user_id == user.id
    assert events(components, "auth.password.changed") == []


def test_password_change_with_a_wrong_current_password(client, factory, components, login):
    user = factory.user("practice_staff")
    csrf = login(client, user)
    r = client.post(
        "/api/v1/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": "not it at all", "new_password": "a perfectly fine passphrase"},
    )
    assert_error(r, 422, "bad_current_password")
    assert [e.details for e in events(components, "auth.password.change_failed")] == [{"reason": "bad_password"}]
    assert events(components, "request.refused") == []  # recorded once, by the service
    assert user_row(components, user.id).failed_attempts == 1
    r = client.post(
        "/api/v1/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": user.password, "new_password": user.password},
    )
    assert_error(r, 422, "password_unchanged")


def test_passwords_are_stored_as_argon2id(client, factory, components, login):
    user = factory.user("practice_staff")
    row = user_row(components, user.id)
    assert row.password_hash.startswith("$argon2id$v=19$") and user.password not in row.password_hash
    csrf = login(client, user)
    r = client.post(
        "/api/v1/auth/password",
        headers={"X-CSRF-Token": csrf},
        json={"current_password": user.password, "new_password": "Ünïcödé pässphrase 2026"},
    )
    assert r.status_code == 204
    row = user_row(components, user.id)
    assert row.password_hash.startswith("$argon2id$") and row.password_changed_at is not None
    # NFKC-normalised: the composed and decomposed spellings are the same password.
    import unicodedata

    with TestClient(client.app) as other:
        r = other.post(
            "/api/v1/auth/login",
            json={"username": user.username, "password": unicodedata.normalize("NFD", "Ünïcödé pässphrase 2026")},
        )
        assert r.status_code == 200
