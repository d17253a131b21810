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
    assert r.headers["content-security-policy"].endswith("; sandbox")
    actions = [e.action for e in events(db, target_id=tid)]
    assert "transfer.download.started" in actions and "transfer.download.completed" in actions
    done = events(db, "transfer.download.completed", target_id=tid)[0]
    assert done.details["bytes_sent"] == len(PDF) and done.details["sha256"] == file["sha256"]


def test_html_accepted_as_text_is_served_in_a_sandbox(party, session_for):
    """A stored file a browser might render anyway can never run script in the gateway's origin."""
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    html = b"<html><body><script>fetch('/api/v1/auth/me')</script>Claim 1001</body></html>\n"
    r = staff.upload(party.vendor.id, data=html, name="notes.txt")
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    file = approver.approve(tid, days=7).json()["files"][0]
    r = biller.download(tid, file["id"])
    assert r.status_code == 200 and r.content == html
    csp = [d.strip() for d in r.headers["content-security-policy"].split(";")]
    assert "sandbox" in csp and "default-src 'none'" in csp
    assert r.headers["content-disposition"].startswith("attachment;")
    assert r.headers["x-content-type-options"] == "nosniff"
    # Pages keep the plain policy (a sandbox would stop their own scripts and forms).
    page = biller.client.get("/home")
    assert "sandbox" not in page.headers["content-security-policy"]
