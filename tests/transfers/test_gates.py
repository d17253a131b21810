"""The approval gate, four-eyes, scoping and the download gate, through HTTP as an attacker would try them."""

from __future__ import annotations

import secrets

import pytest
from sqlalchemy import select

from gateway.transfers.models import Download, Transfer, TransferFile
from tests.transfers.conftest import PDF, events, sealed_of

BIG = b"%PDF-1.7\n" + bytes(range(256)) * (3 * 4096 + 17)  # a little over 3 MiB: several segments


def sent(staff, party, **kw):
    r = staff.upload(party.vendor.id, **kw)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def approved(staff, approver, party, **approve):
    tid = sent(staff, party, **approve.pop("upload", {}))
    r = approver.approve(tid, **approve)
    assert r.status_code == 200, r.text
    return tid, r.json()["files"][0]["id"]


def denial(db, tid):
    found = events(db, "transfer.download.denied", target_id=tid)
    return found[-1].details["reason"] if found else None


# -- scoping ----------------------------------------------------------------------


def test_other_organisations_transfers_answer_like_missing_ones(party, session_for, factory, components, db):
    from tests.transfers.conftest import record_baa

    staff = session_for(party.staff)
    tid = sent(staff, party)
    other_practice = factory.org("practice")
    outsider_staff = factory.user("practice_staff", other_practice)
    outsider_approver = factory.user("practice_approver", other_practice)
    other_vendor = factory.org("vendor")
    outsider_biller = factory.user("biller", other_vendor)
    record_baa(components, other_practice, other_vendor)
    missing = secrets.token_hex(16)
    for user in (outsider_staff, outsider_approver, outsider_biller):
        s = session_for(user)
        real = s.client.get(f"/api/v1/transfers/{tid}")
        fake = s.client.get(f"/api/v1/transfers/{missing}")
        assert real.status_code == fake.status_code == 404
        assert real.json() == fake.json() == {"error": {"code": "transfer_not_found", "message": "No such transfer."}}
        assert tid not in [t["id"] for t in s.client.get("/api/v1/transfers").json()]


def test_approver_of_another_practice_cannot_approve(party, session_for, factory, db):
    staff = session_for(party.staff)
    tid = sent(staff, party)
    other = session_for(factory.user("practice_approver", factory.org("practice")))
    r = other.approve(tid)
    assert r.status_code == 404
    db.expire_all()
    assert db.get(Transfer, tid).status.value == "awaiting_approval"
    db.commit()


def test_biller_sees_nothing_before_approval(party, session_for, db):
    staff, biller = session_for(party.staff), session_for(party.biller)
    tid = sent(staff, party)
    assert biller.client.get(f"/api/v1/transfers/{tid}").status_code == 404
    assert biller.client.get("/api/v1/transfers").json() == []
    file_id = db.scalars(select(TransferFile.id)).one()
    db.commit()
    r = biller.download(tid, file_id)
    assert r.status_code == 404
    assert denial(db, tid) == "not_found"


# -- four-eyes and step-up ----------------------------------------------------------


def test_uploader_can_never_approve_even_as_approver(party, session_for, db):
    approver = session_for(party.approver)
    tid = sent(approver, party)  # the approver uploads it themselves
    r = approver.approve(tid)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "four_eyes"
    assert events(db, "transfer.approve.denied", target_id=tid)[-1].details["reason"] == "four_eyes"
    assert approver.client.get(f"/api/v1/transfers/{tid}").json()["status"] == "awaiting_approval"


def test_uploader_promoted_to_approver_later_still_cannot_approve(party, session_for, components, db, fake_clock):
    from gateway.audit.service import Actor
    from gateway.users.models import Role, User
    from gateway.users.service import change_role

    staff = session_for(party.staff)
    tid = sent(staff, party)
    with components.db.transaction() as s:
        change_role(s, s.get(User, party.staff.id), Role.practice_approver, Actor.system())
    party.staff.role = "practice_approver"
    fake_clock.advance(seconds=30)  # the role change ended the session; sign in again with a new code
    promoted = session_for(party.staff)
    r = promoted.approve(tid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "four_eyes"


def test_approval_needs_a_fresh_totp_code(party, session_for, db, fake_clock):
    from datetime import timedelta

    from gateway.auth import totp

    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = sent(staff, party)
    r = approver.approve(tid, code="000000")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "login_failed"
    assert events(db, "transfer.approve.stepup_failed")
    # The code used to sign in (one step ago) cannot be replayed for the step-up either.
    login_code = totp.code_at(party.approver.totp_secret, fake_clock.current - timedelta(seconds=30))
    r = approver.approve(tid, code=login_code)
    assert r.status_code == 401
    assert approver.client.get(f"/api/v1/transfers/{tid}").json()["status"] == "awaiting_approval"


def test_staff_cannot_approve(party, session_for):
    staff = session_for(party.staff)
    tid = sent(staff, party)
    r = staff.approve(tid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_reject_with_reason_and_biller_never_sees_it(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = sent(staff, party)
    r = approver.client.post(f"/api/v1/transfers/{tid}/reject", json={"reason": "   "})
    assert r.status_code == 422
    r = approver.client.post(f"/api/v1/transfers/{tid}/reject", json={"reason": "wrong patient packet"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert biller.client.get(f"/api/v1/transfers/{tid}").status_code == 404
    assert events(db, "transfer.rejected", target_id=tid)
    assert approver.approve(tid).status_code == 409


# -- the download gate ----------------------------------------------------------------


def test_download_after_the_window_ends(party, session_for, db, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid, fid = approved(staff, approver, party, days=2)
    fake_clock.advance(days=2, seconds=1)
    biller = session_for(party.biller)  # a fresh sign-in: two days is past any session timeout
    r = biller.download(tid, fid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_window_ended"
    assert denial(db, tid) == "window_ended"
    assert biller.client.get("/api/v1/transfers/inbox").json() == []


def test_download_after_revocation(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    assert biller.download(tid, fid).status_code == 200
    r = approver.client.post(f"/api/v1/transfers/{tid}/revoke", json={"reason": "sent to the wrong vendor"})
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = biller.download(tid, fid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_revoked"
    assert denial(db, tid) == "revoked"


def test_download_limit(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=2)
    assert biller.download(tid, fid).status_code == 200
    assert biller.download(tid, fid).status_code == 200
    r = biller.download(tid, fid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
    assert denial(db, tid) == "limit_reached"


@pytest.mark.parametrize("how", ["terminated", "expired"])
def test_download_stops_when_the_baa_ends(party, session_for, db, components, fake_clock, how):
    from gateway.audit.service import Actor
    from gateway.baas.models import Baa
    from gateway.baas.service import terminate_baa

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, days=30)
    if how == "terminated":
        with components.db.transaction() as s:
            terminate_baa(s, s.get(Baa, party.baa_id), "contract ended", Actor.system())
    else:
        with components.db.transaction() as s:
            s.get(Baa, party.baa_id).expires_at = fake_clock.current
    r = biller.download(tid, fid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_baa_not_active"
    assert denial(db, tid) == "baa_not_active"


def test_only_named_recipients_download(party, session_for, db):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid, fid = approved(staff, approver, party, recipient_ids=[party.biller.id])
    other = session_for(party.biller2)
    assert other.client.get(f"/api/v1/transfers/{tid}").status_code == 404
    assert other.download(tid, fid).status_code == 404
    assert session_for(party.biller).download(tid, fid).status_code == 200


def test_approval_can_only_narrow_recipients(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = sent(staff, party, billers=[party.biller.id])
    r = approver.approve(tid, recipient_ids=[party.biller2.id])
    assert r.status_code == 422 and r.json()["error"]["code"] == "recipients_widened"


@pytest.mark.parametrize("role", ["practice_staff", "practice_approver", "auditor", "admin"])
def test_only_billers_download_outbound_files(party, session_for, db, role):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid, fid = approved(staff, approver, party)
    user = {
        "practice_staff": party.staff,
        "practice_approver": party.approver,
        "auditor": party.auditor,
        "admin": party.admin,
    }[role]
    r = session_for(user).download(tid, fid)
    assert r.status_code == 403
    assert r.json()["error"]["code"] in ("download_not_recipient", "forbidden")


def test_auditor_sees_metadata_never_names(party, session_for):
    staff, auditor = session_for(party.staff), session_for(party.auditor)
    tid = sent(staff, party, name="Jane Roe.pdf")
    t = auditor.client.get(f"/api/v1/transfers/{tid}").json()
    assert t["files"][0]["name"] is None and t["files"][0]["sha256"]


# -- ranges, integrity, aborts ----------------------------------------------------------


def test_range_requests_resume_a_download_and_nothing_after_it_completes(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=1, upload={"data": BIG})
    first = biller.download(tid, fid, Range="bytes=0-1048575")
    assert first.status_code == 206 and first.content == BIG[:1048576]
    assert first.headers["content-range"] == f"bytes 0-1048575/{len(BIG)}"
    rest = biller.download(tid, fid, Range="bytes=1048576-")
    assert rest.status_code == 206 and first.content + rest.content == BIG
    # The one download the limit allows is complete: no range of the file leaves again.
    for header in ("bytes=1000000-2200000", "bytes=-100", "bytes=1-", "bytes=0-"):
        r = biller.download(tid, fid, Range=header)
        assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
    assert biller.download(tid, fid).status_code == 403
    rows = db.scalars(select(Download).where(Download.file_id == fid)).all()
    db.commit()
    [d] = rows
    assert (d.outcome, d.delivered_to, d.resumptions, d.bytes_sent) == ("completed", len(BIG), 1, len(BIG))
    assert [e.details["resumed"] for e in events(db, "transfer.download.started", target_id=tid)] == [False, True]
    assert [
        e.action
        for e in events(db, target_id=tid)
        if e.action in ("transfer.download.range_delivered", "transfer.download.completed")
    ] == ["transfer.download.range_delivered", "transfer.download.completed"]


@pytest.mark.parametrize("header", ["bytes=5000000-", "bytes=10-5", "bytes=0-1,5-9", "items=0-1", "bytes=-"])
def test_unsatisfiable_ranges(party, session_for, db, header):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    r = biller.download(tid, fid, Range=header)
    assert r.status_code == 416 and r.json()["error"]["code"] == "range_not_satisfiable"
    assert denial(db, tid) == "bad_range"


def test_tampered_object_is_never_served(party, session_for, db, components):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, upload={"data": BIG})
    object_key = sealed_of(db, fid).object_key
    data = bytearray(b"".join(components.store.get(object_key)))
    data[200] ^= 0x01  # one bit in the first segment
    components.store.put(object_key, iter([bytes(data)]))
    r = biller.download(tid, fid)
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    assert b"%PDF" not in r.content
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.severity.value == "high" and failed.details["reason"] == "integrity_check_failed"


def test_tampering_in_a_later_segment_cuts_the_stream(party, session_for, db, components):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, upload={"data": BIG})
    object_key = sealed_of(db, fid).object_key
    data = bytearray(b"".join(components.store.get(object_key)))
    data[-100] ^= 0x01  # inside the last segment
    components.store.put(object_key, iter([bytes(data)]))
    with pytest.raises(Exception):  # noqa: B017 - whichever error the client library raises for a cut stream
        r = biller.download(tid, fid)
        assert len(r.content) < len(BIG)  # pragma: no cover - the client sees a broken stream
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.details["reason"] == "integrity_check_failed"
    assert failed.details["bytes_sent"] < len(BIG)


def test_download_aborted_by_the_client_is_logged(party, session_for, db, components):
    from gateway.audit.service import Actor
    from gateway.auth.service import Principal
    from gateway.transfers import download
    from gateway.users.models import User

    staff, approver = session_for(party.staff), session_for(party.approver)
    tid, fid = approved(staff, approver, party, upload={"data": BIG})
    user = db.get(User, party.biller.id)
    principal = Principal(user, None, None, Actor(user.id, user.org_id, "127.0.0.1", "test"))
    prepared = download.prepare(components, db, principal, tid, fid, None)
    got = next(prepared.body)
    prepared.body.close()  # what the server does when the connection drops
    aborted = events(db, "transfer.download.aborted", target_id=tid)[-1]
    assert aborted.details["bytes_sent"] == len(got) < len(BIG)
    assert db.scalars(select(Download.outcome)).all() == ["aborted"]
    db.commit()


# -- the vendor sends back ----------------------------------------------------------------


def test_vendor_sends_back_and_practice_downloads(party, session_for, db):
    biller, staff = session_for(party.biller), session_for(party.staff)
    r = biller.upload(party.practice.id, name="completed appeal.pdf")
    assert r.status_code == 201 and r.json()["status"] == "delivered"
    tid = r.json()["id"]
    t = staff.client.get(f"/api/v1/transfers/{tid}").json()
    assert t["direction"] == "inbound"
    r = staff.download(tid, t["files"][0]["id"])
    assert r.status_code == 200 and r.content == PDF
    # The biller who sent it back is not a recipient of the practice's copy.
    r = biller.download(tid, t["files"][0]["id"])
    assert r.status_code == 403
    file = db.scalars(select(Transfer).where(Transfer.id == tid)).one()
    assert file.key_id.startswith("org-")
    db.commit()


# -- emergency access ------------------------------------------------------------------


def test_emergency_access(party, session_for, db):
    staff, admin, biller, auditor = (
        session_for(party.staff),
        session_for(party.admin),
        session_for(party.biller),
        session_for(party.auditor),
    )
    tid = sent(staff, party)
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access", json={"hours": 4, "reason": " ", "code": admin.fresh_code()}
    )
    assert r.status_code == 422
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access",
        json={"hours": 4, "reason": "approver unreachable, appeal deadline today", "code": admin.fresh_code()},
    )
    assert r.status_code == 200 and r.json()["emergency"] is True
    opened = events(db, "transfer.emergency_access.opened", target_id=tid)[-1]
    assert opened.severity.value == "high" and opened.details["alert"] is True
    fid = r.json()["files"][0]["id"]
    assert biller.download(tid, fid).status_code == 200
    r = auditor.client.post(f"/api/v1/transfers/{tid}/emergency-review")
    assert r.status_code == 200
    assert events(db, "transfer.emergency_access.reviewed", target_id=tid)
    assert auditor.client.post(f"/api/v1/transfers/{tid}/emergency-review").status_code == 409


def test_emergency_access_is_for_admins_only(party, session_for):
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = sent(staff, party)
    r = approver.client.post(
        f"/api/v1/transfers/{tid}/emergency-access", json={"hours": 4, "reason": "x", "code": approver.fresh_code()}
    )
    assert r.status_code == 403


def test_emergency_access_alerts_and_waits_on_the_auditors_dashboard(party, session_for, db, components):
    from gateway.auditor.alerts import evaluate

    staff, admin, auditor = session_for(party.staff), session_for(party.admin), session_for(party.auditor)
    tid = sent(staff, party)
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access",
        json={"hours": 2, "reason": "approver on leave", "code": admin.fresh_code()},
    )
    assert r.status_code == 200
    page = auditor.client.get("/audit")
    assert tid in page.text and "approver on leave" in page.text
    # The alert was raised with the event itself: the scheduled rules find nothing left to raise.
    assert "transfer.emergency_access.opened (success)" in page.text.split('id="alerts"')[1]
    with components.db.transaction() as s:
        raised = evaluate(s, components.settings)
    assert not any(a.rule == "high_severity_event" and a.subject == tid for a in raised)
    auditor.client.post(f"/api/v1/transfers/{tid}/emergency-review")
    assert tid not in auditor.client.get("/audit").text.split('id="emergencies"')[1].split("</section>")[0]
