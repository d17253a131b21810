"""Every page of the journeys, on a phone (390x844) and a small laptop (1280x800), under axe-core.

axe-core comes from the npm package pinned in tests/browser/axe/package-lock.json, installed with
`npm ci` by the fixture below. Playwright's add_script_tag would inline it, which the gateway's
strict CSP refuses, so the script is evaluated through the DevTools protocol instead (CSP does not
apply there, and the pages keep their real CSP). A page fails on any serious or critical finding,
on a page that scrolls sideways (wide tables must scroll inside their own container), and on a
table cell taken out of table layout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyotp
import pytest

from tests.browser.conftest import csp_violations, send_through_api
from tests.browser.test_transfer_journey import new_page, sign_in
from tests.transfers.conftest import record_baa

pytestmark = pytest.mark.browser

AXE_DIR = Path(__file__).parent / "axe"
SIZES = {"phone": (390, 844), "laptop": (1280, 800)}
BLOCKING = ("serious", "critical")


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js of the exact version the lock file pins, installed with `npm ci` when missing or stale."""
    lock = json.loads((AXE_DIR / "package-lock.json").read_text())
    wanted = lock["packages"]["node_modules/axe-core"]["version"]
    installed = AXE_DIR / "node_modules" / "axe-core"
    if (
        not (installed / "package.json").exists()
        or json.loads((installed / "package.json").read_text())["version"] != wanted
    ):
        npm = shutil.which("npm")
        if npm is None:
            reason = "npm is not installed (Debian package npm): axe-core cannot be installed"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"browser lane unavailable under CI=true: {reason}")
            pytest.skip(f"browser lane SKIPPED: {reason}")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=AXE_DIR, check=True, timeout=300)
    return (installed / "axe.min.js").read_text()


def audit(page, axe_source: str, name: str) -> list[str]:
    """Findings on the page as it is, at each size: serious or critical axe violations and sideways scroll."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source)
    findings = []
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        result = page.evaluate(
            "() => axe.run(document, {resultTypes: ['violations']})"
            ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
            " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
        )
        findings += [
            f"{name} @{size}: {v['impact']} {v['id']} ({v['help']}) at {v['nodes']}"
            for v in result
            if v["impact"] in BLOCKING
        ]
        scroll, inner = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
        if scroll > inner:
            findings.append(f"{name} @{size}: the page scrolls sideways ({scroll}px in a {inner}px window)")
        # A cell styled out of table layout (a class rule meant for something else) shifts its column.
        broken = page.evaluate(
            "() => [...document.querySelectorAll('td, th')]"
            ".filter(c => getComputedStyle(c).display !== 'table-cell').length"
        )
        if broken:
            findings.append(f"{name} @{size}: {broken} table cells are not laid out as table cells")
    return findings


def visit(page, url: str, axe_source: str, name: str, *, status: int = 200) -> list[str]:
    response = page.goto(url)
    assert response is not None and response.status == status, f"{name}: {url} answered {response and response.status}"
    return audit(page, axe_source, name)


def test_every_page_of_the_journeys_has_no_serious_finding_on_a_phone_or_a_laptop(
    server, app, browser, factory, components, axe_source
):
    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    staff = factory.user("practice_staff", practice)
    approver = factory.user("practice_approver", practice)
    biller = factory.user("biller", vendor)
    auditor = factory.user("auditor", operator)
    admin = factory.user("admin", operator)
    record_baa(components, practice, vendor)

    # Two transfers sent through the API (step 0 of the staff's TOTP): one to approve, one left waiting.
    approved, waiting = send_through_api(app, staff, vendor, "APPEAL-A11Y-1", "APPEAL-A11Y-2")
    findings: list[str] = []

    # Signed out: the sign-in page, the code page, and an error page.
    approver_page = new_page(browser)
    findings += visit(approver_page, f"{server}/login", axe_source, "sign-in")
    approver_page.fill("input[name=username]", approver.username)
    approver_page.fill("input[name=password]", approver.password)
    approver_page.click("button[type=submit]")
    approver_page.wait_for_url(f"{server}/mfa")
    findings += audit(approver_page, axe_source, "sign-in code")
    assert approver_page.locator("header nav").count() == 0  # no menu until the sign-in is complete
    approver_page.fill("input[name=code]", pyotp.TOTP(approver.totp_secret).at(time.time()))
    approver_page.click("form.card button[type=submit]")
    approver_page.wait_for_url(f"{server}/home")

    # The approver: home, approvals, a transfer before and after approving it, the send page, account.
    findings += audit(approver_page, axe_source, "home (approver)")
    findings += visit(approver_page, f"{server}/transfers/approvals", axe_source, "approvals")
    findings += visit(approver_page, f"{server}/transfers/{approved}", axe_source, "transfer to approve")
    approver_page.fill("#approve-form input[name=code]", pyotp.TOTP(approver.totp_secret).at(time.time() + 30))
    with approver_page.expect_navigation():
        approver_page.click("#approve-form button[type=submit]")
    assert approver_page.locator("#status").inner_text() == "approved"
    findings += audit(approver_page, axe_source, "transfer approved")
    findings += visit(approver_page, f"{server}/transfers/new", axe_source, "send (approver)")
    findings += visit(approver_page, f"{server}/account", axe_source, "account (approver)")
    assert csp_violations(approver_page) == []

    # Practice staff (the API used step 0, the browser takes the next): home, send, sent list, detail.
    staff_page = new_page(browser)
    sign_in(staff_page, server, staff, step_offset=1)
    findings += audit(staff_page, axe_source, "home (staff)")
    findings += visit(staff_page, f"{server}/transfers/new", axe_source, "send")
    findings += visit(staff_page, f"{server}/transfers", axe_source, "transfers (staff)")
    findings += visit(staff_page, f"{server}/transfers/{waiting}", axe_source, "transfer waiting (staff)")
    findings += visit(staff_page, f"{server}/transfers/no-such-transfer", axe_source, "error page", status=404)
    assert csp_violations(staff_page) == []

    # The biller: home, inbox, the approved transfer with its download link.
    biller_page = new_page(browser)
    sign_in(biller_page, server, biller)
    findings += audit(biller_page, axe_source, "home (biller)")
    findings += visit(biller_page, f"{server}/transfers", axe_source, "inbox (biller)")
    findings += visit(biller_page, f"{server}/transfers/{approved}", axe_source, "transfer received (biller)")
    assert csp_violations(biller_page) == []

    # A new user's first sign-in: enrolment, recovery codes, the forced password change.
    newcomer = factory.user("practice_staff", practice, enrolled=False, must_change_password=True)
    new_user_page = new_page(browser)
    new_user_page.goto(f"{server}/login")
    new_user_page.fill("input[name=username]", newcomer.username)
    new_user_page.fill("input[name=password]", newcomer.password)
    new_user_page.click("button[type=submit]")
    new_user_page.wait_for_url(f"{server}/mfa/enrol")
    findings += audit(new_user_page, axe_source, "enrolment")
    secret = new_user_page.locator("#totp-secret").inner_text().replace(" ", "")
    new_user_page.fill("input[name=code]", pyotp.TOTP(secret).now())
    new_user_page.click("form[action='/mfa/enrol'] button[type=submit]")
    new_user_page.locator("#recovery-codes").wait_for()
    findings += audit(new_user_page, axe_source, "recovery codes")
    new_user_page.click("a.button")
    new_user_page.wait_for_url(f"{server}/password")
    findings += audit(new_user_page, axe_source, "password change")
    assert csp_violations(new_user_page) == []

    # The administrator's pages, and both ways of confirming a consequential action: the dialog
    # (forms.js) and the page a browser without script gets (form.submit() skips the dialog).
    admin_page = new_page(browser)
    sign_in(admin_page, server, admin)
    findings += audit(admin_page, axe_source, "home (admin)")
    disable = f'form[action="/admin/users/{biller.id}/disable"]'
    admin_page.goto(f"{server}/admin/users")
    admin_page.click(f"{disable} button")
    assert admin_page.locator("dialog#confirm-dialog").is_visible()
    findings += audit(admin_page, axe_source, "confirm dialog")
    admin_page.locator("dialog#confirm-dialog button", has_text="Cancel").click()
    with admin_page.expect_navigation():
        admin_page.evaluate(f"() => document.querySelector('{disable}').submit()")
    assert admin_page.locator("#confirm-form").count() == 1
    findings += audit(admin_page, axe_source, "confirm page")
    admin_page.click("#confirm-form a")  # Cancel: nothing was done
    admin_page.wait_for_url(f"{server}/admin/users")
    assert admin_page.locator(disable).count() == 1
    for path, name in [
        ("/admin/users", "admin users"),
        ("/admin/orgs", "admin organisations"),
        ("/admin/baas", "admin BAAs"),
        ("/admin/retention", "admin retention"),
        ("/admin/offboarding", "admin offboarding"),
        ("/transfers", "transfers (admin)"),
        ("/account", "account (admin)"),
    ]:
        findings += visit(admin_page, f"{server}{path}", axe_source, name)

    # Offboarding the vendor, last of the admin's day: the report, and certificates for the auditor.
    admin_page.goto(f"{server}/admin/offboarding")
    form = admin_page.locator("#offboarding-form")
    form.locator("select[name=vendor_id]").select_option(vendor.id)
    form.locator("input[name=reason]").fill("Contract ended (accessibility test)")
    form.locator("input[name=confirm_name]").fill(vendor.name)
    form.locator("input[name=code]").fill(pyotp.TOTP(admin.totp_secret).at(time.time() + 30))
    form.locator("button[type=submit]").click()
    with admin_page.expect_navigation():
        admin_page.locator("#confirm-dialog-ok").click()
    admin_page.locator("#offboarding-report").wait_for()
    findings += audit(admin_page, axe_source, "offboarding done")
    assert csp_violations(admin_page) == []

    # The auditor's pages, with the tables filled by the events above.
    auditor_page = new_page(browser)
    sign_in(auditor_page, server, auditor)
    findings += audit(auditor_page, axe_source, "home (auditor)")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    for path, name in [
        ("/audit", "audit dashboard"),
        ("/audit/events", "audit events"),
        (f"/audit/activity?user={staff.id}&day={day}", "audit user-day"),
        (f"/audit/timeline?target_id={approved}", "audit timeline"),
        (f"/audit/access-review?vendor_id={vendor.id}", "audit access review"),
        ("/transfers", "transfers (auditor)"),
    ]:
        findings += visit(auditor_page, f"{server}{path}", axe_source, name)
    findings += visit(auditor_page, f"{server}/certificates", axe_source, "certificates")
    assert auditor_page.locator("#certificates tbody a").count() >= 1  # the offboarding's certificate
    assert csp_violations(auditor_page) == []

    assert not findings, "\n".join(findings)
