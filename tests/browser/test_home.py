"""In Chromium: the approval e-mail's link leads, through sign-in, to the approvals it names; the home page lists
the work waiting, with its count in the navigation, under the strict CSP."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from tests.browser.conftest import csp_violations, enter_code, enter_password, send_through_api
from tests.browser.test_transfer_journey import new_page
from tests.support.smtp import PASSWORD, SmtpServer, make_ca_and_server_cert
from tests.transfers.conftest import record_baa

pytestmark = pytest.mark.browser


def test_the_notification_link_leads_the_approver_to_the_waiting_transfer(
    server, public_server, app, browser, factory, components, tmp_path
):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    staff = factory.user("practice_staff", practice)
    approver = factory.user("practice_approver", practice)
    record_baa(components, practice, vendor)
    mail = SmtpServer(make_ca_and_server_cert(tmp_path)).start()
    try:
        s = components.settings
        s.smtp_url, s.smtp_password, s.smtp_ca_file = mail.url, SecretStr(PASSWORD), mail.certs[0]

        # Staff send a file through the API; the approver is mailed after the commit.
        send_through_api(app, staff, vendor, "APPEAL-BROWSER-HOME")
        components.outbox.wait()
        [message] = mail.mailbox.received
        link = re.search(r"Sign in to see the details: (\S+)", message.body).group(1)
        assert link == f"{public_server}/transfers/approvals"
    finally:
        mail.stop()

    page = new_page(browser)
    page.goto(link)
    page.wait_for_url(f"{public_server}/login?next=%2Ftransfers%2Fapprovals")  # not signed in yet
    enter_password(page, approver)
    enter_code(page, public_server, approver, landing="/transfers/approvals")  # the link's page, once signed in
    page.goto(f"{public_server}/home")
    assert page.locator("nav a[href='/transfers/approvals'] .count").inner_text() == "1"
    assert "Waiting for your approval (1)" in page.locator("#waiting-approval h2").inner_text()
    page.screenshot(path=str(tmp_path / "home.png"), full_page=True)
    page.click("#waiting-approval a")
    assert page.locator("#status").inner_text() == "waiting for approval"
    assert csp_violations(page) == []
