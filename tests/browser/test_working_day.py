"""A working day of every role in Chromium, told of its work by e-mail through a real SMTP server (aiosmtpd).

Staff send a file from the send page; the approver follows the link of the approval e-mail,
signs in and lands on the approvals, and approves; the biller follows the link of the
"available" e-mail, signs in and downloads the same bytes; the sender sees the download on the
transfer page; an auditor reads the biller's day in names.  Meanwhile another practice and
vendor work too.  The mailbox must hold every message the product sends for this day and no
other (none too early, none about another organisation's work, none holding PHI), and axe-core
finds nothing serious or critical at 390x844 and 1280x800 on any page visited.
"""

from __future__ import annotations

import hashlib
import re
import time
from urllib.parse import quote

import pyotp
import pytest
from fastapi.testclient import TestClient

from tests.browser.conftest import csp_violations
from tests.browser.test_accessibility import audit, axe_source  # noqa: F401 - a fixture
from tests.browser.test_transfer_journey import new_page, sign_in
from tests.conftest import api_login
from tests.support.smtp import PASSWORD, SmtpServer, make_ca_and_server_cert
from tests.transfers.conftest import PDF, record_baa

pytestmark = pytest.mark.browser

FILE_NAME = "denial appeal 2291.pdf"
PURPOSE = "APPEAL-DAY-2291"
NOTE = "Second level appeal for the knee MRI"
PACKET = b"%PDF-1.7\n" + b"synthetic appeal packet for the working day\n" * 20000 + b"%%EOF\n"
LINK = re.compile(r"Sign in to see the details: (\S+)")


def subject(received) -> str:
    """The subject as a reader sees it (a long one is folded onto continuation lines)."""
    return " ".join(str(received.message["Subject"]).split())


class Mail:
    """What the SMTP server took, by recipient; waits (bounded) for messages sent after a commit."""

    def __init__(self, server: SmtpServer, components):
        self.server, self.components = server, components

    def subjects(self) -> dict[str, list[str]]:
        with self.server.mailbox.lock:
            received = list(self.server.mailbox.received)
        out: dict[str, list[str]] = {}
        for r in received:
            for to in r.rcpt_tos:
                out.setdefault(to, []).append(subject(r))
        return {to: sorted(s) for to, s in out.items()}

    def wait_for(self, expected: dict[str, list[str]]) -> None:
        """Until the mailbox holds exactly `expected` (address -> subjects), for at most 20 s."""
        for _ in range(100):
            self.components.outbox.wait()
            if self.subjects() == {k: sorted(v) for k, v in expected.items()}:
                break
            time.sleep(0.2)
        assert self.subjects() == {k: sorted(v) for k, v in expected.items()}

    def undelivered(self) -> list[int]:
        from sqlalchemy import select

        from gateway.notifications.service import TOPIC
        from gateway.outbox import OutboxEntry

        self.components.outbox.wait()
        with self.components.db.sessions() as db:
            return list(
                db.scalars(select(OutboxEntry.id).where(OutboxEntry.topic == TOPIC, OutboxEntry.delivered_at.is_(None)))
            )

    def raw(self) -> bytes:
        with self.server.mailbox.lock:
            return b"".join(r.raw for r in self.server.mailbox.received)

    def link_to(self, address: str, wanted: str) -> str:
        with self.server.mailbox.lock:
            [message] = [r for r in self.server.mailbox.received if address in r.rcpt_tos and subject(r) == wanted]
        return LINK.search(message.body).group(1)


def email_of(components, user) -> str:
    from gateway.users.models import User

    with components.db.sessions() as db:
        return db.get(User, user.id).email


def full_name(components, user) -> str:
    from gateway.users.models import User

    with components.db.sessions() as db:
        return db.get(User, user.id).full_name


@pytest.fixture(autouse=True)
def mail_server(monkeypatch, tmp_path):
    """aiosmtpd on a loopback port (STARTTLS and a login), given to the gateway as an operator does: in
    PHIGATE_SMTP_* variables, read when the settings are built (autouse, so before them)."""
    directory = tmp_path / "mail"
    directory.mkdir()
    server = SmtpServer(make_ca_and_server_cert(directory)).start()
    monkeypatch.setenv("PHIGATE_SMTP_URL", server.url)
    monkeypatch.setenv("PHIGATE_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("PHIGATE_SMTP_CA_FILE", str(server.certs[0]))
    # Sign-ins at any hour raise no alert: the day's mail must not depend on when the suite runs.
    monkeypatch.setenv("PHIGATE_AUDIT_ALERT_ALLOWED_HOURS", "00-24")
    yield server
    server.stop()


@pytest.fixture
def mail(mail_server, components, public_server):
    """The mailbox of the server the gateway sends to; its links name PHIGATE_PUBLIC_URL, the server's address."""
    assert components.settings.smtp_url == mail_server.url
    assert components.settings.public_url == public_server
    return Mail(mail_server, components)


def sign_in_from_link(page, link: str, user, base: str, landing: str, axe_source: str, who: str) -> list[str]:
    """Open an e-mail's link signed out: each sign-in step carries its page, and the last one ends there."""
    wanted = quote(landing, safe="")
    findings = []
    page.goto(link)
    page.wait_for_url(f"{base}/login?next={wanted}")
    findings += audit(page, axe_source, f"sign-in ({who})")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/mfa?next={wanted}")
    findings += audit(page, axe_source, f"sign-in code ({who})")
    page.fill("input[name=code]", pyotp.TOTP(user.totp_secret).at(time.time()))
    page.click("form.card button[type=submit]")
    page.wait_for_url(f"{base}{landing}")
    return findings


def test_each_role_works_a_day_told_by_email(
    public_server, app, browser, factory, components, mail, axe_source, tmp_path
):
    base = public_server  # the address the e-mails' links name (PHIGATE_PUBLIC_URL)
    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    other_practice, other_vendor = factory.org("practice"), factory.org("vendor")
    staff = factory.user("practice_staff", practice)
    approver = factory.user("practice_approver", practice)
    biller = factory.user("biller", vendor)
    auditor = factory.user("auditor", operator)
    factory.user("admin", operator)  # an administrator is told of none of this
    other_staff = factory.user("practice_staff", other_practice)
    other_approver = factory.user("practice_approver", other_practice)
    factory.user("biller", other_vendor)
    record_baa(components, practice, vendor)
    record_baa(components, other_practice, other_vendor)
    to_staff, to_approver, to_biller, to_other_approver = (
        email_of(components, u) for u in (staff, approver, biller, other_approver)
    )
    awaits = f"PHI Gate: 1 transfer to {vendor.name} awaits your approval"
    available = f"PHI Gate: 1 transfer from {practice.name} is available for you to download"
    approved = f"PHI Gate: 1 transfer you sent to {vendor.name} was approved"
    downloaded = f"PHI Gate: {vendor.name} downloaded 1 transfer you sent"
    other_awaits = f"PHI Gate: 1 transfer to {other_vendor.name} awaits your approval"
    findings: list[str] = []

    # Another practice sends its vendor a file: its approver alone is told.
    with TestClient(app) as client:
        client.headers["X-CSRF-Token"] = api_login(client, other_staff)
        r = client.post(
            "/api/v1/transfers",
            params={"partner_id": other_vendor.id},
            content=PDF,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Purpose": "OTHER-PRACTICE-1",
                "Content-Disposition": "attachment; filename=other.pdf",
            },
        )
        assert r.status_code == 201, r.text
    mail.wait_for({to_other_approver: [other_awaits]})

    # 1. Staff send the file from the send page and land on the transfer, waiting for approval.
    source = tmp_path / FILE_NAME
    source.write_bytes(PACKET)
    staff_page = new_page(browser)
    sign_in(staff_page, base, staff)
    findings += audit(staff_page, axe_source, "home (staff)")
    staff_page.goto(f"{base}/transfers/new")
    findings += audit(staff_page, axe_source, "send page")
    staff_page.select_option("#partner", vendor.id)
    staff_page.fill("#purpose", PURPOSE)
    staff_page.fill("#note", NOTE)
    staff_page.set_input_files("#files", str(source))
    staff_page.click("#send")
    staff_page.wait_for_url(f"{base}/transfers/*", timeout=30000)
    assert staff_page.locator("#status").inner_text() == "waiting for approval"
    transfer_url = staff_page.url
    findings += audit(staff_page, axe_source, "transfer sent (staff)")

    # The approver, and no one else, is asked; the biller hears nothing before the approval. No e-mail
    # holds the file's name, purpose or note.
    mail.wait_for({to_other_approver: [other_awaits], to_approver: [awaits]})
    for secret in (FILE_NAME, "denial appeal", PURPOSE, NOTE, "knee"):
        assert secret.encode() not in mail.raw(), f"{secret!r} left by e-mail"

    # 2. The approver opens the e-mail's link signed out, signs in, lands on the approvals and approves
    # with a fresh code (the next TOTP step: the sign-in used this one).
    link = mail.link_to(to_approver, awaits)
    assert link == f"{base}/transfers/approvals"
    approver_page = new_page(browser)
    findings += sign_in_from_link(approver_page, link, approver, base, "/transfers/approvals", axe_source, "approver")
    findings += audit(approver_page, axe_source, "approvals")
    approver_page.click("#approvals a")
    assert approver_page.url == transfer_url
    findings += audit(approver_page, axe_source, "transfer to approve")
    approver_page.fill("#approve-form input[name=code]", pyotp.TOTP(approver.totp_secret).at(time.time() + 30))
    approver_page.click("#approve-form button[type=submit]")
    approver_page.wait_for_load_state()
    assert approver_page.locator("#status").inner_text() == "approved"
    findings += audit(approver_page, axe_source, "transfer approved (approver)")

    # The biller may now download it; the sender learns of the approval.
    mail.wait_for(
        {
            to_other_approver: [other_awaits],
            to_approver: [awaits],
            to_biller: [available],
            to_staff: [approved],
        }
    )

    # 3. The biller follows the "available" link, signs in, opens the transfer and downloads the same bytes.
    link = mail.link_to(to_biller, available)
    assert link == f"{base}/transfers"
    biller_page = new_page(browser, accept_downloads=True)
    findings += sign_in_from_link(biller_page, link, biller, base, "/transfers", axe_source, "biller")
    findings += audit(biller_page, axe_source, "transfers (biller)")
    biller_page.click("#inbox a")
    assert biller_page.url == transfer_url
    findings += audit(biller_page, axe_source, "transfer to download (biller)")
    with biller_page.expect_download() as info:
        biller_page.click("a.download")
    download = info.value
    assert download.suggested_filename == FILE_NAME
    received = tmp_path / "received.pdf"
    download.save_as(received)
    assert hashlib.sha256(received.read_bytes()).digest() == hashlib.sha256(PACKET).digest()

    # 4. The sender is told of the first complete download and sees it on the transfer's page: the
    # browser has every byte a moment before the gateway records the download as complete, so the page
    # is reloaded until that record is there (bounded).
    the_day = {
        to_other_approver: [other_awaits],
        to_approver: [awaits],
        to_biller: [available],
        to_staff: [approved, downloaded],
    }
    mail.wait_for(the_day)
    for _ in range(50):
        staff_page.reload()
        downloads = staff_page.locator("#downloads").inner_text()
        if "complete" in downloads:
            break
        time.sleep(0.2)
    assert FILE_NAME in downloads and "complete" in downloads
    assert full_name(components, biller) in downloads
    findings += audit(staff_page, axe_source, "transfer downloaded (staff)")

    # 5. The auditor reads the biller's day: people and organisations by name, ids only on hover.
    auditor_page = new_page(browser)
    sign_in(auditor_page, base, auditor)
    findings += audit(auditor_page, axe_source, "home (auditor)")
    auditor_page.goto(f"{base}/audit/activity")
    findings += audit(auditor_page, axe_source, "user-day form")
    auditor_page.fill("input[name=user]", biller.username)
    auditor_page.fill("input[name=day]", time.strftime("%Y-%m-%d", time.gmtime()))
    auditor_page.click("form.filters button[type=submit]")
    auditor_page.wait_for_url(f"{base}/audit/activity?*")
    assert full_name(components, biller) in auditor_page.locator("#report-scope").inner_text()
    table = auditor_page.locator("table.events tbody")
    actions = table.locator("tr td:nth-child(3)").all_inner_texts()
    assert "auth.login.succeeded" in actions and "transfer.download.completed" in actions, actions
    cells = table.inner_text()
    assert full_name(components, biller) in cells and vendor.name in cells and practice.name in cells
    for raw_id in (biller.id, vendor.id, practice.id):
        assert raw_id not in cells, raw_id
    findings += audit(auditor_page, axe_source, "user-day report")

    # The day is over: nothing waits in the outbox (sent, or refused), and the mailbox holds exactly the
    # day's messages.
    mail.wait_for(the_day)
    assert mail.undelivered() == []
    with mail.server.mailbox.lock:
        for r in mail.server.mailbox.received:
            # One recipient a message, named in its own To; every link leads to a page of this gateway.
            assert [r.message["To"]] == r.rcpt_tos and r.tls
            assert LINK.search(r.body).group(1) in (f"{base}/transfers", f"{base}/transfers/approvals")
    for page in (staff_page, approver_page, biller_page, auditor_page):
        assert csp_violations(page) == []
    assert not findings, "\n".join(findings)
