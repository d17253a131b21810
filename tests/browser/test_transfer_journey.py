"""Journeys 1-3 in a real browser: staff upload, the approver approves, the biller downloads the same bytes."""

from __future__ import annotations

import hashlib
import time

import pyotp
import pytest

from tests.browser.conftest import csp_violations, sign_in
from tests.transfers.conftest import record_baa

pytestmark = pytest.mark.browser

PDF = b"%PDF-1.7\n" + b"synthetic appeal packet for the browser journey\n" * 40000 + b"%%EOF\n"


def new_page(browser, **context):
    page = browser.new_context(**context).new_page()
    page.console_messages_seen = []
    page.on("console", lambda m: page.console_messages_seen.append((m.type, m.text)))
    return page


def biller_name(components, user_id: str) -> str:
    from gateway.users.models import User

    with components.db.sessions() as db:
        return db.get(User, user_id).full_name


def test_upload_approve_download(server, browser, factory, components, tmp_path):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    staff = factory.user("practice_staff", practice)
    approver = factory.user("practice_approver", practice)
    biller = factory.user("biller", vendor)
    record_baa(components, practice, vendor)
    source = tmp_path / "appeal packet.pdf"
    source.write_bytes(PDF)

    # 1. Practice staff send the file, watching the progress bar, and land on "waiting for approval".
    staff_page = new_page(browser)
    sign_in(staff_page, server, staff)
    staff_page.goto(f"{server}/transfers/new")
    staff_page.select_option("#partner", vendor.id)
    staff_page.fill("#purpose", "APPEAL-BROWSER-1")
    staff_page.set_input_files("#files", str(source))
    staff_page.click("#send")
    staff_page.wait_for_url(f"{server}/transfers/*", timeout=30000)
    assert staff_page.locator("#status").inner_text() == "waiting for approval"
    assert "appeal packet.pdf" in staff_page.locator("#files").inner_text()
    transfer_url = staff_page.url
    assert csp_violations(staff_page) == []

    # 2. The approver approves with a fresh code (the next TOTP step: the sign-in used this one).
    approver_page = new_page(browser)
    sign_in(approver_page, server, approver)
    approver_page.goto(f"{server}/transfers/approvals")
    approver_page.click("#approvals a")
    assert approver_page.url == transfer_url
    approver_page.fill("#approve-form input[name=code]", pyotp.TOTP(approver.totp_secret).at(time.time() + 30))
    approver_page.click("#approve-form button[type=submit]")
    approver_page.wait_for_load_state()
    assert approver_page.locator("#status").inner_text() == "approved"
    assert csp_violations(approver_page) == []

    # 3. The biller finds it in the inbox and downloads it; the bytes are the bytes sent.
    biller_page = new_page(browser, accept_downloads=True)
    sign_in(biller_page, server, biller)
    biller_page.goto(f"{server}/transfers")
    biller_page.click("#inbox a")
    with biller_page.expect_download() as info:
        biller_page.click("a.download")
    download = info.value
    assert download.suggested_filename == "appeal packet.pdf"
    received = tmp_path / "received.pdf"
    download.save_as(received)
    assert hashlib.sha256(received.read_bytes()).hexdigest() == hashlib.sha256(PDF).hexdigest()
    assert csp_violations(biller_page) == []

    # 4. The sender sees who downloaded which file, when, and that it arrived whole. The browser has
    # every byte a moment before the gateway's closing transaction records the download as complete,
    # so the sender's page is reloaded until that record is there (the wait is bounded; it never passes
    # on a download that stays partial).
    for _ in range(50):
        staff_page.reload()
        downloads = staff_page.locator("#downloads").inner_text()
        if "complete" in downloads:
            break
        time.sleep(0.2)
    assert "appeal packet.pdf" in downloads and "complete" in downloads and "UTC" in downloads
    assert biller_name(components, biller.id) in downloads
