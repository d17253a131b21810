"""Consequential forms wait for a confirmation, as a browser without script meets them.

Each such form carries `data-confirm` (the <dialog> of static/forms.js asks) and an empty `confirmed`
field; a POST without `confirmed=yes` answers the confirmation page and changes nothing, not even the
audit log; with it, the action happens. Forms that ask for a fresh second factor ask for it again on the
confirmation page, which never carries the code typed into the form.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.gateway.test_passkeys import answer, passkeys_of, register
from tests.support.softkey import SoftAuthenticator
from tests.transfers.conftest import events, party, session_for  # noqa: F401

# Every form whose action ends so is consequential: destroying, revoking, disabling, releasing,
# resetting, offboarding, terminating, rejecting, emergency access.
CONSEQUENTIAL = re.compile(
    r"/(disable|reset-password|passkeys/reset|remove|revoke|reject|release|terminate|emergency-access|recovery-codes)$"
    r"|^/admin/offboarding$"
)


@pytest.fixture
def soft(settings):
    return SoftAuthenticator(settings.webauthn_rp_id, settings.webauthn_origin)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def forms_of(html: str) -> list[tuple[str, str]]:
    """(action, the form's HTML) of every POST form of the page."""
    return [
        (m.group(1), m.group(0)) for m in re.finditer(r'<form method="post" action="([^"]+)".*?</form>', html, re.S)
    ]


def confirmation(r, *words: str) -> str:
    """The confirmation page: nothing done yet, the question in words, a way back."""
    assert r.status_code == 200, r.text
    assert 'id="confirm-form"' in r.text and 'name="confirmed" value="yes"' in r.text
    question = re.search(r'<p id="confirm-question">(.*?)</p>', r.text, re.S).group(1)
    for word in words:
        assert word in question, question
    return r.text


def test_every_consequential_form_of_every_page_asks_first(party, session_for, soft):
    staff, approver, admin = session_for(party.staff), session_for(party.approver), session_for(party.admin)
    own = staff.upload(party.vendor.id).json()["id"]
    other = approver.upload(party.vendor.id).json()["id"]
    r = admin.client.post("/api/v1/retention/holds", json={"scope": "transfer", "target_id": own, "reference": "M-7"})
    assert r.status_code == 201
    r = admin.client.post("/api/v1/auth/passkey-policies", json={"scope": "role", "value": "biller"})
    assert r.status_code == 201
    assert register(approver, soft).status_code == 201
    r = approver.client.post(
        "/account/tokens", data={"name": "export", "days": "30", "code": approver.fresh_code()}, follow_redirects=False
    )
    assert r.status_code == 200 and "export" in r.text
    pages = [
        (approver, f"/transfers/{own}"),  # reject
        (approver, f"/transfers/{other}"),  # withdraw (the uploader's own)
        (approver, "/account"),  # passkey removal, token revoke, replacing the recovery codes
        (admin, f"/transfers/{own}"),  # emergency access
        (admin, "/admin/users"),  # disable, reset password, remove passkeys, remove a passkey rule
        (admin, "/admin/baas"),  # terminate
        (admin, "/admin/retention"),  # release a hold
        (admin, "/admin/offboarding"),
    ]
    seen = set()
    for s, path in pages:
        html = s.client.get(path).text
        for action, form in forms_of(html):
            if not CONSEQUENTIAL.search(action):
                continue
            kind = CONSEQUENTIAL.search(action).group(0)
            seen.add(kind)
            assert re.search(r'data-confirm="[^"]+"', form), f"{path}: {action} does not ask first"
            if kind != "/admin/offboarding":  # offboarding's own confirmation is the typed vendor name
                assert '<input type="hidden" name="confirmed" value="">' in form, f"{path}: {action}"
    assert seen >= {
        "/disable",
        "/reset-password",
        "/passkeys/reset",
        "/remove",
        "/revoke",
        "/reject",
        "/release",
        "/terminate",
        "/emergency-access",
        "/recovery-codes",
        "/admin/offboarding",
    }, seen


def test_emergency_access_waits_for_a_confirmation_then_asks_for_its_own_code(party, session_for, db):
    staff, admin = session_for(party.staff), session_for(party.admin)
    tid = staff.upload(party.vendor.id).json()["id"]
    token = csrf_of(admin.client.get(f"/transfers/{tid}").text)
    code = admin.fresh_code()
    body = {"csrf_token": token, "hours": "6", "reason": "no approver on call", "code": code}
    html = confirmation(admin.client.post(f"/transfers/{tid}/emergency-access", data=body), tid[:8], "alert")
    assert re.search(r'name="hours" value="6"', html) and 'value="no approver on call"' in html
    # The step-up is asked on this page; the code typed into the form is not carried in it.
    assert re.search(r'<input name="code"[^>]*required', html) and code not in html
    assert staff.client.get(f"/api/v1/transfers/{tid}").json()["status"] == "awaiting_approval"
    assert not events(db, "transfer.emergency_access.opened") and not events(db, "auth.reauth.failed")

    body.update(confirmed="yes", code=admin.fresh_code())
    r = admin.client.post(f"/transfers/{tid}/emergency-access", data=body, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert [e.target_id for e in events(db, "transfer.emergency_access.opened")] == [tid]


def test_removing_a_passkey_waits_for_a_confirmation(session_for, factory, components, db, soft):
    s = session_for(factory.user("practice_staff"))
    assert register(s, soft, name="desk key").status_code == 201
    (row,) = passkeys_of(components, s.user.id)
    html = s.client.get("/account").text
    assert re.search(rf'action="/account/passkeys/{row.id}/remove"[^>]*data-confirm="[^"]*desk key', html)
    html = confirmation(s.client.post(f"/account/passkeys/{row.id}/remove", data={}), "desk key")
    assert 'data-passkey-assert="stepup"' in html and "/static/passkeys.js" in html  # the passkey can confirm
    assert len(passkeys_of(components, s.user.id)) == 1 and not events(db, "auth.passkey.removed")
    # Another user's passkey is not there, confirmed or not.
    other = session_for(factory.user("practice_staff"))
    assert other.client.post(f"/account/passkeys/{row.id}/remove", data={}).status_code == 404

    r = s.client.post(
        f"/account/passkeys/{row.id}/remove",
        data={"passkey_assertion": json.dumps(answer(s.client, soft)), "confirmed": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and passkeys_of(components, s.user.id) == []
    assert [e.target_id for e in events(db, "auth.passkey.removed")] == [row.id]


def test_revoking_an_api_token_waits_for_a_confirmation(session_for, factory, db):
    s = session_for(factory.user("biller"))
    r = s.client.post("/account/tokens", data={"name": "nightly export", "days": "30", "code": s.fresh_code()})
    assert r.status_code == 200
    (token,) = s.client.get("/api/v1/auth/tokens").json()
    assert re.search(r'action="/account/tokens/[^"]+/revoke"[^>]*data-confirm="[^"]*nightly export', r.text)
    confirmation(s.client.post(f"/account/tokens/{token['id']}/revoke", data={}), "nightly export")
    (still,) = s.client.get("/api/v1/auth/tokens").json()
    assert still["revoked_at"] is None and not events(db, "auth.api_token.revoked")

    r = s.client.post(f"/account/tokens/{token['id']}/revoke", data={"confirmed": "yes"}, follow_redirects=False)
    assert r.status_code == 303
    (revoked,) = s.client.get("/api/v1/auth/tokens").json()
    assert revoked["revoked_at"] is not None
    assert [e.target_id for e in events(db, "auth.api_token.revoked")] == [token["id"]]


def test_replacing_the_recovery_codes_waits_for_a_confirmation_then_asks_for_its_own_code(session_for, factory, db):
    s = session_for(factory.user("practice_staff"))
    code = s.fresh_code()
    html = confirmation(s.client.post("/account/recovery-codes", data={"code": code}), "recovery codes")
    assert re.search(r'<input name="code"[^>]*required', html) and code not in html
    assert 'id="recovery-codes"' not in html and not events(db, "auth.recovery_codes.regenerated")

    r = s.client.post("/account/recovery-codes", data={"code": s.fresh_code(), "confirmed": "yes"})
    assert r.status_code == 200 and 'id="recovery-codes"' in r.text
    assert len(events(db, "auth.recovery_codes.regenerated")) == 1


def test_releasing_a_legal_hold_waits_for_a_confirmation(party, session_for, db):
    staff, admin = session_for(party.staff), session_for(party.admin)
    tid = staff.upload(party.vendor.id).json()["id"]
    r = admin.client.post("/api/v1/retention/holds", json={"scope": "transfer", "target_id": tid, "reference": "M-42"})
    hold_id = r.json()["id"]
    html = admin.client.get("/admin/retention").text
    assert re.search(rf'action="/admin/retention/holds/{hold_id}/release"[^>]*data-confirm="[^"]*M-42', html)
    confirmation(admin.client.post(f"/admin/retention/holds/{hold_id}/release", data={}), "M-42")
    assert not events(db, "retention.hold.released")
    assert admin.client.get("/admin/retention").text.count("released ") == 0

    r = admin.client.post(
        f"/admin/retention/holds/{hold_id}/release", data={"confirmed": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303 and [e.target_id for e in events(db, "retention.hold.released")] == [hold_id]
    # Released already: the page says so, it does not ask again.
    r = admin.client.post(f"/admin/retention/holds/{hold_id}/release", data={})
    assert r.status_code == 409 and 'id="confirm-form"' not in r.text


def test_removing_a_users_passkeys_or_a_passkey_rule_waits_for_a_confirmation(
    session_for, factory, components, db, soft
):
    user = session_for(factory.user("biller"))
    assert register(user, soft).status_code == 201
    admin = session_for(factory.user("admin", factory.org("operator")))
    r = admin.client.post("/admin/users/passkey-policies", data={"scope": "role", "role": "biller"})
    assert r.status_code in (200, 303)
    (policy,) = admin.client.get("/api/v1/auth/passkey-policies").json()

    confirmation(admin.client.post(f"/admin/users/{user.user.id}/passkeys/reset", data={}), user.user.username)
    assert len(passkeys_of(components, user.user.id)) == 1 and not events(db, "admin.user.passkeys_reset")
    confirmation(admin.client.post(f"/admin/users/passkey-policies/{policy['id']}/remove", data={}), "role biller")
    assert len(admin.client.get("/api/v1/auth/passkey-policies").json()) == 1
    assert not events(db, "admin.passkey_policy.removed")

    r = admin.client.post(
        f"/admin/users/{user.user.id}/passkeys/reset", data={"confirmed": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303 and passkeys_of(components, user.user.id) == []
    r = admin.client.post(
        f"/admin/users/passkey-policies/{policy['id']}/remove", data={"confirmed": "yes"}, follow_redirects=False
    )
    assert r.status_code == 303 and admin.client.get("/api/v1/auth/passkey-policies").json() == []
    assert len(events(db, "admin.passkey_policy.removed")) == 1
