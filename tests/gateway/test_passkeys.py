"""Passkeys over HTTP, as a browser (or an attacker) would send them, with a software authenticator.

Registration after re-authentication, sign-in with password + passkey, step-up for approval,
emergency access, offboarding and token creation; and every way an answer must be refused:
a spent, foreign or expired challenge, another origin or relying party, no user verification,
a cloned authenticator (counter going backwards), someone else's credential. Every
registration, use, failure and removal is an audit event.
"""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway.auth.models import Passkey, PasskeyChallenge
from tests.gateway.authkit import assert_error, events, last_event, password_stage, sessions_of, user_row
from tests.support.softkey import SoftAuthenticator, TestCA, aaguid_text
from tests.transfers.conftest import Session, record_baa

OPTIONS = "/api/v1/auth/passkeys/assertion-options"
REGISTER_OPTIONS = "/api/v1/auth/passkeys/registration-options"
PASSKEYS = "/api/v1/auth/passkeys"


@pytest.fixture
def soft(settings):
    def make(**kw) -> SoftAuthenticator:
        return SoftAuthenticator(settings.webauthn_rp_id, settings.webauthn_origin, **kw)

    return make


@pytest.fixture
def signed_in(app, fake_clock):
    opened = []

    def make(user) -> Session:
        s = Session(app, user, fake_clock)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.client.close()


def register(
    s: Session,
    auth: SoftAuthenticator,
    *,
    name: str = "work laptop",
    password: str | None = None,
    code: str | None = None,
    **create,
):
    options = s.client.post(REGISTER_OPTIONS)
    assert options.status_code == 200, options.text
    body = {
        "name": name,
        "credential": auth.create(options.json(), **create),
        "password": s.user.password if password is None else password,
        "code": s.fresh_code() if code is None else code,
    }
    return s.client.post(PASSKEYS, json=body)


def answer(client, auth: SoftAuthenticator, purpose: str = "stepup", **get) -> dict:
    options = client.post(OPTIONS, json={"purpose": purpose})
    assert options.status_code == 200, options.text
    return auth.get(options.json(), **get)


def passkeys_of(components, user_id: str) -> list[Passkey]:
    with components.db.snapshot() as db:
        rows = list(db.scalars(select(Passkey).where(Passkey.user_id == user_id).order_by(Passkey.created_at)))
        db.expunge_all()
        return rows


def open_challenges(components) -> int:
    with components.db.snapshot() as db:
        return db.scalar(select(func.count()).select_from(PasskeyChallenge))


def with_passkey(signed_in, soft, user) -> tuple[Session, SoftAuthenticator]:
    s = signed_in(user)
    auth = soft()
    assert register(s, auth).status_code == 201
    return s, auth


def start_sign_in(app, user) -> TestClient:
    """Password accepted; the client waits at the second factor with its CSRF header set."""
    client = TestClient(app)
    client.headers["X-CSRF-Token"] = password_stage(client, user)
    return client


# -- registration ------------------------------------------------------------------------------------------------


def test_registration_stores_the_credential_and_records_it(signed_in, soft, factory, components):
    user = factory.user("practice_approver")
    s = signed_in(user)
    auth = soft(aaguid=bytes(range(16)), backup_eligible=True, backed_up=True)
    r = register(s, auth, name="  work   laptop ")
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "work laptop" and r.json()["backed_up"] is True
    (row,) = passkeys_of(components, user.id)
    assert row.credential_id == auth.id and row.sign_count == 0 and row.transports == "internal,hybrid"
    assert row.aaguid == aaguid_text(bytes(range(16))) and row.backup_eligible and row.backed_up
    assert row.attestation_format == "none" and row.public_key and row.last_used_at is None
    ev = last_event(components, "auth.passkey.registered")
    assert ev.target_id == row.id and ev.actor_user_id == user.id
    assert ev.details == {
        "via": "account",
        "aaguid": row.aaguid,
        "attestation_format": "none",
        "backup_eligible": True,
        "backed_up": True,
        "transports": "internal,hybrid",
    }
    assert "work laptop" not in json.dumps(ev.details)  # the user's own label stays out of the log
    assert open_challenges(components) == 0  # spent
    assert [p["id"] for p in s.client.get(PASSKEYS).json()] == [row.id]


def test_registration_needs_the_password_and_a_fresh_factor(signed_in, soft, factory, components):
    user = factory.user("practice_staff")
    s = signed_in(user)
    r = register(s, soft(), password="not the password at all")
    assert_error(r, 422, "bad_current_password")
    assert last_event(components, "auth.reauth.failed").details == {"reason": "bad_password"}
    r = register(s, soft(), code="000000" if s.user.code() != "000000" else "111111")
    assert_error(r, 401, "login_failed")
    assert last_event(components, "auth.reauth.failed").details == {"reason": "bad_code"}
    r = register(s, soft(), code="")
    assert_error(r, 422, "second_factor_required")
    assert passkeys_of(components, user.id) == [] and events(components, "auth.passkey.registered") == []


@pytest.mark.parametrize("attack", ["origin", "rp_id", "no_uv", "replay", "expired", "other_session"])
def test_registration_refusals(attack, signed_in, soft, factory, components, app, fake_clock):
    user = factory.user("practice_staff")
    s = signed_in(user)
    auth = soft()
    options = s.client.post(REGISTER_OPTIONS).json()
    kwargs = (
        {"origin": "https://phigate-login.example"}
        if attack == "origin"
        else {"rp_id": "phigate-login.example"}
        if attack == "rp_id"
        else {"uv": False}
        if attack == "no_uv"
        else {}
    )
    credential = auth.create(options, **kwargs)
    client = s.client
    if attack == "replay":
        ok = s.client.post(
            PASSKEYS, json={"name": "a", "credential": credential, "password": user.password, "code": s.fresh_code()}
        )
        assert ok.status_code == 201
        with components.db.transaction() as db:  # forget it, so only the spent challenge stands in the way
            db.execute(Passkey.__table__.delete())
    elif attack == "expired":
        fake_clock.advance(seconds=components.settings.passkey_challenge_seconds + 1)
    elif attack == "other_session":
        client = signed_in(user).client  # the same user signed in elsewhere
    r = client.post(
        PASSKEYS, json={"name": "a", "credential": credential, "password": user.password, "code": s.fresh_code()}
    )
    assert_error(r, 422, "passkey_not_registered")
    reason = {
        "origin": "wrong_origin",
        "rp_id": "wrong_rp_id",
        "no_uv": "user_not_verified",
        "replay": "challenge_not_issued",
        "expired": "challenge_expired",
        "other_session": "challenge_of_another_session",
    }[attack]
    ev = last_event(components, "auth.passkey.register_failed")
    assert ev.details == {"reason": reason} and ev.actor_user_id == user.id and ev.outcome.value == "failure"
    assert passkeys_of(components, user.id) == []
    assert "phigate-login" not in r.text  # the user sees one opaque answer


def test_registration_options_exclude_existing_passkeys_and_ask_for_user_verification(
    signed_in, soft, factory, settings
):
    user = factory.user("biller")
    s, auth = with_passkey(signed_in, soft, user)
    options = s.client.post(REGISTER_OPTIONS).json()
    assert options["rp"] == {"id": settings.webauthn_rp_id, "name": "PHI Gate"}
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    assert [c["id"] for c in options["excludeCredentials"]] == [auth.id]
    # The same authenticator cannot be registered twice.
    r = s.client.post(
        PASSKEYS,
        json={"name": "again", "credential": auth.create(options), "password": user.password, "code": s.fresh_code()},
    )
    assert_error(r, 422, "passkey_not_registered")


def test_relying_party_ignores_the_host_the_request_names(signed_in, soft, factory, components):
    """A proxy (or a phishing relay) that sends another Host does not change what the gateway expects."""
    user = factory.user("practice_staff")
    s = signed_in(user)
    options = s.client.post(REGISTER_OPTIONS, headers={"Host": "phigate-login.example"}).json()
    assert options["rp"]["id"] == components.settings.webauthn_rp_id == "localhost"
    relayed = soft().create(options, origin="http://phigate-login.example", rp_id="phigate-login.example")
    r = s.client.post(
        PASSKEYS,
        json={"name": "a", "credential": relayed, "password": user.password, "code": s.fresh_code()},
        headers={"Host": "phigate-login.example"},
    )
    assert_error(r, 422, "passkey_not_registered")
    assert last_event(components, "auth.passkey.register_failed").details == {"reason": "wrong_origin"}


# -- sign-in ---------------------------------------------------------------------------------------------------------


def test_sign_in_with_password_and_passkey(app, signed_in, soft, factory, components):
    user = factory.user("practice_approver")
    _, auth = with_passkey(signed_in, soft, user)
    client = start_sign_in(app, user)
    r = client.post("/api/v1/auth/mfa", json={"passkey_assertion": answer(client, auth, "login")})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "full"
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert client.get("/api/v1/auth/me").json()["passkeys"] == 1
    (row,) = passkeys_of(components, user.id)
    assert row.sign_count == 1 and row.last_used_at is not None
    used = last_event(components, "auth.passkey.used")
    assert used.target_id == row.id and used.details == {"purpose": "login", "sign_count": 1}
    assert last_event(components, "auth.login.succeeded").details == {"second_factor": "passkey"}


def test_the_login_page_offers_the_passkey_first(app, signed_in, soft, factory):
    user = factory.user("biller")
    with_passkey(signed_in, soft, user)
    client = start_sign_in(app, user)
    html = client.get("/mfa").text
    assert html.index('id="passkey-login"') < html.index('id="code-login"')
    assert 'data-passkey-assert="login"' in html and '<script src="/static/passkeys.js"' in html


@pytest.mark.parametrize(
    "attack",
    [
        "replay",
        "origin",
        "rp_id",
        "no_uv",
        "expired",
        "other_session",
        "other_users_credential",
        "tampered",
        "malformed",
        "oversized",
        "stepup_answer",
    ],
)
def test_sign_in_refusals(attack, app, signed_in, soft, factory, components, fake_clock):
    user = factory.user("practice_approver")
    _, auth = with_passkey(signed_in, soft, user)
    client = start_sign_in(app, user)
    if attack == "replay":
        # A captured answer, once valid, is refused the second time: its challenge is spent.
        body = answer(client, auth, "login")
        assert client.post("/api/v1/auth/mfa", json={"passkey_assertion": body}).status_code == 200
        client = start_sign_in(app, user)
    elif attack == "other_users_credential":
        other = factory.user("practice_approver")
        _, theirs = with_passkey(signed_in, soft, other)
        body = answer(client, theirs, "login")
    elif attack == "other_session":
        relayed = start_sign_in(app, user)  # an attacker's own sign-in of the same account
        body = answer(relayed, auth, "login")
    elif attack == "stepup_answer":
        body = answer(signed_in(user).client, auth, "stepup")  # answered for an action in a full session
    elif attack == "tampered":
        body = answer(client, auth, "login")
        body["response"]["signature"] = body["response"]["signature"][:-4] + "AAAA"
    elif attack == "oversized":
        body = answer(client, auth, "login")
        body["clientExtensionResults"] = {"padding": "A" * 20000}  # refused unread
    elif attack == "malformed":
        body = {"id": "x", "rawId": "x", "type": "public-key", "response": {"clientDataJSON": "bm90IGpzb24"}}
        client.post(OPTIONS, json={"purpose": "login"})
    else:
        kwargs = {
            "origin": {"origin": "https://phigate-login.example"},
            "rp_id": {"rp_id": "phigate-login.example"},
            "no_uv": {"uv": False},
        }.get(attack, {})
        body = answer(client, auth, "login", **kwargs)
        if attack == "expired":
            fake_clock.advance(seconds=components.settings.passkey_challenge_seconds + 1)
    before = user_row(components, user.id).failed_attempts
    r = client.post("/api/v1/auth/mfa", json={"passkey_assertion": body})
    assert_error(r, 401, "login_failed")
    reason = {
        "replay": "challenge_not_issued",
        "origin": "wrong_origin",
        "rp_id": "wrong_rp_id",
        "no_uv": "user_not_verified",
        "expired": "challenge_expired",
        "other_session": "challenge_of_another_session",
        "other_users_credential": "unknown_credential",
        "tampered": "bad_signature",
        "malformed": "malformed_response",
        "oversized": "malformed_response",
        "stepup_answer": "challenge_of_another_session",
    }[attack]
    ev = last_event(components, "auth.mfa.failed")
    assert ev.details["reason"] == reason and ev.details["method"] == "passkey" and ev.target_id == user.id
    assert user_row(components, user.id).failed_attempts == before + 1  # counts towards the lockout
    assert_error(client.get("/api/v1/auth/me"), 401, "mfa_required")  # still half signed in


def test_a_cloned_authenticator_is_refused_and_raises_a_high_severity_event(
    app, signed_in, soft, factory, components, fake_clock
):
    user = factory.user("practice_approver")
    _s, auth = with_passkey(signed_in, soft, user)
    copy = auth.clone()  # the private key copied while the counter was 0
    client = start_sign_in(app, user)
    assert client.post("/api/v1/auth/mfa", json={"passkey_assertion": answer(client, auth, "login")}).status_code == 200
    auth.get({"challenge": "AA"})  # the genuine authenticator is used elsewhere too: its counter is 2 now
    client = start_sign_in(app, user)
    assert client.post("/api/v1/auth/mfa", json={"passkey_assertion": answer(client, auth, "login")}).status_code == 200
    (row,) = passkeys_of(components, user.id)
    assert row.sign_count == 3
    copy.sign_count = 1  # its next answer counts 2: behind what the genuine one reached
    attacker = start_sign_in(app, user)
    r = attacker.post("/api/v1/auth/mfa", json={"passkey_assertion": answer(attacker, copy, "login")})
    assert_error(r, 401, "login_failed")
    clone = last_event(components, "auth.passkey.clone_warning")
    assert clone.severity.value == "high" and clone.target_id == row.id
    assert clone.details == {"stored": 3, "presented": 2, "purpose": "login"}
    assert last_event(components, "auth.mfa.failed").details == {
        "reason": "sign_count_regressed",
        "method": "passkey",
        "passkey_id": row.id,
    }
    assert passkeys_of(components, user.id)[0].sign_count == 3  # the clone moved nothing
    # A high-severity event raises its alert with itself (gateway/auditor/alerts.py), at once.
    from sqlalchemy import select

    from gateway.audit.models import AuditAlert

    with components.db.snapshot() as db:
        flags = list(db.scalars(select(AuditAlert).where(AuditAlert.rule == "high_severity_event")))
        assert any(f.last_seq == clone.seq for f in flags)


def test_an_authenticator_without_a_counter_still_cannot_replay(app, signed_in, soft, factory, components):
    user = factory.user("biller")
    s = signed_in(user)
    auth = soft(counts=False)
    assert register(s, auth).status_code == 201
    client = start_sign_in(app, user)
    first = answer(client, auth, "login")
    assert client.post("/api/v1/auth/mfa", json={"passkey_assertion": first}).status_code == 200
    assert passkeys_of(components, user.id)[0].sign_count == 0
    again = start_sign_in(app, user)
    assert_error(again.post("/api/v1/auth/mfa", json={"passkey_assertion": first}), 401, "login_failed")
    assert last_event(components, "auth.mfa.failed").details["reason"] == "challenge_not_issued"


def test_one_answer_sent_twice_at_once_is_accepted_once(app, signed_in, soft, factory, components):
    user = factory.user("practice_approver")
    _, auth = with_passkey(signed_in, soft, user)
    client = start_sign_in(app, user)
    body = answer(client, auth, "login")
    cookies, csrf = dict(client.cookies), client.headers["X-CSRF-Token"]
    results, barrier = [], threading.Barrier(2)

    def send():
        with TestClient(app, cookies=cookies) as c:
            barrier.wait()
            results.append(
                c.post("/api/v1/auth/mfa", json={"passkey_assertion": body}, headers={"X-CSRF-Token": csrf}).status_code
            )

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 401]
    assert len(events(components, "auth.passkey.used")) == 1


def test_ceremonies_belong_to_their_stage(app, signed_in, soft, factory):
    user = factory.user("biller")
    s, _auth = with_passkey(signed_in, soft, user)
    half = start_sign_in(app, user)
    assert_error(half.post(REGISTER_OPTIONS), 403, "wrong_stage")  # no registration before the second factor
    assert_error(half.post(OPTIONS, json={"purpose": "stepup"}), 403, "wrong_stage")
    assert_error(s.client.post(OPTIONS, json={"purpose": "login"}), 403, "wrong_stage")
    assert_error(s.client.post(OPTIONS, json={"purpose": "register"}), 422, "invalid_input")
    nobody = signed_in(factory.user("biller"))
    assert_error(nobody.client.post(OPTIONS, json={"purpose": "stepup"}), 422, "no_passkey")


# -- step-up ----------------------------------------------------------------------------------------------------------


@pytest.fixture
def transfer(components, factory, signed_in):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    record_baa(components, practice, vendor)
    staff = signed_in(factory.user("practice_staff", practice))
    r = staff.upload(vendor.id)
    assert r.status_code == 201, r.text
    return practice, vendor, r.json()["id"]


def test_approval_with_a_passkey_step_up(transfer, signed_in, soft, factory, components):
    practice, _, transfer_id = transfer
    s, auth = with_passkey(signed_in, soft, factory.user("practice_approver", practice))
    r = s.client.post(
        f"/api/v1/transfers/{transfer_id}/approve", json={"days": 2, "passkey_assertion": answer(s.client, auth)}
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert last_event(components, "auth.passkey.used").details["purpose"] == "stepup"
    assert last_event(components, "transfer.approved").target_id == transfer_id


def test_a_refused_passkey_step_up_releases_nothing(transfer, signed_in, soft, factory, components):
    practice, _, transfer_id = transfer
    s, auth = with_passkey(signed_in, soft, factory.user("practice_approver", practice))
    phished = answer(s.client, auth, origin="https://phigate-login.example")
    r = s.client.post(f"/api/v1/transfers/{transfer_id}/approve", json={"days": 2, "passkey_assertion": phished})
    assert_error(r, 401, "login_failed")
    assert last_event(components, "transfer.approve.stepup_failed").details["reason"] == "wrong_origin"
    assert s.client.get(f"/api/v1/transfers/{transfer_id}").json()["status"] == "awaiting_approval"
    assert events(components, "transfer.approved") == []


def test_emergency_access_and_token_creation_accept_a_passkey(transfer, signed_in, soft, factory, components):
    _, _, transfer_id = transfer
    admin = factory.user("admin", factory.org("operator"))
    s, auth = with_passkey(signed_in, soft, admin)
    r = s.client.post(
        f"/api/v1/transfers/{transfer_id}/emergency-access",
        json={"hours": 2, "reason": "approver on leave", "passkey_assertion": answer(s.client, auth)},
    )
    assert r.status_code == 200 and r.json()["emergency"] is True
    r = s.client.post(
        "/api/v1/auth/tokens", json={"name": "ehr", "days": 1, "passkey_assertion": answer(s.client, auth)}
    )
    assert r.status_code == 201, r.text
    # A token cannot answer a passkey challenge (it has no session); it sends a code instead.
    token = r.json()["token"]
    with TestClient(s.client.app) as api:
        r = api.post(
            "/api/v1/auth/recovery-codes",
            headers={"Authorization": f"Bearer {token}"},
            json={"passkey_assertion": auth.get({"challenge": "AA"})},
        )
        assert_error(r, 422, "passkey_needs_session")
    assert [e.details["purpose"] for e in events(components, "auth.passkey.used")] == ["stepup", "stepup"]


def test_offboarding_accepts_a_passkey(signed_in, soft, factory, components):
    practice, vendor = factory.org("practice"), factory.org("vendor", name="Offboarded Billing")
    record_baa(components, practice, vendor)
    s, auth = with_passkey(signed_in, soft, factory.user("admin", factory.org("operator")))
    r = s.client.post(
        "/api/v1/offboarding",
        json={"vendor_id": vendor.id, "reason": "contract ended", "confirm_name": "Offboarded Billing"},
    )
    assert_error(r, 422, "second_factor_required")
    r = s.client.post(
        "/api/v1/offboarding",
        json={
            "vendor_id": vendor.id,
            "reason": "contract ended",
            "confirm_name": "Offboarded Billing",
            "passkey_assertion": answer(s.client, auth),
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["baas_terminated"] == 1


# -- removal ---------------------------------------------------------------------------------------------------------


def test_removal_needs_a_fresh_factor_and_is_recorded(signed_in, soft, factory, components):
    user = factory.user("practice_staff")
    s, auth = with_passkey(signed_in, soft, user)
    (row,) = passkeys_of(components, user.id)
    assert_error(s.client.post(f"{PASSKEYS}/{row.id}/remove", json={}), 422, "second_factor_required")
    other = signed_in(factory.user("practice_staff"))
    r = other.client.post(f"{PASSKEYS}/{row.id}/remove", json={"code": other.fresh_code()})
    assert_error(r, 404, "passkey_not_found")  # another user's passkey answers like a missing one
    r = s.client.post(f"{PASSKEYS}/{row.id}/remove", json={"passkey_assertion": answer(s.client, auth)})
    assert r.status_code == 204
    assert passkeys_of(components, user.id) == []
    ev = last_event(components, "auth.passkey.removed")
    assert ev.target_id == row.id and ev.actor_user_id == user.id


# -- policy ----------------------------------------------------------------------------------------------------------


def admin_session(signed_in, factory) -> Session:
    return signed_in(factory.user("admin", factory.org("operator")))


def test_policy_leads_to_registration_then_refuses_totp_alone(app, signed_in, soft, factory, components):
    admin = admin_session(signed_in, factory)
    r = admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "practice_approver"})
    assert r.status_code == 201
    assert last_event(components, "admin.passkey_policy.set").details == {"scope": "role", "value": "practice_approver"}
    user = factory.user("practice_approver")

    # Next sign-in: password and TOTP are accepted, but only passkey registration is open.
    client = TestClient(app)
    csrf = password_stage(client, user)
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["stage"] == "passkey"
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert last_event(components, "auth.passkey.enrolment_required").target_id == user.id
    assert_error(client.get("/api/v1/transfers"), 401, "mfa_required")
    assert client.get("/mfa", follow_redirects=False).headers["location"] == "/mfa/passkey"
    auth = soft()
    options = client.post(REGISTER_OPTIONS).json()
    r = client.post(PASSKEYS, json={"name": "phone", "credential": auth.create(options)})
    assert r.status_code == 201 and r.json()["stage"] == "full"
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    assert client.get("/api/v1/transfers").status_code == 200
    assert last_event(components, "auth.passkey.registered").details["via"] == "policy"

    # From now on a TOTP code alone does not sign in, nor confirm an action; nothing counts as a guess.
    fresh = TestClient(app)
    fresh.headers["X-CSRF-Token"] = password_stage(fresh, user)
    user.clock.advance(seconds=30)
    r = fresh.post("/api/v1/auth/mfa", json={"code": user.code()})
    assert_error(r, 403, "passkey_required")
    assert last_event(components, "auth.mfa.failed").details == {"reason": "passkey_required"}
    assert user_row(components, user.id).failed_attempts == 0
    r = client.post("/api/v1/auth/tokens", json={"name": "x", "code": user.code()})
    assert_error(r, 403, "passkey_required")
    assert client.get("/api/v1/auth/me").json()["passkey_required"] is True
    r = fresh.post("/api/v1/auth/mfa", json={"passkey_assertion": answer(fresh, auth, "login")})
    assert r.status_code == 200 and r.json()["stage"] == "full"


def test_policy_still_accepts_a_recovery_code_and_records_it(app, signed_in, soft, factory, components):
    org = factory.org("vendor")
    admin = admin_session(signed_in, factory)
    assert admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "org", "value": org.id}).status_code == 201
    user = factory.user("biller", org)
    client = TestClient(app)
    client.headers["X-CSRF-Token"] = password_stage(client, user)
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()})
    assert r.json()["stage"] == "passkey"
    client.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    options = client.post(REGISTER_OPTIONS).json()
    assert client.post(PASSKEYS, json={"name": "key", "credential": soft().create(options)}).status_code == 201
    # The recovery codes of the user (as enrolment would have issued them).
    from gateway.auth.service import regenerate_recovery_codes
    from gateway.users.models import User

    with components.db.transaction() as db:
        codes = regenerate_recovery_codes(db, db.get(User, user.id))
    lost = TestClient(app)
    lost.headers["X-CSRF-Token"] = password_stage(lost, user)
    r = lost.post("/api/v1/auth/mfa", json={"code": codes[0]})
    assert r.status_code == 200 and r.json()["stage"] == "full"
    assert last_event(components, "auth.recovery_code.used").severity.value == "warning"
    assert last_event(components, "auth.login.succeeded").details == {"second_factor": "recovery"}


def test_the_last_passkey_under_a_policy_cannot_be_removed(signed_in, soft, factory, components):
    user = factory.user("practice_approver")
    s, auth = with_passkey(signed_in, soft, user)
    admin = admin_session(signed_in, factory)
    assert (
        admin.client.post(
            "/api/v1/auth/passkey-policies", json={"scope": "role", "value": "practice_approver"}
        ).status_code
        == 201
    )
    (row,) = passkeys_of(components, user.id)
    r = s.client.post(f"{PASSKEYS}/{row.id}/remove", json={"passkey_assertion": answer(s.client, auth)})
    assert_error(r, 409, "last_factor")
    ev = last_event(components, "auth.passkey.remove_refused")
    assert ev.details == {"reason": "last_factor"} and ev.outcome.value == "denied"
    assert len(passkeys_of(components, user.id)) == 1
    # With a second passkey registered (re-authenticated with the first), the first can go.
    second = soft()
    options = s.client.post(REGISTER_OPTIONS).json()
    created = second.create(options)
    r = s.client.post(
        PASSKEYS,
        json={
            "name": "spare key",
            "credential": created,
            "password": user.password,
            "passkey_assertion": answer(s.client, auth),
        },
    )
    assert r.status_code == 201, r.text
    r = s.client.post(f"{PASSKEYS}/{row.id}/remove", json={"passkey_assertion": answer(s.client, second)})
    assert r.status_code == 204
    assert [p.credential_id for p in passkeys_of(components, user.id)] == [second.id]


def test_an_administrator_resets_a_users_lost_passkeys(signed_in, soft, factory, components):
    user = factory.user("practice_approver")
    s, _ = with_passkey(signed_in, soft, user)
    outsider = signed_in(factory.user("practice_approver"))
    assert_error(outsider.client.post(f"/api/v1/users/{user.id}/passkeys/reset"), 403, "forbidden")
    admin = admin_session(signed_in, factory)
    assert admin.client.post(f"/api/v1/users/{user.id}/passkeys/reset").status_code == 204
    assert passkeys_of(components, user.id) == []
    ev = last_event(components, "admin.user.passkeys_reset")
    assert ev.severity.value == "high" and ev.details == {"passkeys": 1} and ev.target_id == user.id
    assert sessions_of(components, user.id) == []  # signed out everywhere
    assert s.client.get("/api/v1/auth/me").status_code == 401


def test_policy_administration(signed_in, factory, components):
    admin = admin_session(signed_in, factory)
    staff = signed_in(factory.user("practice_staff"))
    assert_error(
        staff.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "admin"}), 403, "forbidden"
    )
    assert_error(
        admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "root"}), 422, "invalid_role"
    )
    assert_error(
        admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "org", "value": "nope"}), 404, "org_not_found"
    )
    r = admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "admin"})
    assert r.status_code == 201
    assert_error(
        admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "admin"}),
        409,
        "policy_exists",
    )
    assert [p["value"] for p in admin.client.get("/api/v1/auth/passkey-policies").json()] == ["admin"]
    assert admin.client.delete(f"/api/v1/auth/passkey-policies/{r.json()['id']}").status_code == 204
    assert last_event(components, "admin.passkey_policy.removed").target_id == r.json()["id"]
    assert admin.client.get("/api/v1/auth/passkey-policies").json() == []


# -- attestation: known authenticator models -------------------------------------------------------------------------


@pytest.fixture
def vendor_ca():
    return TestCA()


@pytest.fixture
def mds_settings(settings, vendor_ca, tmp_path):
    known = bytes.fromhex("00112233445566778899aabbccddeeff")
    path = tmp_path / "mds.json"
    path.write_text(
        json.dumps(
            {
                "entries": [
                    {
                        "aaguid": aaguid_text(known),
                        "metadataStatement": {
                            "description": "Synthetic Key",
                            "attestationRootCertificates": [vendor_ca.root_der_b64()],
                        },
                    },
                    {"aaid": "4e4e#4005", "metadataStatement": {"description": "a UAF entry, ignored"}},
                ]
            }
        )
    )
    settings.passkey_mds_file = path
    return known


@pytest.mark.parametrize("case", ["known", "unknown_model", "no_attestation", "foreign_ca"])
def test_known_authenticator_models(case, mds_settings, vendor_ca, signed_in, soft, factory, components):
    user = factory.user("practice_staff")
    s = signed_in(user)
    options = s.client.post(REGISTER_OPTIONS).json()
    assert options["attestation"] == "direct"
    aaguid = bytes(16) if case == "unknown_model" else mds_settings
    auth = soft(aaguid=aaguid, attestation_ca=vendor_ca)
    fmt = "none" if case == "no_attestation" else "packed"
    credential = auth.create(options, fmt=fmt, ca=TestCA("Counterfeit Root") if case == "foreign_ca" else None)
    r = s.client.post(
        PASSKEYS, json={"name": "key", "credential": credential, "password": user.password, "code": s.fresh_code()}
    )
    if case == "known":
        assert r.status_code == 201, r.text
        assert passkeys_of(components, user.id)[0].attestation_format == "packed"
        return
    assert_error(r, 422, "passkey_not_registered")
    reason = {
        "unknown_model": "unknown_authenticator_model",
        "no_attestation": "attestation_missing",
        "foreign_ca": "attestation_invalid",
    }[case]
    assert last_event(components, "auth.passkey.register_failed").details["reason"] == reason
    assert passkeys_of(components, user.id) == []


def test_an_unreadable_metadata_file_refuses_every_registration(
    settings, tmp_path, signed_in, soft, factory, components
):
    settings.passkey_mds_file = tmp_path / "missing.json"
    s = signed_in(factory.user("practice_staff"))
    r = register(s, soft())
    assert_error(r, 422, "passkey_not_registered")
    assert last_event(components, "auth.passkey.register_failed").details == {"reason": "metadata_file_invalid"}


# -- pages and the command line --------------------------------------------------------------------------------------


def test_account_page_registers_lists_and_removes(signed_in, soft, factory, components):
    from tests.gateway.authkit import csrf_from

    user = factory.user("practice_staff")
    s = signed_in(user)
    html = s.client.get("/account").text
    assert 'id="passkey-register"' in html and "No passkey yet." in html
    auth = soft()
    options = s.client.post(REGISTER_OPTIONS).json()
    form = {
        "csrf_token": csrf_from(html),
        "name": "desk key",
        "credential": json.dumps(auth.create(options)),
        "current_password": "wrong password, surely",
        "code": s.fresh_code(),
    }
    r = s.client.post("/account/passkeys", data=form, follow_redirects=False)
    assert r.status_code == 422 and "current password is not correct" in r.text
    assert passkeys_of(components, user.id) == []
    options = s.client.post(REGISTER_OPTIONS).json()
    form.update(credential=json.dumps(auth.create(options)), current_password=user.password, code=s.fresh_code())
    r = s.client.post("/account/passkeys", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/account"
    html = s.client.get("/account").text
    (row,) = passkeys_of(components, user.id)
    assert "desk key" in html and f"/account/passkeys/{row.id}/remove" in html and "never" in html
    assert 'data-passkey-assert="stepup"' in html  # step-up forms now offer the passkey
    r = s.client.post(
        f"/account/passkeys/{row.id}/remove",
        follow_redirects=False,
        data={
            "csrf_token": csrf_from(html),
            "passkey_assertion": json.dumps(answer(s.client, auth)),
            "confirmed": "yes",
        },
    )
    assert r.status_code == 303 and passkeys_of(components, user.id) == []


def test_admin_page_sets_the_policy_and_resets_passkeys(signed_in, soft, factory, components):
    from tests.gateway.authkit import csrf_from

    user = factory.user("biller")
    with_passkey(signed_in, soft, user)
    admin = admin_session(signed_in, factory)
    csrf = csrf_from(admin.client.get("/admin/users").text)
    r = admin.client.post(
        "/admin/users/passkey-policies",
        data={"csrf_token": csrf, "scope": "role", "role": "biller"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    html = admin.client.get("/admin/users").text
    assert "role biller" in html and "Remove passkeys (lost)" in html
    r = admin.client.post("/admin/users/passkey-policies", data={"csrf_token": csrf, "scope": "role", "role": "biller"})
    assert r.status_code == 409 and "exists already" in r.text
    r = admin.client.post(
        f"/admin/users/{user.id}/passkeys/reset", data={"csrf_token": csrf, "confirmed": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303 and passkeys_of(components, user.id) == []
    assert last_event(components, "admin.user.passkeys_reset").target_id == user.id
    (policy,) = admin.client.get("/api/v1/auth/passkey-policies").json()
    r = admin.client.post(
        f"/admin/users/passkey-policies/{policy['id']}/remove",
        data={"csrf_token": csrf, "confirmed": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and admin.client.get("/api/v1/auth/passkey-policies").json() == []


def test_command_line_policy_and_reset(monkeypatch, settings, signed_in, soft, factory, components):
    import os

    from typer.testing import CliRunner

    from gateway.cli import app as cli_app

    for key in list(os.environ):
        if key.startswith("PHIGATE_"):
            monkeypatch.delenv(key)
    for key in ("database_url", "key_provider_url", "storage_url"):
        monkeypatch.setenv(f"PHIGATE_{key.upper()}", getattr(settings, key))
    monkeypatch.setenv("PHIGATE_DATA_DIR", str(settings.data_dir))

    def cli(*args):
        return CliRunner().invoke(cli_app, list(args), catch_exceptions=False)

    org = factory.org("vendor", name="Policy Billing")
    r = cli("passkey-policy", "require", "--org", "Policy Billing")
    assert r.exit_code == 0, r.output
    policy_id = r.output.split()[0]
    assert f"{policy_id}  org  {org.id}" in cli("passkey-policy", "list").output
    assert cli("passkey-policy", "require", "--role", "biller", "--org", "Policy Billing").exit_code == 2
    r = cli("passkey-policy", "require", "--role", "nobody")
    assert r.exit_code == 1 and "invalid_role" in r.output
    assert cli("passkey-policy", "remove", policy_id).exit_code == 0
    assert last_event(components, "admin.passkey_policy.removed").target_id == policy_id
    user = factory.user("biller", org)
    with_passkey(signed_in, soft, user)
    r = cli("user", "reset-passkeys", user.username)
    assert r.exit_code == 0 and "removed 1 passkey(s)" in r.output
    assert passkeys_of(components, user.id) == []
    assert last_event(components, "admin.user.passkeys_reset").user_agent.startswith("phigate-cli")
