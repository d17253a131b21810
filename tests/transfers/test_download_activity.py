"""The sender's view of a transfer's downloads: who fetched which file, when, fully or partly (issue 15)."""

from __future__ import annotations

from tests.transfers.conftest import PDF
from tests.transfers.test_upload import multipart

TXT = b"ISA*00*          *00*\n~" * 40


def _sent_and_approved(party, staff, approver) -> tuple[str, list[str]]:
    body, ctype = multipart(
        [("partner_id", party.vendor.id), ("purpose", "APPEAL-15")], [("appeal.pdf", PDF), ("remit.835", TXT)]
    )
    r = staff.client.post("/api/v1/transfers", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = approver.approve(tid)
    assert r.status_code == 200, r.text
    return tid, [f["id"] for f in r.json()["files"]]


def test_the_sender_and_approver_see_a_full_and_a_partial_download_by_name(party, session_for, factory, fake_clock, db):
    from gateway.users.models import User

    name = db.get(User, party.biller.id).full_name
    db.commit()
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, (pdf_id, txt_id) = _sent_and_approved(party, staff, approver)
    before = staff.client.get(f"/api/v1/transfers/{tid}").json()
    assert before["downloads"] == []
    assert "Nobody has downloaded these files yet." in staff.client.get(f"/transfers/{tid}").text

    assert biller.download(tid, pdf_id).content == PDF
    fake_clock.advance(minutes=5)
    partly = biller.download(tid, txt_id, Range="bytes=0-99")
    assert partly.status_code == 206 and len(partly.content) == 100

    for viewer in (staff, approver):
        t = viewer.client.get(f"/api/v1/transfers/{tid}").json()
        got = [(d["file_id"], d["user"], d["user_id"], d["bytes"], d["complete"]) for d in t["downloads"]]
        assert got == [
            (pdf_id, name, party.biller.id, len(PDF), True),
            (txt_id, name, party.biller.id, 100, False),
        ]
        assert t["downloads"][1]["at"] > t["downloads"][0]["at"]
        page = viewer.client.get(f"/transfers/{tid}").text
        table = page[page.index('<table id="downloads">') :]
        assert "appeal.pdf" in table and "remit.835" in table and name in table
        assert "complete" in table and f"partly: 100 of {len(TXT):,} bytes" in table

    # The biller (the receiving side) and the practice's auditor are not shown the sender's view.
    assert biller.client.get(f"/api/v1/transfers/{tid}").json()["downloads"] is None
    assert 'id="downloads"' not in biller.client.get(f"/transfers/{tid}").text
    auditor = session_for(party.auditor)
    assert auditor.client.get(f"/api/v1/transfers/{tid}").json()["downloads"] is None

    # Staff of another practice get the same 404 as for an id that does not exist.
    stranger = session_for(factory.user("practice_staff", factory.org("practice")))
    for path in (f"/api/v1/transfers/{tid}", f"/transfers/{tid}"):
        r = stranger.client.get(path)
        assert r.status_code == 404
        assert name not in r.text and "appeal.pdf" not in r.text
    assert stranger.client.get(f"/api/v1/transfers/{tid}").json()["error"]["code"] == "transfer_not_found"
