"""Uploads: streaming, encryption at rest, names and types, limits, and failures that leave nothing behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select, text

from gateway.transfers.models import Transfer, TransferFile
from tests.transfers.conftest import PDF, events, live_sealed, sealed_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00synthetic-image" * 100


def stored_objects(settings) -> list[Path]:
    root = Path(settings.effective_storage_url.removeprefix("file://"))
    return (
        [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".phigate-store")] if root.exists() else []
    )


def assert_nothing_kept(db, settings):
    db.expire_all()
    assert db.scalars(select(Transfer)).all() == []
    assert db.scalars(select(TransferFile)).all() == []
    assert live_sealed(db) == []  # every object of the failed upload is recorded destroyed
    assert stored_objects(settings) == []
    db.commit()


def multipart(fields: list[tuple[str, str]], files: list[tuple[str, bytes]], boundary="testboundary42"):
    out = bytearray()
    for name, value in fields:
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n').encode()
    for filename, data in files:
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def test_multipart_upload_of_several_files(party, session_for, db, settings):
    staff = session_for(party.staff)
    body, ctype = multipart(
        [
            ("partner_id", party.vendor.id),
            ("purpose", "APPEAL-7"),
            ("note", "call back Tuesday"),
            ("biller_ids", party.biller.id),
        ],
        [("appeal.pdf", PDF), ("scan.png", PNG), ("remit.835", b"ISA*00*          *00*\n~")],
    )
    r = staff.client.post("/api/v1/transfers", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 201, r.text
    t = staff.client.get(f"/api/v1/transfers/{r.json()['id']}").json()
    assert [f["name"] for f in t["files"]] == ["appeal.pdf", "scan.png", "remit.835"]
    assert [f["file_type"] for f in t["files"]] == ["pdf", "png", "835"]
    assert t["recipient_ids"] == [party.biller.id]
    assert t["files"][1]["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert len(stored_objects(settings)) == 3


def test_plaintext_never_at_rest(party, session_for, db, settings, components):
    secret = b"%PDF-1.4\nPATIENT-MARKER-Jane-Roe-1970-01-01\n" * 50
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=secret, name="Jane Roe appeal.pdf")
    assert r.status_code == 201
    for path in stored_objects(settings):
        assert b"PATIENT-MARKER" not in path.read_bytes()
        assert "Jane" not in str(path)
    # The name is sealed in the database; no column, and no audit event, holds it.
    with components.db.engine.connect() as conn:
        for table in ("transfers", "transfer_files", "audit_events", "sealed_objects"):
            for row in conn.execute(text(f"SELECT * FROM {table}")):
                assert "Jane" not in repr(row)
    file = db.scalars(select(TransferFile)).one()
    db.commit()
    object_key = sealed_of(db, file.id).object_key
    assert "Jane" not in object_key and len(object_key) == 32


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("../../etc/passwd.pdf", "passwd.pdf"),
        ("C:\\Users\\x\\claim.pdf", "claim.pdf"),
        ("claim\x00\x1b[31m.pdf", "claim[31m.pdf"),
        ("invoice\u202efdp.pdf", "invoicefdp.pdf"),
        ("  .hidden.pdf  ", "hidden.pdf"),
        ("re\u0301sume\u0301.pdf", "r\u00e9sum\u00e9.pdf"),
    ],
)
def test_file_names_are_sanitised(party, session_for, raw, stored):
    staff = session_for(party.staff)
    r = staff.client.post(
        "/api/v1/transfers",
        params={"partner_id": party.vendor.id},
        content=PDF,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Purpose": "APPEAL-1",
            "Content-Disposition": "attachment; filename*=UTF-8''" + __import__("urllib.parse").parse.quote(raw),
        },
    )
    assert r.status_code == 201, r.text
    t = staff.client.get(f"/api/v1/transfers/{r.json()['id']}").json()
    assert t["files"][0]["name"] == stored


@pytest.mark.parametrize(
    "name, code",
    [
        ("", "invalid_file_name"),
        ("///", "invalid_file_name"),
        ("\x01\x02", "invalid_file_name"),
        ("a" * 252 + ".pdf", "file_name_too_long"),
        ("\u00e9" * 126 + ".pdf", "file_name_too_long"),
    ],
)
def test_bad_file_names_are_refused_and_nothing_kept(party, session_for, db, settings, name, code):
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, name=name)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == code
    assert_nothing_kept(db, settings)


def test_disguised_type_is_refused_before_storing(party, session_for, db, settings):
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=b"MZ\x90\x00" + b"\x00" * 5000, name="scan.pdf")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "file_content_mismatch"
    assert_nothing_kept(db, settings)
    failed = events(db, "transfer.upload.failed")
    assert failed and failed[-1].details["reason"] == "file_content_mismatch"


def test_disallowed_extension_is_refused(party, session_for, db, settings):
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=b"plain text", name="run.exe")
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "file_type_not_allowed"
    assert_nothing_kept(db, settings)


def test_file_over_the_limit_is_refused_without_storing_it(party, app, session_for, db, settings, components):
    components.settings.max_file_size = 64 * 1024
    staff = session_for(party.staff)
    big = b"%PDF-1.7\n" + b"x" * (200 * 1024)
    # No Content-Length shortcut: a chunked body must be cut off while it streams.
    r = staff.client.post(
        "/api/v1/transfers",
        params={"partner_id": party.vendor.id},
        content=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
        headers={
            "Content-Type": "application/octet-stream",
            "X-Purpose": "APPEAL-1",
            "Content-Disposition": "attachment; filename=big.pdf",
        },
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "file_too_large"
    assert_nothing_kept(db, settings)
    assert events(db, "transfer.upload.failed")[-1].details["reason"] == "file_too_large"


def test_content_length_over_the_limit_is_refused_before_reading(party, session_for, db, settings, components):
    components.settings.max_file_size = 1024
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=PDF)
    assert r.status_code == 413
    assert_nothing_kept(db, settings)


@pytest.mark.parametrize(
    "body",
    [
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nX\r\n',  # never ends
        b"not multipart at all",
        b"--b\r\nNo-Disposition: x\r\n\r\nX\r\n--b--\r\n",
    ],
)
def test_malformed_multipart_is_refused(party, session_for, db, settings, body):
    """A body that is not multipart is a bad request (400, as docs/api.md says), not a field's error (422)."""
    staff = session_for(party.staff)
    for content_type in ("multipart/form-data; boundary=b", "multipart/form-data"):
        r = staff.client.post("/api/v1/transfers", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "malformed_multipart"
    assert_nothing_kept(db, settings)


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", ""])
def test_a_body_of_another_media_type_is_refused_with_415(party, session_for, db, settings, content_type):
    staff = session_for(party.staff)
    r = staff.client.post(
        "/api/v1/transfers",
        params={"partner_id": party.vendor.id},
        content=PDF,
        headers={"Content-Type": content_type, "Content-Disposition": 'attachment; filename="a.pdf"'},
    )
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    assert_nothing_kept(db, settings)


def test_second_file_failing_removes_the_first(party, session_for, db, settings):
    staff = session_for(party.staff)
    body, ctype = multipart(
        [("partner_id", party.vendor.id), ("purpose", "APPEAL-7")], [("ok.pdf", PDF), ("bad.pdf", b"GIF89a-not-a-pdf")]
    )
    r = staff.client.post("/api/v1/transfers", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 422
    assert_nothing_kept(db, settings)
    assert events(db, "transfer.upload.failed")[-1].details["objects_removed"] == 2


def test_storage_down_during_upload(party, session_for, db, settings, components, monkeypatch):
    from storage import StorageUnavailable

    real_put = components.store.put

    def failing_put(key, chunks, metadata=None):
        def broken():
            for i, chunk in enumerate(chunks):
                if i == 1:
                    raise StorageUnavailable("connection reset")
                yield chunk

        return real_put(key, broken(), metadata)

    monkeypatch.setattr(components.store, "put", failing_put)
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=PDF)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "storage_unavailable"
    assert_nothing_kept(db, settings)


def test_client_disconnect_mid_upload_leaves_nothing(party, components, db, settings, factory):
    """The request stream dies half way: the stored prefix is destroyed and the failure recorded."""
    from gateway.audit.service import Actor
    from gateway.auth.service import Principal
    from gateway.errors import ClientDisconnected  # what gateway.web.request_body raises when the client hangs up
    from gateway.transfers import upload
    from gateway.transfers.intake import IncomingFile
    from gateway.users.models import User

    def body():
        yield PDF
        yield b"more" * 1000
        raise ClientDisconnected()

    user = db.get(User, party.staff.id)
    db.commit()
    principal = Principal(user, None, None, Actor(user.id, user.org_id, "127.0.0.1", "test"))
    req = upload.Request(partner_id=party.vendor.id, purpose="APPEAL-1", note="", biller_ids=[])
    with pytest.raises(ClientDisconnected):
        upload.receive(components, principal, req, iter([IncomingFile("a.pdf", body())]))
    assert_nothing_kept(db, settings)
    assert events(db, "transfer.upload.failed")[-1].details["reason"] == "client_disconnected"


def test_upload_needs_an_active_baa(party, session_for, db, settings, factory):
    other_vendor = factory.org("vendor")
    staff = session_for(party.staff)
    r = staff.upload(other_vendor.id)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "baa_not_active"
    assert_nothing_kept(db, settings)
    assert events(db, "transfer.upload.denied")[-1].details["reason"] == "baa_not_active"


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_only_senders_upload(party, session_for, role):
    s = session_for(getattr(party, role))
    r = s.upload(party.vendor.id)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_recipients_must_be_billers_of_the_vendor(party, session_for, factory, db, settings):
    stranger = factory.user("biller")  # a biller of another vendor
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, billers=[stranger.id])
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_recipients"
    assert_nothing_kept(db, settings)


def test_fsck_removes_objects_of_crashed_uploads(party, components, db, settings, fake_clock):
    """A crash between the pending record and the transfer row: fsck finds the object and destroys it."""
    from gateway.audit.service import Actor
    from gateway.sealed import service as sealed
    from gateway.sealed.fsck import fsck
    from gateway.sealed.keys import relationship_key

    key_id = relationship_key(party.practice.id, party.vendor.id)
    components.keys.ensure_key(key_id)
    crashed = sealed.reserve(
        components,
        sealed.transfer_file(
            key_id=key_id,
            practice_id=party.practice.id,
            vendor_id=party.vendor.id,
            transfer_id="t" * 32,
            file_id="f" * 32,
        ),
    )
    sealed.write(components, crashed, iter([PDF]))  # ... and the process dies before the transfer commits
    components.store.put("1" * 32, iter([b"stray"]))
    fake_clock.advance(hours=2)
    report = fsck(components, Actor.system(), repair=False)
    assert report.stale_pending == [crashed.object_key] and report.unreferenced == ["1" * 32]
    report = fsck(components, Actor.system(), repair=True)
    assert sorted(report.removed) == sorted([crashed.object_key, "1" * 32])
    assert_nothing_kept(db, settings)
    assert sealed_of(db, "f" * 32).state.value == "destroyed"
    assert len(events(db, "storage.orphan.destroyed")) == 2


def test_fields_after_files_are_refused(party, session_for, db, settings):
    staff = session_for(party.staff)
    body, ctype = multipart([("partner_id", party.vendor.id), ("purpose", "APPEAL-7")], [("a.pdf", PDF)])
    trailer = b'--testboundary42\r\nContent-Disposition: form-data; name="note"\r\n\r\nlate\r\n--testboundary42--\r\n'
    body = body[: -len(b"--testboundary42--\r\n")] + trailer
    r = staff.client.post("/api/v1/transfers", content=body, headers={"Content-Type": ctype})
    assert r.status_code == 422 and r.json()["error"]["code"] == "fields_after_files"
    assert_nothing_kept(db, settings)
