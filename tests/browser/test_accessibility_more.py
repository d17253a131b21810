"""The pages test_accessibility.py does not reach, under axe-core at 390x844 and 1280x800.

Passkey pages (enrolment under a policy, sign-in with a passkey, the account's list), error pages of a
visitor who is signed out (an unknown address, a sign-in form that expired) and of a user the page is not
for, the API documentation, the confirmation of every kind (the <dialog> and the page a browser without
script gets, with and without a second factor on it), refused forms (approval, offboarding), a rejected
and a revoked transfer, emergency access and what the auditor then sees, legal holds, API tokens and
passkey rules. Same checks as test_accessibility.py.
"""

from __future__ import annotations

import time

import pyotp
import pytest
from fastapi.testclient import TestClient

from tests.browser.conftest import csp_violations
from tests.browser.test_accessibility import audit, axe_source, visit  # noqa: F401 (axe_source: a fixture)
from tests.browser.test_passkeys import (
    passkey_rows,
    password_step,
    register_from_account,
    with_authenticator,
)
from tests.browser.test_transfer_journey import new_page, sign_in
from tests.conftest import api_login
from tests.gateway.authkit import events
from tests.transfers.conftest import PDF, record_baa

pytestmark = pytest.mark.browser

DIALOG = "dialog#confirm-dialog"


def without_script(page, form: str) -> None:
    """Send a form as a browser without script does (form.submit() skips the dialog): the confirmation page."""
    with page.expect_navigation():
        page.evaluate("(selector) => document.querySelector(selector).submit()", form)
    page.locator("#confirm-form").wait_for()


def test_passkey_pages_and_removing_a_passkey_through_the_dialog(
    public_server, browser, factory, components, axe_source
):
    from gateway.audit.service import Actor
    from gateway.auth.passkey_policy import require

    findings: list[str] = []
    with components.db.transaction() as db:
        require(db, "role", "biller", Actor.system())

    # A policy leads a biller through registering a passkey, then the passkey signs them in.
    biller = factory.user("biller", must_change_password=False)
    page, _, _ = with_authenticator(browser)
    password_step(page, public_server, biller)
    page.wait_for_url(f"{public_server}/mfa")
    page.fill("#code-login input[name=code]", pyotp.TOTP(biller.totp_secret).now())
    page.click("#code-login button[type=submit]")
    page.wait_for_url(f"{public_server}/mfa/passkey")
    findings += audit(page, axe_source, "passkey enrolment (policy)")
    page.click("#passkey-register button[type=submit]")
    page.wait_for_url(f"{public_server}/home")
    page.click("header form.logout button")
    page.wait_for_url(f"{public_server}/login")
    password_step(page, public_server, biller)
    page.wait_for_url(f"{public_server}/mfa")
    findings += audit(page, axe_source, "sign-in with a passkey")
    page.click("#passkey-login button[type=submit]")
    page.wait_for_url(f"{public_server}/home")
    findings += visit(page, f"{public_server}/account", axe_source, "account (passkey required)")
    assert csp_violations(page) == []
    page.context.close()

    # Staff without a policy: register a passkey on the account page, then remove it.
    staff = factory.user("practice_staff")
    page, _, _ = with_authenticator(browser)
    sign_in(page, public_server, staff)
    register_from_account(page, public_server, staff, name="desk key")
    findings += audit(page, axe_source, "account with a passkey")
    (row,) = passkey_rows(components, staff.id)
    remove = f'form[action="/account/passkeys/{row.id}/remove"]'

    # Without script: the confirmation page, which asks for the second factor itself.
    without_script(page, remove)
    assert "desk key" in page.locator("#confirm-question").inner_text()
    assert page.locator("#confirm-form input[name=code]").count() == 1
    findings += audit(page, axe_source, "confirm page with a second factor")
    page.click("#confirm-form a")  # Cancel
    page.wait_for_url(f"{public_server}/account")
    assert len(passkey_rows(components, staff.id)) == 1

    # With script: the dialog asks; Cancel does nothing, Confirm removes it with the passkey as step-up.
    page.locator(f"{remove} button").click()
    dialog = page.locator(DIALOG)
    assert dialog.is_visible() and "desk key" in dialog.inner_text()
    findings += audit(page, axe_source, "confirm dialog (passkey removal)")
    dialog.locator("button", has_text="Cancel").click()
    assert not dialog.is_visible() and len(passkey_rows(components, staff.id)) == 1
    page.locator(f"{remove} button").click()
    with page.expect_navigation():
        page.locator("#confirm-dialog-ok").click()
    page.wait_for_selector("#passkeys td:text-is('No passkey yet.')")
    assert passkey_rows(components, staff.id) == []
    assert [e.target_id for e in events(components, "auth.passkey.removed")] == [row.id]
    assert page.url == f"{public_server}/account"
    findings += audit(page, axe_source, "account after removing the passkey")
    assert csp_violations(page) == []
    page.context.close()

    assert not findings, "\n".join(findings)


def test_error_pages_signed_out_and_in_and_the_api_docs(server, browser, factory, axe_source):
    findings: list[str] = []
    page = new_page(browser)
    findings += visit(page, f"{server}/no-such-page", axe_source, "not found (signed out)", status=404)
    assert page.locator("header nav").count() == 0

    # A sign-in form left open until its token expired (here: its cookie is gone) is refused.
    staff = factory.user("practice_staff")
    page.goto(f"{server}/login")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", staff.password)
    page.context.clear_cookies()
    with page.expect_navigation() as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 403
    findings += audit(page, axe_source, "expired sign-in form (signed out)")
    page.goto(f"{server}/login")
    page.fill("input[name=username]", staff.username)
    page.fill("input[name=password]", "not the password at all")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.locator("p.error").count() == 1
    findings += audit(page, axe_source, "sign-in refused")

    sign_in(page, server, staff)
    findings += visit(page, f"{server}/admin/users", axe_source, "forbidden (signed in)", status=403)
    assert page.locator("header nav").count() == 1
    page.goto(f"{server}/api/docs")
    page.wait_for_selector(".opblock-tag", timeout=30000)
    findings += audit(page, axe_source, "API documentation")
    page.locator(".opblock-summary").first.click()  # an operation opened, as a reader would
    page.wait_for_selector(".opblock-body")
    findings += audit(page, axe_source, "API documentation, an operation open")
    page.locator(".btn.authorize").first.click()  # its dialog (the session cookie, the CSRF header)
    page.locator(".modal-ux").wait_for()
    findings += audit(page, axe_source, "API documentation, authorisation dialog")
    assert csp_violations(page) == []
    assert not findings, "\n".join(findings)


def test_confirmations_emergency_access_holds_tokens_and_rules(server, app, browser, factory, components, axe_source):
    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    staff = factory.user("practice_staff", practice)
    approver = factory.user("practice_approver", practice)
    admin = factory.user("admin", operator)
    auditor = factory.user("auditor", operator)
    biller = factory.user("biller", vendor)
    record_baa(components, practice, vendor)
    with TestClient(app) as client:
        client.headers["X-CSRF-Token"] = api_login(client, staff)
        ids = []
        for n in (1, 2, 3):
            r = client.post(
                "/api/v1/transfers",
                params={"partner_id": vendor.id},
                content=PDF,
                headers={
                    "Content-Type": "application/octet-stream",
                    "X-Purpose": f"APPEAL-A11Y-MORE-{n}",
                    "Content-Disposition": f"attachment; filename=appeal-{n}.pdf",
                },
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    decided, broken, revoked = ids
    findings: list[str] = []

    # The approver: a refused approval keeps what was typed; rejecting asks first.
    page = new_page(browser)
    sign_in(page, server, approver)
    page.goto(f"{server}/transfers/{decided}")
    page.fill("#approve-form input[name=code]", "000000")
    with page.expect_navigation():
        page.click("#approve-form button[type=submit]")
    assert page.locator("p.error").count() == 1
    findings += audit(page, axe_source, "approval refused")
    page.goto(f"{server}/transfers/{decided}")
    page.fill("#reject-form input[name=reason]", "wrong patient")
    without_script(page, "#reject-form")
    findings += audit(page, axe_source, "confirm page (reject)")
    page.click("#confirm-form button[type=submit]")
    page.wait_for_url(f"{server}/transfers/{decided}")
    findings += audit(page, axe_source, "transfer rejected")
    # Approved, then revoked through the dialog.
    page.goto(f"{server}/transfers/{revoked}")
    page.fill("#approve-form input[name=code]", pyotp.TOTP(approver.totp_secret).at(time.time() + 30))
    with page.expect_navigation():
        page.click("#approve-form button[type=submit]")
    page.fill("#revoke-form input[name=reason]", "sent to the wrong vendor")
    page.click("#revoke-form button[type=submit]")
    assert page.locator(DIALOG).is_visible()
    findings += audit(page, axe_source, "confirm dialog (revoke)")
    with page.expect_navigation():
        page.locator("#confirm-dialog-ok").click()
    assert page.locator("#status").inner_text() == "revoked"
    findings += audit(page, axe_source, "transfer revoked (approver)")
    assert csp_violations(page) == []
    page.context.close()

    # The biller: the revoked transfer says so instead of offering a download.
    page = new_page(browser)
    sign_in(page, server, biller)
    findings += visit(page, f"{server}/transfers/{revoked}", axe_source, "transfer revoked (biller)")
    assert page.locator("a[href*='/download']").count() == 0
    assert csp_violations(page) == []
    page.context.close()

    # The administrator: emergency access (page without script, then the dialog), a legal hold, a
    # passkey rule, an API token.
    page = new_page(browser)
    sign_in(page, server, admin)
    findings += visit(page, f"{server}/transfers/{broken}", axe_source, "transfer (admin, emergency access)")
    page.fill("#emergency-form input[name=reason]", "no approver on call")
    without_script(page, "#emergency-form")
    findings += audit(page, axe_source, "confirm page (emergency access)")
    page.click("#confirm-form a")
    page.wait_for_url(f"{server}/transfers/{broken}")
    page.fill("#emergency-form input[name=reason]", "no approver on call")
    page.fill("#emergency-form input[name=code]", pyotp.TOTP(admin.totp_secret).at(time.time() + 30))
    page.click("#emergency-form button[type=submit]")
    assert page.locator(DIALOG).is_visible()
    findings += audit(page, axe_source, "confirm dialog (emergency access)")
    with page.expect_navigation():
        page.locator("#confirm-dialog-ok").click()
    assert [e.target_id for e in events(components, "transfer.emergency_access.opened")] == [broken]
    findings += audit(page, axe_source, "transfer under emergency access (admin)")

    page.goto(f"{server}/admin/retention")
    page.fill("#hold-form input[name=target_id]", broken)
    page.fill("#hold-form input[name=reference]", "MATTER-A11Y")
    with page.expect_navigation():
        page.click("#hold-form button[type=submit]")
    findings += audit(page, axe_source, "admin retention with a hold")
    without_script(page, "form.release-hold")
    findings += audit(page, axe_source, "confirm page (release a hold)")

    page.goto(f"{server}/admin/users")
    page.locator("#passkey-policy-role select[name=role]").select_option("biller")
    with page.expect_navigation():
        page.click("#passkey-policy-role button[type=submit]")
    findings += audit(page, axe_source, "admin users with a passkey rule")
    without_script(page, "form.remove-policy")
    findings += audit(page, axe_source, "confirm page (remove a passkey rule)")

    # The token is made through the service: a third fresh code inside the same minute is not to be had.
    from gateway.audit.service import Actor
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    with components.db.transaction() as db:
        create_api_token(db, components.settings, db.get(User, admin.id), "nightly export", 30, Actor.system())
    findings += visit(page, f"{server}/account", axe_source, "account with an API token")
    without_script(page, "form.revoke-token")
    findings += audit(page, axe_source, "confirm page (revoke a token)")

    # Offboarding refused (the vendor's name mistyped): the form comes back with the error.
    page.goto(f"{server}/admin/offboarding")
    form = page.locator("#offboarding-form")
    form.locator("select[name=vendor_id]").select_option(vendor.id)
    form.locator("input[name=reason]").fill("Contract ended")
    form.locator("input[name=confirm_name]").fill("not the name")
    form.locator("input[name=code]").fill("000000")
    form.locator("button[type=submit]").click()
    with page.expect_navigation():
        page.locator("#confirm-dialog-ok").click()
    assert page.locator("p.error").count() == 1
    findings += audit(page, axe_source, "offboarding refused")
    assert csp_violations(page) == []
    page.context.close()

    # The auditor: the alert and the emergency access waiting for review.
    page = new_page(browser)
    sign_in(page, server, auditor)
    findings += audit(page, axe_source, "home (auditor, emergency access)")
    findings += visit(page, f"{server}/audit", axe_source, "audit dashboard with an alert")
    findings += visit(page, f"{server}/transfers/{broken}", axe_source, "transfer to review (auditor)")
    assert csp_violations(page) == []
    page.context.close()

    assert not findings, "\n".join(findings)
