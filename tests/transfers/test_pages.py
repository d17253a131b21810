"""The server-rendered transfer and BAA pages, driven with form posts as a browser would."""

from __future__ import annotations

import re

from tests.transfers.conftest import PDF, events


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_pages_per_role(party, session_for):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id, name="letter.pdf").json()["id"]

    page = staff.client.get("/transfers/new")
    assert page.status_code == 200 and party.vendor.name in page.text and "/static/upload.js" in page.text
    page = staff.client.get(f"/transfers/{tid}")
    assert "waiting for approval" in page.text and "letter.pdf" in page.text
    assert 'id="approve-form"' not in page.text  # staff never see the decision forms

    page = approver.client.get("/transfers/approvals")
    assert f"/transfers/{tid}" in page.text
    page = approver.client.get(f"/transfers/{tid}")
    assert 'id="approve-form"' in page.text and 'id="reject-form"' in page.text

    page = biller.client.get("/transfers/new")
    assert party.practice.name in page.text  # a biller sends back to the practices it serves
    assert biller.client.get(f"/transfers/{tid}").status_code == 404


def test_approve_and_download_through_the_pages(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id, name="letter.pdf").json()["id"]
    page = approver.client.get(f"/transfers/{tid}")
    form = {"csrf_token": csrf_of(page.text), "days": "3", "download_limit": "", "code": "000000"}
    r = approver.client.post(f"/transfers/{tid}/approve", data=form)
    assert r.status_code == 422 and "The authenticator code is not correct" in r.text  # the step-up failure
    form["code"] = approver.fresh_code()
    r = approver.client.post(f"/transfers/{tid}/approve", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/transfers/{tid}"

    page = biller.client.get("/transfers")
    assert f"/transfers/{tid}" in page.text
    page = biller.client.get(f"/transfers/{tid}")
    link = re.search(r'href="(/transfers/[^"]+/download)"', page.text).group(1)
    r = biller.client.get(link)
    assert r.status_code == 200 and r.content == PDF
    assert r.headers["content-disposition"] == "attachment; filename=\"letter.pdf\"; filename*=UTF-8''letter.pdf"


def test_denied_download_page_is_html_without_details(party, session_for):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id).json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    approver.client.post(f"/api/v1/transfers/{tid}/revoke", json={"reason": "wrong packet"})
    r = biller.client.get(f"/transfers/{tid}/files/{fid}/download")
    assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
    assert "revoked" in r.text and "Traceback" not in r.text


def test_form_posts_need_the_csrf_token(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    approver.client.headers.pop("X-CSRF-Token")
    r = approver.client.post(f"/transfers/{tid}/reject", data={"reason": "x"})
    assert (r.status_code == 403 and "csrf" in r.text.lower()) or "expired" in r.text
    assert approver.client.get(f"/api/v1/transfers/{tid}").json()["status"] == "awaiting_approval"


def test_admin_records_and_terminates_a_baa_in_the_pages(party, session_for, factory, db):
    admin = session_for(party.admin)
    vendor = factory.org("vendor")
    page = admin.client.get("/admin/baas")
    token = csrf_of(page.text)
    r = admin.client.post(
        "/admin/baas",
        data={
            "csrf_token": token,
            "practice_id": party.practice.id,
            "vendor_id": vendor.id,
            "reference": "BAA-2026-17",
            "effective": "2026-01-01",
            "expires": "not-a-date",
        },
    )
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text
    r = admin.client.post(
        "/admin/baas",
        data={
            "csrf_token": token,
            "practice_id": party.practice.id,
            "vendor_id": vendor.id,
            "reference": "BAA-2026-17",
            "effective": "2026-01-01",
            "expires": "",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    recorded = events(db, "baa.recorded")[-1]
    assert recorded.details["vendor_id"] == vendor.id
    baa_id = recorded.target_id
    # Without the confirmation step nothing happens: the answer is the confirmation page.
    r = admin.client.post(f"/admin/baas/{baa_id}/terminate", data={"csrf_token": token, "reason": "contract ended"})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and "BAA-2026-17" in r.text
    assert not events(db, "baa.terminated")
    r = admin.client.post(
        f"/admin/baas/{baa_id}/terminate",
        data={"csrf_token": token, "reason": "contract ended", "confirmed": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert events(db, "baa.terminated")[-1].target_id == baa_id
    staff = session_for(party.staff)
    assert vendor.name not in staff.client.get("/transfers/new").text


def test_baa_pages_are_for_admins(party, session_for):
    for user in (party.staff, party.approver, party.biller, party.auditor):
        s = session_for(user)
        assert s.client.get("/admin/baas").status_code == 403
        assert s.client.get("/api/v1/baas").status_code == 403
