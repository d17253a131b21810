"""The home page of each role shows the work waiting for it, and every page's navigation counts it."""

from __future__ import annotations

import re

from tests.transfers.conftest import party, record_baa, session_for  # noqa: F401 - fixtures
from tests.transfers.test_gates import sent


def _section(html: str, section_id: str) -> str:
    return html.split(f'id="{section_id}"')[1].split("</section>")[0]


def _badge(html: str, label: str) -> int | None:
    found = re.search(rf">{label} <span class=\"count\" aria-label=\"[^\"]+\">(\d+)</span></a>", html)
    return int(found.group(1)) if found else None


def test_approver_sees_what_waits_with_its_age_and_the_count_on_every_page(party, session_for, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    first = sent(staff, party)
    fake_clock.advance(minutes=10)  # within the session's idle timeout
    sent(staff, party)
    home = approver.client.get("/home").text
    waiting = _section(home, "waiting-approval")
    assert "Waiting for your approval (2)" in waiting
    assert "10 min" in waiting and f'href="/transfers/{first}"' in waiting and party.vendor.name in waiting
    # The count follows the approver to every page, and drops as they decide.
    for path in ("/home", "/account", "/transfers", f"/transfers/{first}"):
        assert _badge(approver.client.get(path).text, "Approvals") == 2, path
    assert approver.approve(first).status_code == 200
    assert _badge(approver.client.get("/account").text, "Approvals") == 1
    # The sender's page carries no approval badge; what they sent is listed with its state.
    assert _badge(staff.client.get("/home").text, "Approvals") is None


def test_staff_see_each_transfer_they_sent_with_its_state_and_who_downloaded_it_when(party, session_for, fake_clock):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    downloaded = sent(staff, party)
    assert approver.approve(downloaded, days=1).status_code == 200
    fid = staff.client.get(f"/api/v1/transfers/{downloaded}").json()["files"][0]["id"]
    assert biller.download(downloaded, fid).status_code == 200
    rejected = sent(staff, party)
    assert (
        approver.client.post(f"/api/v1/transfers/{rejected}/reject", json={"reason": "wrong file"}).status_code == 200
    )
    waiting = sent(staff, party)

    rows = {
        tid: row
        for row in _section(staff.client.get("/home").text, "sent").split("<tr>")[2:]
        for tid in (downloaded, rejected, waiting)
        if f"/transfers/{tid}" in row
    }
    assert "approved, until" in rows[downloaded] and "Test User" in rows[downloaded] and "UTC" in rows[downloaded]
    assert "rejected" in rows[rejected] and "not yet" in rows[rejected]
    assert "awaiting approval" in rows[waiting]
    fake_clock.advance(days=1, minutes=1)
    staff = session_for(party.staff)  # the old session timed out meanwhile
    assert "expired" in _section(staff.client.get("/home").text, "sent")
    # Another sender's transfers are not in this list.
    other = session_for(party.approver)
    assert f"/transfers/{downloaded}" not in _section(other.client.get("/home").text, "sent")


def test_biller_sees_files_received_and_not_yet_downloaded(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    biller, biller2 = session_for(party.biller), session_for(party.biller2)
    mine = sent(staff, party, billers=[party.biller.id])
    shared = sent(staff, party)
    for tid in (mine, shared):
        assert approver.approve(tid).status_code == 200
    home = biller.client.get("/home").text
    assert "Received, not downloaded yet (2)" in home and _badge(home, "Transfers") == 2
    assert party.practice.name in _section(home, "to-fetch")
    assert _badge(biller2.client.get("/home").text, "Transfers") == 1  # not named on the first one

    fid = staff.client.get(f"/api/v1/transfers/{mine}").json()["files"][0]["id"]
    assert biller.download(mine, fid).status_code == 200
    home = biller.client.get("/home").text
    assert "Received, not downloaded yet (1)" in home and f"/transfers/{mine}" not in _section(home, "to-fetch")
    assert _badge(biller2.client.get("/home").text, "Transfers") == 1  # one biller's download is not another's


def test_auditor_sees_open_alerts_and_emergency_access_to_review(party, session_for):
    staff, admin, auditor = session_for(party.staff), session_for(party.admin), session_for(party.auditor)
    assert "No open alerts." in auditor.client.get("/home").text
    tid = sent(staff, party)
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access",
        json={"hours": 2, "reason": "approver on leave", "code": admin.fresh_code()},
    )
    assert r.status_code == 200
    home = auditor.client.get("/home").text
    assert "Open alerts (1)" in home and "transfer.emergency_access.opened" in _section(home, "open-alerts")
    assert f"/transfers/{tid}" in _section(home, "emergencies")
    assert _badge(home, "Audit") == 2


def test_admin_sees_baas_ending_soon_and_accounts_due_for_review(party, session_for, components, factory, fake_clock):
    ending = factory.org("vendor", name="Short Contract Billing")
    record_baa(components, party.practice, ending, days=10)
    admin = session_for(party.admin)
    home = admin.client.get("/home").text
    baas = _section(home, "expiring-baas")
    assert "Short Contract Billing" in baas and party.vendor.name not in baas  # the year-long one is not due
    assert _badge(home, "BAAs") == 1
    assert "No account is due for review." in home

    fake_clock.advance(days=components.settings.audit_inactivity_days - 13)
    admin = session_for(party.admin)  # signs in again: not due
    due = _section(admin.client.get("/home").text, "accounts-due")
    assert party.biller2.username in due and party.admin.username not in due
    # Everyone but the admin, who just signed in, has been idle that long.
    assert _badge(admin.client.get("/home").text, "Users") == 5


def test_no_counts_before_the_second_factor(party, session_for, client):
    sent(session_for(party.staff), party)
    r = client.post(
        "/api/v1/auth/login", json={"username": party.approver.username, "password": party.approver.password}
    )
    assert r.status_code == 200 and r.json()["stage"] == "mfa"
    page = client.get("/mfa")
    assert page.status_code == 200 and 'class="count"' not in page.text
