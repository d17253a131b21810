"""The signed copy of a BAA: stored encrypted, read back by administrators, every step audited."""

from __future__ import annotations

import hashlib

from tests.transfers.conftest import events, live_sealed
from tests.transfers.test_upload import stored_objects

SIGNED = b"%PDF-1.7\nBUSINESS ASSOCIATE AGREEMENT, synthetic, signed\n" * 3000 + b"%%EOF\n"


def put(session, baa_id, data, content_type="application/pdf"):
    return session.client.put(
        f"/api/v1/baas/{baa_id}/signed-copy", content=data, headers={"Content-Type": content_type}
    )


def test_signed_copy_round_trip_encrypted_at_rest(party, session_for, db, settings):
    admin = session_for(party.admin)
    r = put(admin, party.baa_id, SIGNED)
    assert r.status_code == 200, r.text
    assert r.json()["copy_sha256"] == hashlib.sha256(SIGNED).hexdigest() and r.json()["copy_size"] == len(SIGNED)
    [path] = stored_objects(settings)
    assert b"BUSINESS ASSOCIATE" not in path.read_bytes()
    r = admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy")
    assert r.status_code == 200 and r.content == SIGNED
    assert r.headers["content-disposition"].startswith("attachment")
    assert [e.action for e in events(db, target_id=party.baa_id) if e.action.startswith("baa.copy")] == [
        "baa.copy.stored",
        "baa.copy.downloaded",
    ]


def test_replacing_the_copy_destroys_the_old_object(party, session_for, settings):
    admin = session_for(party.admin)
    assert put(admin, party.baa_id, SIGNED).status_code == 200
    first = stored_objects(settings)
    assert put(admin, party.baa_id, SIGNED + b"amended").status_code == 200
    second = stored_objects(settings)
    assert len(first) == len(second) == 1 and first != second


def test_only_a_pdf_is_accepted_and_nothing_is_kept(party, session_for, db, settings):
    admin = session_for(party.admin)
    r = put(admin, party.baa_id, b"MZ\x90\x00" + b"\x00" * 9000)
    assert r.status_code == 422 and r.json()["error"]["code"] == "file_content_mismatch"
    r = put(admin, party.baa_id, SIGNED, content_type="text/html")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    assert stored_objects(settings) == []
    assert live_sealed(db) == []
    r = admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy")
    assert r.status_code == 404 and r.json()["error"]["code"] == "baa_copy_not_found"


def test_signed_copy_is_for_administrators_only(party, session_for):
    admin = session_for(party.admin)
    assert put(admin, party.baa_id, SIGNED).status_code == 200
    for user in (party.staff, party.approver, party.biller, party.auditor):
        s = session_for(user)
        assert s.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy").status_code == 403
        assert put(s, party.baa_id, SIGNED).status_code == 403
