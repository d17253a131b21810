"""tus through HTTP: an upload in pieces becomes a transfer, exact and encrypted; gates before the first byte."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from sqlalchemy import select

from gateway.sealed.models import SealedKind, SealedObject, SealedState
from gateway.uploads import service
from gateway.uploads.models import AssemblyPart, Upload, UploadPart, UploadState
from tests.transfers.conftest import events, live_sealed
from tests.uploads.conftest import MiB, metadata, synthetic_pdf


def rows(db, query) -> list:
    """Read in the test's own session and end the read at once (on SQLite it would hold the write lock)."""
    db.expire_all()
    found = list(db.scalars(query))
    db.commit()
    return found


def under(root: Path, marker: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and marker in p.read_bytes()]


def test_options_advertise_the_extensions(party, tus_for):
    r = tus_for(party.staff).client.options("/api/v1/uploads")
    assert r.status_code == 204
    assert r.headers["Tus-Version"] == "1.0.0"
    assert set(r.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert r.headers["Tus-Checksum-Algorithm"] == "sha256"


def test_upload_in_pieces_resumes_and_becomes_one_exact_transfer(party, tus_for, session_for, settings, db, tmp_path):
    marker = os.urandom(16).hex().encode()
    data = synthetic_pdf(3 * MiB + 12345, marker)
    tus = tus_for(party.staff)
    r = tus.create(len(data), partner_id=party.vendor.id, filename="scan of Jane.pdf")
    assert r.status_code == 201, r.text
    url = r.headers["Location"]
    assert r.headers["Upload-Offset"] == "0" and "Upload-Expires" in r.headers
    # A whole segment is kept; half of the next is not (the offset stays on a segment boundary).
    r = tus.patch(url, 0, data[: MiB + MiB // 2])
    assert r.status_code == 204, r.text
    assert r.headers["Upload-Offset"] == str(MiB)
    assert tus.offset(url) == MiB
    # Another process would not know the hash state: forget this one's (re-derived at completion).
    service._HASHES._states.clear()
    r = tus.patch(url, MiB, data[MiB : 3 * MiB])
    assert r.headers["Upload-Offset"] == str(3 * MiB)
    r = tus.patch(url, 3 * MiB, data[3 * MiB :])
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    listed = tus.client.get("/api/v1/uploads").json()
    assert [(u["file_name"], u["state"]) for u in listed] == [("scan of Jane.pdf", "complete")]
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [url.rsplit("/", 1)[1]]})
    assert r.status_code == 201, r.text
    transfer_id = r.json()["id"]
    t = tus.client.get(f"/api/v1/transfers/{transfer_id}").json()
    assert [(f["name"], f["size"], f["sha256"]) for f in t["files"]] == [
        ("scan of Jane.pdf", len(data), hashlib.sha256(data).hexdigest())
    ]
    assert [e.action for e in events(db)][-4:] == [
        "upload.completed",
        "transfer.created",
        "transfer.file.stored",
        "upload.used",
    ]
    # The parts are gone; one stored object remains, now the transfer's file.
    rows = live_sealed(db)
    assert [(r.kind, r.state, r.owner_id) for r in rows] == [
        (SealedKind.transfer_file, SealedState.stored, t["files"][0]["id"])
    ]
    approver = session_for(party.approver)
    assert approver.approve(transfer_id).status_code == 200
    biller = session_for(party.biller)
    got = biller.download(transfer_id, t["files"][0]["id"])
    assert got.status_code == 200 and got.content == data
    assert under(tmp_path, marker) == []
    # Nothing made twice: the upload is used, and is not listed or usable again.
    assert tus.client.get("/api/v1/uploads").json() == []
    again = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [url.rsplit("/", 1)[1]]})
    assert again.status_code == 404


def test_creation_with_upload_and_checksum(party, tus_for):
    data = synthetic_pdf(200_000, b"m")
    tus = tus_for(party.staff)
    import base64

    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    r = tus.create(len(data), partner_id=party.vendor.id, body=data, **{"Upload-Checksum": f"sha256 {digest}"})
    assert r.status_code == 201, r.text
    assert r.headers["Upload-Offset"] == str(len(data))


def test_gates_are_checked_before_the_first_byte(party, tus_for, components, factory, db, settings):
    tus = tus_for(party.staff)
    other_vendor = factory.org("vendor")  # no BAA with it
    r = tus.create(1000, partner_id=other_vendor.id)
    assert r.status_code == 403 and r.json()["error"]["code"] == "baa_not_active"
    r = tus.create(1000, partner_id=party.vendor.id, filename="run.exe")
    assert r.status_code == 422 and r.json()["error"]["code"] == "file_type_not_allowed"
    r = tus.create(settings.max_file_size + 1, partner_id=party.vendor.id)
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    r = tus.create(
        1000,
        partner_id=party.vendor.id,
        meta=metadata(filename="a.pdf", partner_id=party.vendor.id, purpose="P", recipients="nobody"),
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_recipients"
    r = tus.create(1000, partner_id=party.vendor.id, purpose=" ")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_purpose"
    r = tus.create(0, partner_id=party.vendor.id)
    assert r.status_code == 422 and r.json()["error"]["code"] == "empty_file"
    assert rows(db, select(Upload)) == [] and live_sealed(db) == []
    # The content sniff on the first bytes: a renamed executable is refused and nothing of it is stored.
    r = tus.create(2 * MiB, partner_id=party.vendor.id, filename="claims.pdf")
    url = r.headers["Location"]
    r = tus.patch(url, 0, b"MZ\x90\x00" + b"\x00" * (2 * MiB - 4))
    assert r.status_code == 422 and r.json()["error"]["code"] == "file_content_mismatch"
    assert tus.offset(url) == 0
    assert [r.kind for r in live_sealed(db)] == [SealedKind.upload]


def test_biller_sends_back_to_the_practice(party, tus_for, session_for):
    data = b"ISA*00*          *00*\n~" * 100
    tus = tus_for(party.biller)
    r = tus.create(len(data), partner_id=party.practice.id, filename="remit.835", body=data)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data))
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [r.headers["Location"].rsplit("/", 1)[1]]})
    assert r.status_code == 201 and r.json()["status"] == "delivered"


def test_several_uploads_make_one_transfer_all_or_nothing(party, tus_for, db):
    tus = tus_for(party.staff)
    ids = []
    for n in range(2):
        data = synthetic_pdf(50_000 + n, b"x")
        r = tus.create(len(data), partner_id=party.vendor.id, filename=f"f{n}.pdf", body=data)
        ids.append(r.headers["Location"].rsplit("/", 1)[1])
    unfinished = tus.create(5000, partner_id=party.vendor.id, filename="late.pdf").headers["Location"]
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [*ids, unfinished.rsplit("/", 1)[1]]})
    assert r.status_code == 422 and r.json()["error"]["code"] == "upload_unfinished"
    assert rows(db, select(Upload).where(Upload.state == UploadState.used)) == []
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": ids})
    assert r.status_code == 201
    t = tus.client.get(f"/api/v1/transfers/{r.json()['id']}").json()
    assert [f["name"] for f in t["files"]] == ["f0.pdf", "f1.pdf"]


def test_cancel_destroys_what_was_stored(party, tus_for, db, components):
    tus = tus_for(party.staff)
    data = synthetic_pdf(2 * MiB + 10, b"c")
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert tus.patch(url, 0, data[:MiB]).status_code == 204
    (key,) = [r.object_key for r in live_sealed(db)]
    assert components.store.verify_absent(key).absent is False  # the object being assembled, in place
    r = tus.client.delete(url, headers={"Tus-Resumable": "1.0.0"})
    assert r.status_code == 204
    assert tus.head(url).status_code == 404
    assert live_sealed(db) == []
    assert rows(db, select(UploadPart)) == [] and rows(db, select(AssemblyPart)) == []
    assert components.store.verify_absent(key).absent
    assert [e.details["objects_removed"] for e in events(db, "upload.cancelled")] == [1]


def test_limits_on_unfinished_uploads(party, tus_for, components):
    components.settings.upload_max_unfinished = 2
    tus = tus_for(party.staff)
    for _ in range(2):
        assert tus.create(1000, partner_id=party.vendor.id).status_code == 201
    r = tus.create(1000, partner_id=party.vendor.id)
    assert r.status_code == 429 and r.json()["error"]["code"] == "upload_limit"
    components.settings.upload_max_unfinished = 20
    components.settings.upload_max_bytes_held = 2500
    r = tus.create(1000, partner_id=party.vendor.id)
    assert r.status_code == 429 and r.json()["error"]["code"] == "upload_bytes_limit"


def test_expiry_by_the_job_and_by_fsck(party, tus_for, components, fake_clock, db):
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck

    tus = tus_for(party.staff)
    data = synthetic_pdf(2 * MiB, b"e")
    first = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    second = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    for url in (first, second):
        assert tus.patch(url, 0, data[:MiB]).status_code == 204
    # Within its lifetime (past the in-flight window) fsck leaves an unfinished upload alone.
    fake_clock.advance(hours=2)
    report = fsck(components, Actor.system(), repair=True)
    assert report.stale_pending == [] and len(live_sealed(db)) == 2
    fake_clock.advance(hours=23)
    tus = tus_for(party.staff)  # signed in again: the session did not last a day
    r = tus.patch(first, MiB, data[MiB:])
    assert r.status_code == 410 and r.json()["error"]["code"] == "upload_expired"
    assert tus.head(first).status_code == 410
    # fsck destroys the expired objects (audited), the job then ends the uploads.
    keys = [r.object_key for r in live_sealed(db)]
    report = fsck(components, Actor.system(), repair=True)
    assert sorted(report.removed) == sorted(keys)
    assert all(components.store.verify_absent(k).absent for k in keys)  # the files being assembled too
    assert service.expire(components) == 2
    assert live_sealed(db) == []
    assert rows(db, select(Upload.state)) == [UploadState.expired, UploadState.expired]
    assert len(events(db, "upload.expired")) == 2
    assert {e.details["kind"] for e in events(db, "storage.orphan.destroyed")} == {"upload"}


def test_expiry_job_destroys_an_unused_completed_upload(party, tus_for, components, fake_clock, db):
    tus = tus_for(party.staff)
    data = synthetic_pdf(70_000, b"d")
    assert tus.create(len(data), partner_id=party.vendor.id, body=data).status_code == 201
    assert [r.state for r in live_sealed(db)] == [SealedState.stored]
    fake_clock.advance(hours=25)
    assert service.expire(components) == 1
    assert live_sealed(db) == []
    assert rows(db, select(SealedObject.state)) == [SealedState.destroyed]  # the object, assembled in place


def test_a_run_of_patches_unwraps_the_data_key_once_and_a_shredded_key_is_never_reused(
    party, tus_for, components, db, monkeypatch
):
    from gateway.sealed import service as sealed

    rebuilt = []
    real = sealed.cipher

    def counting(c, obj, header):
        rebuilt.append(obj.id)
        return real(c, obj, header)

    monkeypatch.setattr(sealed, "cipher", counting)
    data = synthetic_pdf(4 * MiB, os.urandom(16).hex().encode())
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    for offset in (0, MiB, 2 * MiB):
        r = tus.patch(url, offset, data[offset : offset + MiB])
        assert r.status_code == 204, r.text
    # The key service unwrapped the data key for the first PATCH only.
    (up,) = rows(db, select(Upload).where(Upload.id == url.rsplit("/", 1)[1]))
    assert rebuilt == [up.sealed_id]
    # The database stays the truth: once the wrapped key is erased, the kept cipher is not used.
    with components.db.transaction() as tx:
        sealed.shred(tx, [up.sealed_id])
    r = tus.patch(url, 3 * MiB, data[3 * MiB :])
    assert r.status_code == 410 and r.json()["error"]["code"] == "object_destroyed", r.text
    assert tus.offset(url) == 3 * MiB
    assert rebuilt == [up.sealed_id, up.sealed_id]
