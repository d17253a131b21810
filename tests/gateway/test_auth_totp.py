"""Second factor: wrong and replayed TOTP codes (same code, padded, older step, two parallel
requests), recovery codes, their regeneration, and the sealed TOTP secret."""

from __future__ import annotations

import threading

import pytest
from fastapi.testclient import TestClient

from crypto import DecryptionError
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor
from gateway.auth import totp
from gateway.auth.models import SessionStage
from gateway.errors import LoginFailed
from tests.gateway.authkit import (
    assert_error,
    events,
    last_event,
    password_stage,
    recovery_rows,
    sessions_of,
    update_user,
    user_row,
)

MFA = "/api/v1/auth/mfa"


def _mfa(client, csrf, code):
    return client.post(MFA, json={"code": code}, headers={"X-CSRF-Token": csrf})


def _stages(components, user_id):
    return sorted(s.stage.value for s in sessions_of(components, user_id))


def test_wrong_code_is_refused_and_the_session_stays_half_authenticated(client, factory, components):
    user = factory.user("practice_staff")
    csrf = password_stage(client, user)
    wrong = f"{(int(user.code()) + 1) % 1_000_000:06d}"
    r = _mfa(client, csrf, wrong)
    assert_error(r, 401, "login_failed")
    ev = last_event(components, "auth.mfa.failed")
    assert ev.outcome == Outcome.failure and ev.details == {"reason": "bad_code"}
    assert ev.actor_user_id == user.id and ev.target_id == user.id
    assert _stages(components, user.id) == ["mfa"]
    row = user_row(components, user.id)
    assert row.failed_attempts == 1 and row.totp_last_step is None and row.last_login_at is None
    assert events(components, "auth.login.succeeded") == []
    # The right code still works afterwards, and rotates the session id.
    old = client.cookies.get("phigate_session")
    r = _mfa(client, csrf, user.code())
    assert r.status_code == 200 and r.json()["stage"] == "full"
    assert client.cookies.get("phigate_session") != old
    assert _stages(components, user.id) == ["full"]


def _accept(client, user, code):
    csrf = password_stage(client, user)
    r = _mfa(client, csrf, code)
    assert r.status_code == 200, r.text
    client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": r.json()["csrf_token"]})


@pytest.mark.parametrize(
    "variant",
    [
        lambda c: c,
        lambda c: f"{c[:3]} {c[3:]}",
        lambda c: f" {c} ",
        lambda c: f"{c[:3]}-{c[3:]}",
    ],
)
def test_a_code_is_accepted_once_in_any_spelling(client, factory, components, variant):
    user = factory.user("biller")
    code = user.code()
    _accept(client, user, code)
    csrf = password_stage(client, user)
    r = _mfa(client, csrf, variant(code))
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "replayed_code"}
    assert _stages(components, user.id) == ["mfa"]
    assert len(events(components, "auth.login.succeeded")) == 1


def test_an_older_step_is_refused_after_a_newer_one_was_accepted(client, factory, components, fake_clock):
    user = factory.user("practice_staff")
    _accept(client, user, user.code())
    fake_clock.advance(seconds=30)
    previous = user.code()
    fake_clock.advance(seconds=30)
    _accept(client, user, user.code())
    # `previous` (30-60 s old) is inside the drift window and was never used, but is older
    # than the last accepted step, so it must be refused.
    csrf = password_stage(client, user)
    assert_error(_mfa(client, csrf, previous), 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "replayed_code"}


def test_a_future_step_within_drift_blocks_the_current_one(client, factory, components, fake_clock):
    user = factory.user("practice_staff")
    now_code = user.code()
    fake_clock.advance(seconds=30)
    ahead = user.code()
    fake_clock.advance(seconds=-30)
    _accept(client, user, ahead)
    csrf = password_stage(client, user)
    assert_error(_mfa(client, csrf, now_code), 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "replayed_code"}


def test_codes_outside_the_drift_window_are_wrong_codes(client, factory, components, fake_clock):
    user = factory.user("practice_staff")
    old = user.code()
    fake_clock.advance(seconds=60)
    csrf = password_stage(client, user)
    assert_error(_mfa(client, csrf, old), 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "bad_code"}
    for junk in ("abcdef", "12345", "1234567", "１２３４５６"):
        assert_error(_mfa(client, csrf, junk), 401, "login_failed")
    assert user_row(components, user.id).totp_last_step is None


def test_two_parallel_requests_with_one_code_let_exactly_one_through(app, factory, components):
    user = factory.user("practice_approver")
    clients = [TestClient(app) for _ in range(2)]
    try:
        tokens = [password_stage(c, user) for c in clients]
        code = user.code()
        barrier = threading.Barrier(2)
        results = [None, None]

        def attempt(i):
            barrier.wait()
            results[i] = _mfa(clients[i], tokens[i], code)

        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(r.status_code for r in results) == [200, 401]
        loser = next(r for r in results if r.status_code == 401)
        assert loser.json()["error"]["code"] == "login_failed"
        assert len(events(components, "auth.login.succeeded")) == 1
        assert [e.details["reason"] for e in events(components, "auth.mfa.failed")] == ["replayed_code"]
        assert _stages(components, user.id) == ["full", "mfa"]
    finally:
        for c in clients:
            c.close()


@pytest.mark.parametrize("attempts", [2, 4])
def test_check_second_factor_is_atomic_across_database_sessions(components, factory, attempts):
    """Service level, one DB session per thread: of N simultaneous uses of a code exactly one wins."""
    from gateway.auth.service import check_second_factor
    from gateway.users.models import User

    user = factory.user("biller")
    code = user.code()
    barrier = threading.Barrier(attempts)
    outcomes = []
    lock = threading.Lock()

    def attempt():
        with components.db.sessions() as db:
            u = db.get(User, user.id)
            db.commit()  # release the read transaction (SQLite takes the write lock on BEGIN)
            barrier.wait()
            try:
                method = check_second_factor(db, components.settings, components.keys, u, code, Actor(ip="192.0.2.1"))
                db.commit()
                result = method
            except LoginFailed:
                result = "refused"
            except Exception as exc:  # noqa: BLE001 - any other error is the bug
                result = f"{type(exc).__name__}: {exc}"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["refused"] * (attempts - 1) + ["totp"]
    assert [e.details["reason"] for e in events(components, "auth.mfa.failed")] == ["replayed_code"] * (attempts - 1)
    assert user_row(components, user.id).totp_last_step == int(user.clock.current.timestamp()) // 30


def _regenerate(client, csrf, code):
    return client.post("/api/v1/auth/recovery-codes", json={"code": code}, headers={"X-CSRF-Token": csrf})


def test_recovery_codes_work_once_and_reuse_is_recorded(client, factory, components, login, fake_clock):
    user = factory.user("practice_staff")
    csrf = login(client, user, fake_clock)
    r = _regenerate(client, csrf, user.code())
    assert r.status_code == 200
    codes = r.json()["recovery_codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    # Stored hashed only.
    stored = recovery_rows(components, user.id)
    assert len(stored) == 10
    assert not {c.replace("-", "") for c in codes} & {row.code_hash for row in stored}
    regen = last_event(components, "auth.recovery_codes.regenerated")
    assert regen.target_id == user.id and regen.actor_user_id == user.id
    client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})

    mfa_csrf = password_stage(client, user)
    r = _mfa(client, mfa_csrf, codes[3].upper())  # case and dashes do not matter
    assert r.status_code == 200 and r.json()["stage"] == "full"
    used = last_event(components, "auth.recovery_code.used")
    assert used.severity == Severity.warning and used.details == {"codes_left": True}
    assert last_event(components, "auth.login.succeeded").details == {"second_factor": "recovery"}
    assert sum(1 for row in recovery_rows(components, user.id) if row.used_at) == 1
    client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": r.json()["csrf_token"]})

    mfa_csrf = password_stage(client, user)
    r = _mfa(client, mfa_csrf, codes[3])
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "reused_recovery_code"}
    assert _stages(components, user.id) == ["mfa"]
    assert sum(1 for row in recovery_rows(components, user.id) if row.used_at) == 1


def test_regeneration_needs_a_fresh_totp_code_and_invalidates_old_codes(client, factory, components, fake_clock):
    user = factory.user("practice_staff")
    login_code = user.code()
    csrf = password_stage(client, user)
    csrf = _mfa(client, csrf, login_code).json()["csrf_token"]
    # The code that just signed in cannot be replayed as re-authentication.
    assert_error(_regenerate(client, csrf, login_code), 401, "login_failed")
    assert last_event(components, "auth.reauth.failed").details == {"reason": "replayed_code"}
    fake_clock.advance(seconds=30)
    first = _regenerate(client, csrf, user.code()).json()["recovery_codes"]

    # A recovery code is not a re-authentication; nor is a wrong code. Old codes survive both.
    fake_clock.advance(seconds=30)
    assert_error(_regenerate(client, csrf, first[0]), 401, "login_failed")
    assert last_event(components, "auth.reauth.failed").details == {"reason": "bad_code"}
    assert_error(_regenerate(client, csrf, "000000" if user.code() != "000000" else "111111"), 401, "login_failed")
    assert all(row.used_at is None for row in recovery_rows(components, user.id))
    assert len(events(components, "auth.recovery_codes.regenerated")) == 1

    second = _regenerate(client, csrf, user.code()).json()["recovery_codes"]
    assert not set(first) & set(second)
    client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    mfa_csrf = password_stage(client, user)
    assert_error(_mfa(client, mfa_csrf, first[1]), 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "bad_code"}
    assert _mfa(client, mfa_csrf, second[1]).status_code == 200


def test_totp_secret_is_sealed_and_bound_to_its_user(client, factory, components):
    from sqlalchemy import text

    from gateway.keys import open_totp_secret

    a = factory.user("practice_staff")
    b = factory.user("practice_staff")
    with components.db.sessions() as s:
        sealed_a = bytes(s.execute(text("SELECT totp_secret_sealed FROM users WHERE id = :id"), {"id": a.id}).scalar())
        s.rollback()
    import base64

    raw = base64.b32decode(a.totp_secret)
    assert a.totp_secret.encode() not in sealed_a and raw not in sealed_a
    assert a.totp_secret.lower().encode() not in sealed_a
    assert open_totp_secret(components.keys, a.id, sealed_a) == a.totp_secret
    with pytest.raises(DecryptionError):
        open_totp_secret(components.keys, b.id, sealed_a)

    # Copy A's sealed secret onto B's row: B cannot sign in with A's codes.
    update_user(components, b.id, totp_secret_sealed=sealed_a)
    csrf = password_stage(client, b)
    r = _mfa(client, csrf, a.code())
    assert_error(r, 401, "login_failed")
    ev = last_event(components, "auth.mfa.failed")
    assert ev.details == {"reason": "secret_unreadable"} and ev.target_id == b.id
    assert _stages(components, b.id) == ["mfa"]


def test_half_authenticated_session_cannot_use_enrolment_and_wrong_stage_is_refused(client, factory, components):
    user = factory.user("practice_staff")
    csrf = password_stage(client, user)
    r = client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": csrf})
    assert_error(r, 403, "wrong_stage")
    r = client.post("/api/v1/auth/mfa/enrol/confirm", json={"code": user.code()}, headers={"X-CSRF-Token": csrf})
    assert_error(r, 403, "wrong_stage")
    assert user_row(components, user.id).totp_last_step is None
    assert [e.details["reason"] for e in events(components, "request.refused")] == ["wrong_stage", "wrong_stage"]
    # After completing, /mfa is not a second chance to burn codes.
    full = _mfa(client, csrf, user.code()).json()["csrf_token"]
    assert_error(_mfa(client, full, user.code()), 403, "wrong_stage")
    assert SessionStage.full.value in _stages(components, user.id)


def test_qr_code_and_otpauth_uri_are_rendered_locally():
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "someone")
    assert uri.startswith("otpauth://totp/PHI%20Gate:someone?") and "issuer=PHI%20Gate" in uri
    assert totp.qr_svg_data_uri(uri).startswith("data:image/svg+xml")
