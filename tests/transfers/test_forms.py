"""The transfer pages as a browser without script meets them: forms keep what was typed, no dead ends,
consequential actions wait for a confirmation, error pages keep the menu, pages tell themselves apart."""

from __future__ import annotations

import re

from tests.transfers.conftest import events


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def field(html: str, form_id: str) -> str:
    """The HTML of one form of the page."""
    return re.search(rf'<form [^>]*id="{form_id}".*?</form>', html, re.S).group(0)


def status_of(s, tid: str) -> str:
    return s.client.get(f"/api/v1/transfers/{tid}").json()["status"]


def test_a_refused_approval_keeps_the_window_limit_and_billers(party, session_for, factory, db):
    staff, approver = session_for(party.staff), session_for(party.approver)
    other = factory.user("biller", party.vendor)
    tid = staff.upload(party.vendor.id).json()["id"]
    token = csrf_of(approver.client.get(f"/transfers/{tid}").text)
    form = {
        "csrf_token": token,
        "days": "5",
        "download_limit": "2",
        "recipient_ids": [party.biller.id],
        "code": "000000",
    }
    r = approver.client.post(f"/transfers/{tid}/approve", data=form)
    assert r.status_code == 422
    assert "The authenticator code is not correct." in r.text and "username, password" not in r.text
    approve = field(r.text, "approve-form")
    assert re.search(r'name="days"[^>]*value="5"', approve)
    assert re.search(r'name="download_limit"[^>]*value="2"', approve)
    assert re.search(rf'<option value="{party.biller.id}" selected>', approve)
    assert not re.search(rf'<option value="{other.id}" selected>', approve)
    # The page names its own address: the browser shows /transfers/<id>, not the form's URL.
    assert f'<link rel="canonical" href="/transfers/{tid}">' in r.text
    assert status_of(staff, tid) == "awaiting_approval"
    # The form's address opened as a page (a reload after the script moved it, a bookmark) is the page.
    r = approver.client.get(f"/transfers/{tid}/approve", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/transfers/{tid}"

    # Corrected with the right code, the approval is the one that was chosen, not the defaults.
    form["code"] = approver.fresh_code()
    r = approver.client.post(f"/transfers/{tid}/approve", data=form, follow_redirects=False)
    assert r.status_code == 303
    approved = events(db, "transfer.approved")[-1].details
    assert approved["days"] == 5 and approved["download_limit"] == 2 and approved["recipients"] == [party.biller.id]


def test_a_download_limit_that_is_not_a_number_is_refused_not_dropped(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    token = csrf_of(approver.client.get(f"/transfers/{tid}").text)
    form = {"csrf_token": token, "days": "3", "download_limit": "1e3", "code": approver.fresh_code()}
    r = approver.client.post(f"/transfers/{tid}/approve", data=form)
    assert r.status_code == 422 and "whole number" in r.text
    assert re.search(r'name="download_limit"[^>]*value="1e3"', r.text)
    # Refused, not read as "no limit": nothing was approved.
    assert status_of(staff, tid) == "awaiting_approval"
    form = {"csrf_token": token, "days": "", "download_limit": "", "code": approver.fresh_code()}
    r = approver.client.post(f"/transfers/{tid}/approve", data=form)
    assert r.status_code == 422 and "whole number of days" in r.text
    assert status_of(staff, tid) == "awaiting_approval"


def test_reject_and_revoke_wait_for_a_confirmation(party, session_for, db):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    page = approver.client.get(f"/transfers/{tid}").text
    reject = field(page, "reject-form")
    assert 'data-confirm="' in reject and 'name="confirmed" value=""' in reject
    token = csrf_of(page)

    # One click (a browser without script): a page asking to confirm, carrying the reason; nothing done.
    r = approver.client.post(f"/transfers/{tid}/reject", data={"csrf_token": token, "reason": "wrong patient"})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text
    confirm = field(r.text, "confirm-form")
    assert f'action="/transfers/{tid}/reject"' in confirm and 'name="reason" value="wrong patient"' in confirm
    assert 'name="confirmed" value="yes"' in confirm and f'href="/transfers/{tid}"' in confirm
    assert status_of(staff, tid) == "awaiting_approval" and not events(db, "transfer.rejected")
    # A transfer the approver cannot see gets no confirmation page either.
    r = approver.client.post(f"/transfers/{'0' * 32}/reject", data={"csrf_token": token, "reason": "x"})
    assert r.status_code == 404 and 'id="confirm-form"' not in r.text

    r = approver.client.post(
        f"/transfers/{tid}/reject",
        data={"csrf_token": token, "reason": "wrong patient", "confirmed": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and status_of(staff, tid) == "rejected"

    # Revoke: the same guarantee.
    tid = staff.upload(party.vendor.id).json()["id"]
    approver.approve(tid)
    r = approver.client.post(f"/transfers/{tid}/revoke", data={"csrf_token": token, "reason": "sent too much"})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and status_of(staff, tid) == "approved"
    r = approver.client.post(
        f"/transfers/{tid}/revoke", data={"csrf_token": token, "reason": "sent too much", "confirmed": "yes"}
    )
    assert r.status_code == 200 and status_of(staff, tid) == "revoked"


def test_a_refused_rejection_keeps_its_reason(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    token = csrf_of(approver.client.get(f"/transfers/{tid}").text)
    r = approver.client.post(
        f"/transfers/{tid}/reject", data={"csrf_token": token, "reason": "   ", "confirmed": "yes"}
    )
    assert r.status_code == 422 and "Give a reason" in r.text
    assert re.search(r'name="reason"[^>]*value="   "', field(r.text, "reject-form"))
    assert status_of(staff, tid) == "awaiting_approval"


def test_revoke_is_offered_only_where_it_applies(party, session_for, factory):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    # Pending: the approver decides (reject); revoking is not offered beside it.
    page = approver.client.get(f"/transfers/{tid}").text
    assert 'id="reject-form"' in page and 'id="revoke-form"' not in page
    # The approver who uploaded it cannot decide, but may withdraw it.
    own = approver.upload(party.vendor.id).json()["id"]
    page = approver.client.get(f"/transfers/{own}").text
    assert 'id="approve-form"' not in page and 'id="revoke-form"' in page and "Withdraw" in page
    # Approved and open: revoke is there; once access ended, it is not.
    approver.approve(tid, days=1)
    assert 'id="revoke-form"' in approver.client.get(f"/transfers/{tid}").text
    approver.clock.advance(days=2)
    approver = session_for(party.approver)  # the old session ended long ago
    page = approver.client.get(f"/transfers/{tid}").text
    assert 'id="revoke-form"' not in page and "Ended on" in page


def test_no_download_link_when_revoked_expired_or_used_up(party, session_for):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)

    def approved(**body) -> tuple[str, str]:
        tid = staff.upload(party.vendor.id).json()["id"]
        fid = approver.approve(tid, **body).json()["files"][0]["id"]
        return tid, fid

    open_tid, _ = approved(days=3)
    page = biller.client.get(f"/transfers/{open_tid}").text
    assert "Access until" in page and 'class="download"' in page

    revoked, fid = approved(days=3)
    approver.client.post(f"/api/v1/transfers/{revoked}/revoke", json={"reason": "wrong packet"})
    page = biller.client.get(f"/transfers/{revoked}").text
    assert "Access until" not in page and 'class="download"' not in page and "Revoked on" in page
    assert "revoked" in field_cell(page)

    used, fid = approved(days=3, download_limit=1)
    assert biller.download(used, fid).status_code == 200
    page = biller.client.get(f"/transfers/{used}").text
    assert "Access until" not in page and 'class="download"' not in page
    assert "Download limit used up" in page and "download limit used up" in field_cell(page)
    # Staff, who never download an outbound transfer, see the same state.
    assert "Download limit used up" in staff.client.get(f"/transfers/{used}").text

    expired, _ = approved(days=1)
    staff.clock.advance(days=1, seconds=1)
    biller = session_for(party.biller)  # the old session ended long ago
    page = biller.client.get(f"/transfers/{expired}").text
    assert "Access until" not in page and 'class="download"' not in page and "Ended on" in page
    assert "access ended" in field_cell(page)
    row = re.search(
        rf'<tr>(?:(?!</tr>).)*/transfers/{expired}"(?:(?!</tr>).)*</tr>', staff_list(session_for, party), re.S
    )
    assert "approved · access ended" in row.group(0)


def staff_list(session_for, party) -> str:
    return session_for(party.staff).client.get("/transfers").text


def test_no_download_link_without_a_baa_in_force(party, session_for, components):
    from gateway.audit.service import Actor
    from gateway.baas import service as baas

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id).json()["id"]
    approver.approve(tid, days=3)
    with components.db.transaction() as db:
        baas.terminate_baa(db, baas.get_baa(db, party.baa_id), "contract ended", Actor())
    page = biller.client.get(f"/transfers/{tid}").text
    assert "Access until" not in page and 'class="download"' not in page and "No BAA in force" in page
    assert "no BAA in force" in field_cell(page)


def field_cell(page: str) -> str:
    """The files table of a transfer page."""
    return re.search(r'<table id="files">.*?</table>', page, re.S).group(0)


def test_error_pages_keep_the_menu_and_say_what_they_are(party, session_for, app):
    from fastapi.testclient import TestClient

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id).json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    approver.client.post(f"/api/v1/transfers/{tid}/revoke", json={"reason": "wrong packet"})
    r = biller.client.get(f"/transfers/{tid}/files/{fid}/download")
    assert r.status_code == 403 and "<nav>" in r.text and "Sign out" in r.text
    assert "<title>403 Forbidden · PHI Gate</title>" in r.text and party.biller.username in r.text
    r = biller.client.get("/no/such/page")
    assert r.status_code == 404 and "<nav>" in r.text and "<title>404 Not Found · PHI Gate</title>" in r.text
    r = biller.client.get(f"/transfers/{'0' * 32}")
    assert r.status_code == 404 and "<nav>" in r.text
    # Nobody signed in: the same page, no menu.
    with TestClient(app) as anon:
        r = anon.get("/no/such/page")
        assert r.status_code == 404 and "<nav>" not in r.text and "Sign out" not in r.text


def test_transfer_pages_have_titles_of_their_own_and_an_icon(party, session_for, app):
    staff, approver = session_for(party.staff), session_for(party.approver)
    first = staff.upload(party.vendor.id).json()["id"]
    second = staff.upload(party.vendor.id).json()["id"]
    approver.approve(second)
    a, b = staff.client.get(f"/transfers/{first}").text, staff.client.get(f"/transfers/{second}").text
    assert f"<title>Transfer {first[:8]} (waiting for approval) · PHI Gate</title>" in a
    assert f"<title>Transfer {second[:8]} (approved) · PHI Gate</title>" in b
    assert '<link rel="icon" href="/static/favicon.svg"' in a
    r = staff.client.get("/favicon.ico", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/static/favicon.svg"
    icon = staff.client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert staff.client.get("/static/forms.js").status_code == 200


def test_refused_emergency_access_and_token_forms_keep_what_was_typed(party, session_for):
    staff, admin = session_for(party.staff), session_for(party.admin)
    tid = staff.upload(party.vendor.id).json()["id"]
    token = csrf_of(admin.client.get(f"/transfers/{tid}").text)
    body = {"csrf_token": token, "hours": "6", "reason": "no approver on call", "code": "000000", "confirmed": "yes"}
    r = admin.client.post(f"/transfers/{tid}/emergency-access", data=body)
    assert r.status_code == 422 and "The authenticator code is not correct." in r.text
    form = field(r.text, "emergency-form")
    assert re.search(r'name="hours"[^>]*value="6"', form) and 'value="no approver on call"' in form
    assert status_of(staff, tid) == "awaiting_approval"

    r = admin.client.post(
        "/account/tokens", data={"csrf_token": token, "name": "nightly export", "days": "90", "code": "000000"}
    )
    assert r.status_code == 422 and "The authenticator code is not correct." in r.text
    form = field(r.text, "token-form")
    assert 'value="nightly export"' in form and re.search(r'name="days"[^>]*value="90"', form)
    assert 'name="code"' in form and not re.search(r'name="code"[^>]*value="000000"', form)
    assert '<link rel="canonical" href="/account">' in r.text
