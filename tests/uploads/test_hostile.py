"""Hostile tus requests through HTTP: each a clear 4xx, and nothing kept or corrupted."""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import delete, select

from gateway.sealed.models import SealedKind
from gateway.uploads.models import AssemblyPart, Upload, UploadPart
from tests.transfers.conftest import live_sealed
from tests.uploads.conftest import MiB, metadata, synthetic_pdf


def kept(db) -> list:
    """Plaintext ranges kept: parts written into the object, and staged tails."""
    db.expire_all()
    parts = list(db.scalars(select(AssemblyPart))) + list(db.scalars(select(UploadPart)))
    db.commit()
    return sorted((p.start, p.end) for p in parts)


def finish(tus, url: str, data: bytes) -> str:
    """Complete an upload from wherever it stands and make it a transfer; its SHA-256 as the transfer records it."""
    offset = tus.offset(url)
    assert tus.patch(url, offset, data[offset:]).status_code == 204
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [url.rsplit("/", 1)[1]]})
    assert r.status_code == 201, r.text
    return tus.client.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"][0]["sha256"]


def test_wrong_offsets_and_out_of_order_patches(party, tus_for, db):
    data = synthetic_pdf(3 * MiB + 7, b"o")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert tus.patch(url, 0, data[:MiB]).status_code == 204
    for offset in (0, 2 * MiB, MiB + 1):  # overlapping, ahead of the offset, not where it stands
        r = tus.patch(url, offset, data[offset : offset + MiB])
        assert r.status_code == 409 and r.json()["error"]["code"] == "upload_offset_mismatch"
        assert r.headers["Upload-Offset"] == str(MiB)
    assert kept(db) == [(0, MiB)]
    assert [r.kind for r in live_sealed(db)] == [SealedKind.upload]  # parts are written into the object itself
    assert finish(tus, url, data) == hashlib.sha256(data).hexdigest()


def test_checksum_mismatch_keeps_nothing_of_the_request(party, tus_for, db):
    data = synthetic_pdf(2 * MiB + 3, b"k")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    r = tus.patch(url, 0, data[: 2 * MiB], **{"Upload-Checksum": f"sha256 {wrong}"})
    assert r.status_code == 460 and r.json()["error"]["code"] == "checksum_mismatch"
    assert tus.offset(url) == 0 and kept(db) == []
    assert [r.kind for r in live_sealed(db)] == [SealedKind.upload]
    r = tus.patch(url, 0, data[:MiB], **{"Upload-Checksum": "md5 AAAA"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "checksum_algorithm_unsupported"
    right = base64.b64encode(hashlib.sha256(data[: 2 * MiB]).digest()).decode()
    r = tus.patch(url, 0, data[: 2 * MiB], **{"Upload-Checksum": f"sha256 {right}"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(2 * MiB)
    assert finish(tus, url, data) == hashlib.sha256(data).hexdigest()


def test_patch_past_the_declared_length(party, tus_for, db):
    data = synthetic_pdf(MiB + 100, b"l")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    r = tus.patch(url, 0, data + b"trailing bytes past the end")
    assert r.status_code == 413 and r.json()["error"]["code"] == "upload_past_length"
    assert tus.offset(url) == 0 and kept(db) == []
    # Sent without a length (chunked): refused at the first byte past the end; what came before it is kept.
    r = tus.client.patch(
        url,
        content=iter([data[:MiB], data[MiB:] + b"x" * 10]),
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert r.status_code == 413
    assert kept(db) == [(0, len(data))]
    assert finish(tus, url, data) == hashlib.sha256(data).hexdigest()


def test_metadata_with_traversal_or_control_characters(party, tus_for, db, session_for):
    tus = tus_for(party.staff)
    v = party.vendor.id
    for meta, code in [
        (metadata(filename="a.pdf", partner_id=v, purpose="APPEAL\x1b[2J"), "invalid_metadata"),
        (metadata(filename="a.pdf", partner_id=v + "\x00", purpose="P"), "invalid_metadata"),
        (f"filename !!notbase64,partner_id {base64.b64encode(v.encode()).decode()}", "invalid_metadata"),
        (metadata(filename="../../\x00", partner_id=v, purpose="P"), "invalid_file_name"),
        (metadata(filename="a.pdf", partner_id="../../etc", purpose="P"), "vendor_not_found"),
    ]:
        r = tus.create(1000, partner_id=v, meta=meta)
        assert 400 <= r.status_code < 500 and r.json()["error"]["code"] == code, (meta, r.text)
    db.expire_all()
    assert list(db.scalars(select(Upload))) == []
    db.commit()
    # A name with path parts and a bidi override keeps only its harmless last component.
    data = synthetic_pdf(5000, b"n")
    r = tus.create(len(data), partner_id=v, filename="..\\..\\etc/evil\u202egnp.pdf", body=data)
    assert r.status_code == 201
    assert [u["file_name"] for u in tus.client.get("/api/v1/uploads").json()] == ["evilgnp.pdf"]


def test_another_users_upload_answers_like_a_missing_one(party, tus_for, factory, db):
    data = synthetic_pdf(MiB + 10, b"u")
    owner = tus_for(party.staff)
    url = owner.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert owner.patch(url, 0, data[:MiB]).status_code == 204
    colleague = tus_for(factory.user("practice_staff", party.practice))
    missing = url.rsplit("/", 1)[0] + "/" + "0" * 32
    for target in (url, missing):
        head = colleague.head(target)
        assert head.status_code == 404 and "Upload-Offset" not in head.headers
        r = colleague.patch(target, MiB, data[MiB:])
        assert (r.status_code, r.json()) == (404, {"error": {"code": "upload_not_found", "message": "No such upload."}})
        r = colleague.client.delete(target, headers={"Tus-Resumable": "1.0.0"})
        assert r.status_code == 404
        r = colleague.client.post("/api/v1/uploads/transfers", json={"upload_ids": [target.rsplit("/", 1)[1]]})
        assert r.status_code == 404
    assert colleague.client.get("/api/v1/uploads").json() == []
    assert owner.offset(url) == MiB and kept(db) == [(0, MiB)]


def test_protocol_errors(party, tus_for, session_for):
    tus = tus_for(party.staff)
    url = tus.create(1000, partner_id=party.vendor.id).headers["Location"]
    r = tus.client.patch(
        url, content=b"x", headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
    )
    assert r.status_code == 412 and r.headers["Tus-Version"] == "1.0.0"
    r = tus.patch(url, 0, b"x", **{"Content-Type": "application/octet-stream"})
    assert r.status_code == 415
    r = tus.client.patch(
        url,
        content=b"x",
        headers={"Tus-Resumable": "1.0.0", "Upload-Offset": "-1", "Content-Type": "application/offset+octet-stream"},
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_upload_offset"
    r = tus.client.post("/api/v1/uploads", headers={"Tus-Resumable": "1.0.0", "Upload-Defer-Length": "1"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_upload_length"
    # A session without the CSRF header cannot write; without a session nothing answers.
    del tus.client.headers["X-CSRF-Token"]
    assert tus.patch(url, 0, b"x").status_code == 403
    anonymous = tus.client.__class__(tus.client.app)
    assert anonymous.head(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 401


def test_creation_with_a_refused_first_body(party, tus_for, db):
    """The upload is created (the client can go on or cancel it); only the body was refused, and none of it kept."""
    tus = tus_for(party.staff)
    fake = b"MZ\x90\x00" + b"\x00" * 20000
    r = tus.create(len(fake), partner_id=party.vendor.id, filename="claims.pdf", body=fake)
    assert r.status_code == 201 and r.headers["Upload-Offset"] == "0"
    assert kept(db) == [] and [o.kind for o in live_sealed(db)] == [SealedKind.upload]
    r = tus.patch(r.headers["Location"], 0, fake)
    assert r.status_code == 422 and r.json()["error"]["code"] == "file_content_mismatch"


def test_a_second_writer_is_locked_out_until_the_first_ends_or_its_lease_lapses(party, tus_for, db, fake_clock):
    """Parts land at fixed places in the object: two writers at one offset must never both write."""
    from datetime import timedelta

    from gateway import clock

    data = synthetic_pdf(2 * MiB + 9, b"lease")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    upload_id = url.rsplit("/", 1)[1]
    db.expire_all()
    up = db.get(Upload, upload_id)
    up.writer, up.writer_until = "0" * 32, clock.now() + timedelta(seconds=60)  # a request writing now
    db.commit()
    r = tus.patch(url, 0, data[:MiB])
    assert r.status_code == 423 and r.json()["error"]["code"] == "upload_locked"
    assert r.headers["Upload-Offset"] == "0" and tus.offset(url) == 0 and kept(db) == []
    # Its writer died: once the lease lapses the upload goes on.
    fake_clock.advance(seconds=61)
    assert tus.patch(url, 0, data[:MiB]).headers["Upload-Offset"] == str(MiB)
    assert finish(tus, url, data) == hashlib.sha256(data).hexdigest()


def _created_by_staff(components, party, length: int):
    """(the practice staff's principal, a new upload of `length` bytes), through the service as a route calls it."""
    from gateway.audit.service import Actor
    from gateway.auth.service import Principal
    from gateway.uploads import service
    from gateway.users.models import User

    with components.db.snapshot() as s:
        user = s.get_one(User, party.staff.id)
        s.expunge(user)
    principal = Principal(user=user, session=None, token=None, actor=Actor(user.id))
    meta = {"filename": "scan.pdf", "partner_id": party.vendor.id, "purpose": "APPEAL-1"}
    return principal, service.create(components, principal, meta, length)


def test_a_writer_that_lost_its_lease_keeps_nothing(party, components, db, monkeypatch):
    """A request that stalls past its lease while another takes the upload over: before its next segment
    reaches the object it finds the lease gone, writes nothing more, and keeps nothing."""
    import os

    import pytest

    from gateway.uploads import service

    class Stalled:
        """time.monotonic as a request sees it when each call comes a lease-third later than the last."""

        now = 0.0

        @classmethod
        def monotonic(cls) -> float:
            cls.now += service.LEASE.total_seconds() / 3 + 1
            return cls.now

    monkeypatch.setattr(service, "time", Stalled)
    data = synthetic_pdf(3 * MiB, b"stalled")
    principal, up = _created_by_staff(components, party, len(data))

    def body():
        yield data[:MiB]
        with components.db.transaction() as s:  # another request took the lease over meanwhile
            s.get_one(Upload, up.id).writer = "f" * 32
        yield data[MiB : 2 * MiB]

    with pytest.raises(service.OffsetMismatch):
        service.append(components, principal, up.id, 0, body())
    assert kept(db) == []
    (assembling,) = [
        os.path.join(d, f) for d, _, files in os.walk(components.store.root) for f in files if "-asm-" in f
    ]
    assert os.path.getsize(assembling) <= 81 + MiB + 16  # the header and the first segment at most


def test_parts_missing_from_the_record_are_an_integrity_failure_and_nothing_moves(party, tus_for, db):
    data = synthetic_pdf(3 * MiB, b"gap")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert tus.patch(url, 0, data[: 2 * MiB]).status_code == 204
    db.execute(delete(AssemblyPart).where(AssemblyPart.upload_id == url.rsplit("/", 1)[1]))
    db.commit()
    r = tus.patch(url, 2 * MiB, data[2 * MiB :])
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    assert tus.offset(url) == 2 * MiB and kept(db) == []
    # The writer's lease was given back: the sender can cancel, and everything goes.
    assert tus.client.delete(url, headers={"Tus-Resumable": "1.0.0"}).status_code == 204
    assert live_sealed(db) == []


def test_an_upload_begun_before_assembly_in_place_cannot_go_on(party, tus_for, db):
    data = synthetic_pdf(2 * MiB, b"legacy")
    tus = tus_for(party.staff)
    url = tus.create(len(data), partner_id=party.vendor.id).headers["Location"]
    db.expire_all()
    db.get(Upload, url.rsplit("/", 1)[1]).assembly = None
    db.commit()
    r = tus.patch(url, 0, data)
    assert r.status_code == 410 and r.json()["error"]["code"] == "upload_expired"
    assert tus.offset(url) == 0 and kept(db) == []


def test_a_request_that_fails_after_a_kept_part_resumes_with_an_exact_sha256(party, components, db, monkeypatch):
    """A long PATCH keeps its first part, seals the next segment, then storage fails: the hash state the
    process keeps for the next request stands exactly at the kept offset, so the file's SHA-256 is exact."""
    import pytest

    from gateway.sealed import service as sealed
    from gateway.sealed.errors import StorageUnavailable
    from gateway.uploads import service

    monkeypatch.setattr(service, "PART_SEGMENTS", 2)
    data = synthetic_pdf(5 * MiB + 11, b"exact")
    principal, up = _created_by_staff(components, party, len(data))
    real = sealed.write_assembly_part
    calls = []

    def second_part_fails(c, obj, token, number, offset, ciphertext):
        calls.append(number)
        if len(calls) == 2:
            for _ in ciphertext:  # the part's segments are sealed as the store takes them
                raise StorageUnavailable()
        return real(c, obj, token, number, offset, ciphertext)

    monkeypatch.setattr(sealed, "write_assembly_part", second_part_fails)
    with pytest.raises(StorageUnavailable):
        service.append(components, principal, up.id, 0, iter([data[: 4 * MiB]]))
    assert kept(db) == [(0, 2 * MiB)]  # the first part; the request died in the second
    done = service.append(components, principal, up.id, 2 * MiB, iter([data[2 * MiB :]]))
    assert done.sha256 == hashlib.sha256(data).hexdigest()
