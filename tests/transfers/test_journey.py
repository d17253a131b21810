"""The flow of one file through the API: upload, approval, download, byte for byte."""

import hashlib

from tests.transfers.conftest import PDF, events


def test_staff_upload_approver_approves_biller_downloads(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    r = staff.upload(party.vendor.id)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["status"] == "awaiting_approval"

    # Not yet approved: invisible to the biller, exactly like an unknown id.
    assert biller.client.get(f"/api/v1/transfers/{tid}").status_code == 404

    r = approver.approve(tid, days=7)
    assert r.status_code == 200, r.text
    file = r.json()["files"][0]
    assert file["name"] == "appeal.pdf" and file["size"] == len(PDF)
    assert file["sha256"] == hashlib.sha256(PDF).hexdigest()

    inbox = biller.client.get("/api/v1/transfers/inbox").json()
    assert [t["id"] for t in inbox] == [tid]
    r = biller.download(tid, file["id"])
    assert r.status_code == 200
    assert r.content == PDF
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["cache-control"] == "no-store"
    actions = [e.action for e in events(db, target_id=tid)]
    assert "transfer.download.started" in actions and "transfer.download.completed" in actions
    done = events(db, "transfer.download.completed", target_id=tid)[0]
    assert done.details["bytes_sent"] == len(PDF) and done.details["sha256"] == file["sha256"]
