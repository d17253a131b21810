"""Retention and offboarding through HTTP, as an attacker would try them."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import func, select

from gateway.baas.models import Baa, BaaStatus
from gateway.transfers.models import TransferFile
from retention.certificates import verify_document
from retention.models import DestructionJob
from tests.retention.conftest import events


def _offboard_body(party, s, **over):
    return {
        "vendor_id": party.vendor.id,
        "reason": "contract ended",
        "confirm_name": party.vendor.name,
        "code": s.fresh_code(),
        **over,
    }


def test_admin_offboards_through_the_api_and_auditor_downloads_the_certificate(party, seeded, session_for, db):
    ids = seeded(2)
    admin = session_for(party.admin)
    r = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin))
    assert r.status_code == 200, r.text
    [scope] = r.json()["scopes"]
    assert scope["destroyed"] == 2
    cert_id = scope["certificate_id"]

    auditor = session_for(party.auditor)
    listed = auditor.client.get("/api/v1/certificates").json()
    assert [c["id"] for c in listed] == [cert_id]
    doc = auditor.client.get(f"/api/v1/certificates/{cert_id}")
    assert doc.status_code == 200 and verify_document(doc.content)[0].ok
    assert hashlib.sha256(doc.content).hexdigest() == listed[0]["sha256"]
    pdf = auditor.client.get(f"/api/v1/certificates/{cert_id}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF-")
    page = auditor.client.get("/certificates")
    assert page.status_code == 200 and cert_id in page.text and ids[0] in page.text
    assert auditor.client.get(f"/certificates/{cert_id}.pdf").content.startswith(b"%PDF-")
    tombs = auditor.client.get("/api/v1/retention/tombstones").json()
    assert {t["transfer_id"] for t in tombs} == set(ids) and all(len(t["sha256"]) == 64 for t in tombs)
    # An auditor never gets file contents, destroyed or not.
    f = db.scalar(select(TransferFile).where(TransferFile.transfer_id == ids[0]))
    db.commit()
    r = auditor.client.get(f"/api/v1/transfers/{ids[0]}/files/{f.id}/content")
    assert r.status_code in (403, 404, 410)
    assert b"synthetic" not in r.content


@pytest.mark.parametrize("role", ["practice_staff", "practice_approver", "biller", "auditor"])
def test_only_an_admin_can_offboard(party, seeded, session_for, db, role):
    seeded(1)
    user = {
        "practice_staff": party.staff,
        "practice_approver": party.approver,
        "biller": party.biller,
        "auditor": party.auditor,
    }[role]
    s = session_for(user)
    r = s.client.post("/api/v1/offboarding", json=_offboard_body(party, s))
    assert r.status_code == 403
    r = s.client.post("/admin/offboarding", data=_offboard_body(party, s))
    assert r.status_code == 403
    for path in ("/api/v1/retention/policies", "/admin/retention", "/admin/offboarding"):
        assert s.client.get(path).status_code == 403
    assert (
        s.client.post(
            "/api/v1/retention/holds", json={"scope": "vendor", "target_id": party.vendor.id, "reference": "X"}
        ).status_code
        == 403
    )
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    assert db.scalar(select(func.count()).select_from(DestructionJob)) == 0
    db.commit()


def test_confirmation_and_step_up_are_required(party, seeded, session_for, db):
    seeded(1)
    admin = session_for(party.admin)
    r = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin, confirm_name="wrong name"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "confirmation_mismatch"
    r = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin, code="000000"))
    assert r.status_code == 401
    assert events(db, "offboarding.stepup_failed")
    # The page says the same, and nothing happened either way.
    r = admin.client.post(
        "/admin/offboarding", data=_offboard_body(party, admin, confirm_name=party.vendor.name.upper())
    )
    assert r.status_code == 422 and "Type the vendor" in r.text
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    assert db.scalar(select(func.count()).select_from(DestructionJob)) == 0
    db.commit()
    # The page form with everything right.
    r = admin.client.post("/admin/offboarding", data=_offboard_body(party, admin))
    assert r.status_code == 200 and "1 object(s) destroyed" in r.text


def test_in_flight_and_unknown_vendor_answer_clearly_over_http(party, seeded, session_for, db, components):
    from gateway.sealed import service as sealed

    seeded(1)
    admin = session_for(party.admin)
    r = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin, vendor_id="f" * 32))
    assert r.status_code == 404 and r.json()["error"]["code"] == "vendor_not_found"
    # An upload to this vendor being written right now.
    sealed.reserve(
        components,
        sealed.transfer_file(
            key_id="rel-x",
            practice_id=party.practice.id,
            vendor_id=party.vendor.id,
            transfer_id="t" * 32,
            file_id="f" * 32,
        ),
    )
    r = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin))
    assert r.status_code == 409 and r.json()["error"]["code"] == "transfers_in_flight"
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    db.commit()


def test_other_organisations_see_no_certificates(party, seeded, session_for, factory, components, db):
    seeded(1)
    admin = session_for(party.admin)
    cert_id = admin.client.post("/api/v1/offboarding", json=_offboard_body(party, admin)).json()["scopes"][0][
        "certificate_id"
    ]
    # A biller of another vendor, an auditor of another practice: nothing, and the same answer as a missing id.
    other_vendor = factory.org("vendor")
    other_biller = session_for(factory.user("biller", other_vendor))
    assert other_biller.client.get("/api/v1/certificates").status_code == 403
    assert other_biller.client.get(f"/api/v1/certificates/{cert_id}").status_code == 403
    assert other_biller.client.get("/certificates").status_code == 403
    other_auditor = session_for(factory.user("auditor", factory.org("practice")))
    assert other_auditor.client.get("/api/v1/certificates").json() == []
    assert other_auditor.client.get(f"/api/v1/certificates/{cert_id}").status_code == 404
    assert other_auditor.client.get(f"/api/v1/certificates/{'0' * 32}").status_code == 404
    assert other_auditor.client.get("/api/v1/retention/tombstones").json() == []
    # An operator's auditor sees every practice's certificates.
    op_auditor = session_for(factory.user("auditor", factory.org("operator")))
    assert [c["id"] for c in op_auditor.client.get("/api/v1/certificates").json()] == [cert_id]
    # Without a session: nothing.
    from fastapi.testclient import TestClient

    anon = TestClient(admin.client.app)
    assert anon.get(f"/api/v1/certificates/{cert_id}").status_code == 401


def test_admin_policies_and_holds_through_the_api_and_pages(party, session_for, db, seeded):
    admin = session_for(party.admin)
    r = admin.client.put("/api/v1/retention/policies", json={"practice_id": party.practice.id, "keep_days": 7})
    assert r.status_code == 200
    r = admin.client.put("/api/v1/retention/policies", json={"practice_id": party.practice.id, "keep_days": -3})
    assert r.status_code == 422
    [tid] = seeded(1)
    r = admin.client.post(
        "/api/v1/retention/holds", json={"scope": "transfer", "target_id": tid, "reference": "MATTER-1"}
    )
    assert r.status_code == 201
    hold_id = r.json()["id"]
    page = admin.client.get("/admin/retention")
    assert page.status_code == 200 and "MATTER-1" in page.text
    released = admin.client.post(
        f"/admin/retention/holds/{hold_id}/release", data={"confirmed": "yes"}, follow_redirects=False
    )
    assert released.status_code == 303
    assert admin.client.post(f"/api/v1/retention/holds/{hold_id}/release").status_code == 409
    r = admin.client.post(
        "/admin/retention/policies",
        data={"practice_id": party.practice.id, "vendor_id": party.vendor.id, "keep_days": "3"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert [e.details["keep_days"] for e in events(db, "retention.policy.updated")] == [7, 3]
    assert admin.client.get("/admin/offboarding").status_code == 200


def test_policy_max_access_window_limits_approval(party, session_for, components, db):
    from gateway.audit.service import Actor
    from retention.policies import set_policy

    with components.db.transaction() as s:
        set_policy(
            s,
            components.settings,
            party.practice.id,
            party.vendor.id,
            keep_days=30,
            max_access_days=3,
            actor=Actor.system(),
        )
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id).json()["id"]
    r = approver.approve(tid, days=5)
    assert r.status_code == 422 and "1 to 3 days" in r.json()["error"]["message"]
    assert approver.approve(tid, days=3).status_code == 200
