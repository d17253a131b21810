"""Personal API tokens: TOTP re-entry, shown once and stored hashed, Bearer use, revocation,
expiry on the fake clock, no token minting by tokens, other users' ids answer like unknown ones."""

from __future__ import annotations

import hashlib

from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.gateway.authkit import address_row, assert_error, event_count, events, last_event, tokens_of

TOKENS = "/api/v1/auth/tokens"


def _create(client, csrf, code, name="practice system", **extra):
    return client.post(TOKENS, json={"name": name, "code": code, **extra}, headers={"X-CSRF-Token": csrf})


def _bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_creation_needs_a_valid_fresh_totp_code(client, factory, components, login, fake_clock):
    user = factory.user("practice_staff")
    csrf = login(client, user, fake_clock)
    wrong = f"{(int(user.code()) + 7) % 1_000_000:06d}"
    assert_error(_create(client, csrf, wrong), 401, "login_failed")
    ev = last_event(components, "auth.reauth.failed")
    assert ev.details == {"reason": "bad_code"} and ev.actor_user_id == user.id
    assert tokens_of(components, user.id) == []
    assert events(components, "auth.api_token.created") == []


def test_token_is_shown_once_stored_hashed_and_works_as_bearer(client, factory, components, login, fake_clock):
    user = factory.user("practice_approver")
    csrf = login(client, user, fake_clock)
    r = _create(client, csrf, user.code(), name="  EHR   export  ", days=7)
    assert r.status_code == 201
    body = r.json()
    raw = body["token"]
    assert raw.startswith("phg_") and len(raw) > 40
    assert body["name"] == "EHR export" and body["prefix"] == raw[:10]
    ev = last_event(components, "auth.api_token.created")
    assert ev.target_id == body["id"] and ev.details == {"days": 7} and ev.actor_user_id == user.id

    (row,) = tokens_of(components, user.id)
    assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    with components.db.sessions() as s:
        dump = " ".join(str(v) for v in s.execute(text("SELECT * FROM api_tokens")).one())
        s.rollback()
    assert raw not in dump and raw[10:] not in dump
    listed = client.get(TOKENS).json()
    assert [t["id"] for t in listed] == [body["id"]] and "token" not in listed[0]

    with TestClient(client.app) as api:
        me = api.get("/api/v1/auth/me", headers=_bearer(raw))
        assert me.status_code == 200 and me.json()["username"] == user.username
        assert me.json()["csrf_token"] is None
        assert "set-cookie" not in me.headers
        # A token cannot mint tokens, even with a valid code.
        fake_clock.advance(seconds=30)
        r = api.post(TOKENS, json={"name": "child", "code": user.code()}, headers=_bearer(raw))
        assert_error(r, 403, "token_cannot_create_token")
    assert len(tokens_of(components, user.id)) == 1
    assert tokens_of(components, user.id)[0].last_used_at is not None


def test_revoked_expired_and_forged_tokens_are_refused(client, factory, components, login, fake_clock):
    user = factory.user("biller")
    csrf = login(client, user, fake_clock)
    short = _create(client, csrf, user.code(), name="short", days=1).json()
    fake_clock.advance(seconds=30)
    revoked = _create(client, csrf, user.code(), name="revoked").json()
    assert client.delete(f"{TOKENS}/{revoked['id']}", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert last_event(components, "auth.api_token.revoked").target_id == revoked["id"]
    # Revoking twice answers like an unknown id.
    assert_error(client.delete(f"{TOKENS}/{revoked['id']}", headers={"X-CSRF-Token": csrf}), 404, "not_found")

    with TestClient(client.app) as api:
        assert_error(api.get("/api/v1/auth/me", headers=_bearer(revoked["token"])), 401, "invalid_token")
        assert api.get("/api/v1/auth/me", headers=_bearer(short["token"])).status_code == 200
        fake_clock.advance(days=1)
        assert_error(api.get("/api/v1/auth/me", headers=_bearer(short["token"])), 401, "invalid_token")
        for forged in ("phg_" + "A" * 43, "garbage", short["token"] + "x", "phg_" + "x" * 200):
            assert_error(api.get("/api/v1/auth/me", headers=_bearer(forged)), 401, "invalid_token")
    # Six refusals over two address windows (the clock moved a day): each window records its first
    # refusal as itself and counts the rest (gateway/auth/throttle.py).
    assert len(events(components, "auth.api_token.rejected")) == 2
    assert address_row(components, "testclient").unrecorded == 4


def test_revoking_another_users_token_looks_like_an_unknown_id(app, client, factory, components, login, fake_clock):
    owner = factory.user("practice_staff")
    intruder = factory.user("practice_staff")
    csrf = login(client, owner, fake_clock)
    token = _create(client, csrf, owner.code()).json()
    with TestClient(app) as other:
        other_csrf = login(other, intruder, fake_clock)
        theirs = other.delete(f"{TOKENS}/{token['id']}", headers={"X-CSRF-Token": other_csrf})
        unknown = other.delete(f"{TOKENS}/nosuchtoken0000", headers={"X-CSRF-Token": other_csrf})
    assert_error(theirs, 404, "not_found")
    assert theirs.json() == unknown.json()
    assert tokens_of(components, owner.id)[0].revoked_at is None
    assert events(components, "auth.api_token.revoked") == []
    refused = events(components, "request.refused", actor_user_id=intruder.id)
    assert [e.details["reason"] for e in refused] == ["not_found", "not_found"]
    assert client.get("/api/v1/auth/me", headers=_bearer(token["token"])).status_code == 200


def test_token_lifetime_and_name_are_bounded(client, factory, components, login, fake_clock, settings):
    user = factory.user("practice_staff")
    csrf = login(client, user, fake_clock)
    n = event_count(components)
    assert_error(_create(client, csrf, user.code(), days=settings.api_token_max_days + 1), 422, "token_lifetime")
    assert_error(_create(client, csrf, user.code(), days=367), 422, "invalid_input")
    assert_error(_create(client, csrf, user.code(), days=0), 422, "invalid_input")
    assert_error(_create(client, csrf, user.code(), name="n" * 101), 422, "invalid_input")
    assert_error(_create(client, csrf, user.code(), name="   "), 422, "invalid_name")
    assert_error(_create(client, csrf, user.code(), scope="admin"), 422, "invalid_input")
    assert tokens_of(components, user.id) == []
    assert len(events(components)) > n
    assert {e.details.get("reason") for e in events(components, "request.refused")} >= {"invalid_input", "invalid_name"}


def test_token_of_a_user_who_must_change_password_reaches_only_me(client, factory, components, login, fake_clock):
    from tests.gateway.authkit import update_user

    user = factory.user("practice_staff")
    csrf = login(client, user, fake_clock)
    raw = _create(client, csrf, user.code()).json()["token"]
    update_user(components, user.id, must_change_password=True)
    with TestClient(client.app) as api:
        assert api.get("/api/v1/auth/me", headers=_bearer(raw)).status_code == 200
        assert_error(api.get(TOKENS, headers=_bearer(raw)), 403, "password_change_required")
