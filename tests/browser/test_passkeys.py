"""Passkeys in a real browser: Chromium's DevTools virtual authenticator (CTAP2, internal transport,
user verification) drives the gateway's own static/passkeys.js under the strict CSP.

Register a passkey from the account page, sign in with password + passkey, approve a transfer
with a passkey step-up, be refused with a cloned authenticator (its counter going backwards),
and be led through registration by a passkey policy.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from sqlalchemy import select

from tests.browser.conftest import csp_violations, enter_password, send_through_api, sign_in
from tests.gateway.authkit import events, last_event
from tests.transfers.conftest import record_baa

pytestmark = pytest.mark.browser

AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}


def with_authenticator(browser):
    """A fresh browser context whose page has a virtual platform authenticator; returns (page, cdp, id)."""
    page = browser.new_context().new_page()
    page.console_messages_seen = []
    page.on("console", lambda m: page.console_messages_seen.append((m.type, m.text)))
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable", {"enableUI": False})
    authenticator_id = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": AUTHENTICATOR})["authenticatorId"]
    return page, cdp, authenticator_id


def password_step(page, base, user):
    page.goto(f"{base}/login")
    enter_password(page, user)


def sign_in_with_passkey(page, base, user):
    password_step(page, base, user)
    page.wait_for_url(f"{base}/mfa")
    page.click("#passkey-login button[type=submit]")


def register_from_account(page, base, user, name="work laptop"):
    """Re-authenticate (password, the next TOTP step) and let the virtual authenticator create a passkey."""
    page.goto(f"{base}/account")
    form = page.locator("#passkey-register")
    form.locator("input[name=name]").fill(name)
    form.locator("input[name=current_password]").fill(user.password)
    form.locator("input[name=code]").fill(pyotp.TOTP(user.totp_secret).at(time.time() + 30))
    form.locator("button[type=submit]").click()
    page.wait_for_url(f"{base}/account")
    page.wait_for_selector(f"#passkeys td:text-is('{name}')")


def passkey_rows(components, user_id):
    from gateway.auth.models import Passkey

    with components.db.snapshot() as db:
        rows = list(db.scalars(select(Passkey).where(Passkey.user_id == user_id)))
        db.expunge_all()
        return rows


def test_register_a_passkey_then_sign_in_with_it(public_server, browser, factory, components):
    user = factory.user("practice_approver")
    page, cdp, authenticator_id = with_authenticator(browser)
    sign_in(page, public_server, user)
    register_from_account(page, public_server, user)
    (row,) = passkey_rows(components, user.id)
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert credential["rpId"] == "localhost" and credential["isResidentCredential"] is True
    assert row.credential_id == credential["credentialId"].replace("+", "-").replace("/", "_").rstrip("=")
    assert "internal" in row.transports
    assert last_event(components, "auth.passkey.registered").target_id == row.id

    page.click("header form.logout button")
    page.wait_for_url(f"{public_server}/login")
    sign_in_with_passkey(page, public_server, user)
    page.wait_for_url(f"{public_server}/home")
    assert last_event(components, "auth.login.succeeded").details == {"second_factor": "passkey"}
    assert passkey_rows(components, user.id)[0].last_used_at is not None
    assert csp_violations(page) == []
    page.context.close()


def test_approve_a_transfer_with_a_passkey_step_up(public_server, app, browser, factory, components):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    record_baa(components, practice, vendor)
    staff, approver = factory.user("practice_staff", practice), factory.user("practice_approver", practice)
    [transfer_id] = send_through_api(app, staff, vendor, "APPEAL-PASSKEY-1")

    page, _, _ = with_authenticator(browser)
    sign_in(page, public_server, approver)
    register_from_account(page, public_server, approver)
    page.goto(f"{public_server}/transfers/{transfer_id}")
    form = page.locator("#approve-form")
    assert form.get_attribute("data-passkey-assert") == "stepup"
    form.locator("button[type=submit]").click()  # no code typed: the passkey confirms
    page.wait_for_selector("#status:text-is('approved')")
    assert last_event(components, "transfer.approved").target_id == transfer_id
    assert last_event(components, "auth.passkey.used").details["purpose"] == "stepup"
    assert csp_violations(page) == []
    page.context.close()


def test_a_cloned_passkey_is_refused(public_server, browser, factory, components):
    user = factory.user("biller")
    page, cdp, authenticator_id = with_authenticator(browser)
    sign_in(page, public_server, user)
    register_from_account(page, public_server, user)
    page.click("header form.logout button")
    page.wait_for_url(f"{public_server}/login")
    sign_in_with_passkey(page, public_server, user)
    page.wait_for_url(f"{public_server}/home")
    stored = passkey_rows(components, user.id)[0].sign_count
    assert stored >= 1

    # Export the credential, then put it back with a counter behind the one the gateway has seen:
    # exactly what a copy of the private key, taken earlier, looks like.
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    cdp.send(
        "WebAuthn.removeCredential", {"authenticatorId": authenticator_id, "credentialId": credential["credentialId"]}
    )
    cdp.send(
        "WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": {**credential, "signCount": 0}}
    )
    page.click("header form.logout button")
    page.wait_for_url(f"{public_server}/login")
    sign_in_with_passkey(page, public_server, user)
    page.wait_for_selector("p.error")
    assert "not correct" in page.locator("p.error").inner_text()
    assert page.url == f"{public_server}/mfa"
    clone = last_event(components, "auth.passkey.clone_warning")
    assert clone.severity.value == "high" and clone.details["stored"] == stored
    assert clone.details["presented"] <= stored
    assert passkey_rows(components, user.id)[0].sign_count == stored
    assert csp_violations(page) == []
    page.context.close()


def test_a_policy_leads_through_registration(public_server, browser, factory, components):
    from gateway.audit.service import Actor
    from gateway.auth.passkey_policy import require

    with components.db.transaction() as db:
        require(db, "role", "biller", Actor.system())
    user = factory.user("biller", must_change_password=False)
    page, _, _ = with_authenticator(browser)
    password_step(page, public_server, user)
    page.wait_for_url(f"{public_server}/mfa")
    assert page.locator("#passkey-login").count() == 0  # no passkey yet: the code signs in this once
    page.fill("#code-login input[name=code]", pyotp.TOTP(user.totp_secret).now())
    page.click("#code-login button[type=submit]")
    page.wait_for_url(f"{public_server}/mfa/passkey")
    page.goto(f"{public_server}/transfers")  # nothing else is open until a passkey exists
    page.wait_for_url(f"{public_server}/mfa/passkey?next=%2Ftransfers")
    page.click("#passkey-register button[type=submit]")
    page.wait_for_url(f"{public_server}/transfers")  # then the page asked for opens
    (row,) = passkey_rows(components, user.id)
    assert last_event(components, "auth.passkey.registered").details["via"] == "policy"

    # Next time the passkey is the way in; the page offers no code field, only a recovery code.
    page.click("header form.logout button")
    page.wait_for_url(f"{public_server}/login")
    password_step(page, public_server, user)
    page.wait_for_url(f"{public_server}/mfa")
    assert "recovery code" in page.locator("#code-login label").inner_text()
    page.click("#passkey-login button[type=submit]")
    page.wait_for_url(f"{public_server}/home")
    assert [e.target_id for e in events(components, "auth.passkey.used")] == [row.id]
    assert csp_violations(page) == []
    page.context.close()
