"""Every failure says what happened, is audited, and leaves nothing behind (findings 4 and 9 of issue 11).

* any tampering with a stored object (a flipped bit, truncation, a swapped or
  replaced object, through the store or on its disk) -> 502 `integrity_failure`,
  a high-severity event that raises an alert, no plaintext: the same for all;
* a missing object, storage unreachable or refusing -> 503 `storage_unavailable`,
  a warning;
* the key service unreachable, wherever it is called -> 503
  `key_provider_unavailable`, a warning.
"""

from __future__ import annotations

import errno
import os

import pytest
from sqlalchemy import select

from crypto import ProviderUnavailable
from gateway.audit.models import AuditAlert
from gateway.auditor import alerts
from gateway.transfers.models import Transfer
from tests.transfers.conftest import PDF, events, live_sealed, sealed_of
from tests.transfers.test_gates import approved
from tests.transfers.test_upload import assert_nothing_kept, stored_objects

OTHER = b"%PDF-1.7\n" + b"another synthetic attachment\n" * 300 + b"%%EOF\n"


def _on_disk(components, key: str) -> str:
    shard, name, _ = components.store._locate(key)  # the local store's file for this key
    return os.path.join(shard, name)


def _flip_on_disk(components, key: str, offset: int) -> None:
    path = _on_disk(components, key)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x01]))


def tamper(how: str, components, key: str, other_key: str) -> None:
    data = bytearray(b"".join(components.store.get(key)))
    if how == "flipped_bit":
        data[200] ^= 0x01
        components.store.put(key, iter([bytes(data)]))
    elif how == "flipped_bit_on_disk":
        _flip_on_disk(components, key, 200)  # the store's own checksum no longer matches
    elif how == "flipped_trailer_on_disk":
        with open(_on_disk(components, key), "rb") as fh:
            raw = fh.read()
        _flip_on_disk(components, key, raw.rindex(b'"crc32c":"') + 10)  # the checksum the trailer records
    elif how == "truncated":
        components.store.put(key, iter([bytes(data[:-1000])]))
    elif how == "truncated_on_disk":
        os.truncate(_on_disk(components, key), len(data) // 2)
    elif how == "swapped":
        components.store.put(key, components.store.get(other_key))  # another file's valid ciphertext
    elif how == "replaced":
        components.store.put(key, iter([os.urandom(len(data))]))
    else:  # pragma: no cover
        raise AssertionError(how)


TAMPERING = [
    "flipped_bit",
    "flipped_bit_on_disk",
    "flipped_trailer_on_disk",
    "truncated",
    "truncated_on_disk",
    "swapped",
    "replaced",
]


@pytest.mark.parametrize("how", TAMPERING)
def test_every_kind_of_tampering_is_one_integrity_failure_with_an_alert(party, session_for, components, db, how):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    other_tid, other_fid = approved(staff, approver, party, upload={"data": OTHER})
    tamper(how, components, sealed_of(db, fid).object_key, sealed_of(db, other_fid).object_key)

    r = biller.download(tid, fid)
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    assert b"%PDF" not in r.content and b"synthetic" not in r.content
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.severity.value == "high"
    assert (failed.details["reason"], failed.details["alert"]) == ("integrity_check_failed", True)
    assert failed.target_org_id == party.practice.id and failed.details["vendor_id"] == party.vendor.id
    # The alert machinery raises a flag for it.
    with components.db.transaction() as s:
        alerts.evaluate(s, components.settings)
    flags = db.scalars(select(AuditAlert).where(AuditAlert.rule == "high_severity_event")).all()
    db.commit()
    assert any(f.last_seq == failed.seq and f.summary.startswith("transfer.download.failed") for f in flags)
    # The other file is untouched and still downloads.
    assert biller.download(other_tid, other_fid).content == OTHER


def test_missing_object_is_storage_unavailable_not_an_integrity_alert(party, session_for, components, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    components.store.destroy(sealed_of(db, fid).object_key)
    r = biller.download(tid, fid)
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    assert "alerted" not in r.json()["error"]["message"]
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.severity.value == "warning"
    assert (failed.details["reason"], failed.details["alert"]) == ("object_missing", False)


@pytest.mark.parametrize("error, reason", [("unavailable", "storage_unavailable"), ("denied", "storage_refused")])
def test_storage_failing_on_read(party, session_for, components, db, monkeypatch, error, reason):
    from storage import StoragePermissionDenied, StorageUnavailable

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    exc = StorageUnavailable("connection refused") if error == "unavailable" else StoragePermissionDenied("403")

    def get(key, start=0, end=None):
        raise exc

    monkeypatch.setattr(components.store, "get", get)
    r = biller.download(tid, fid)
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.severity.value == "warning" and failed.details["reason"] == reason


def test_key_service_down_on_download(party, session_for, components, db, monkeypatch):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=1)

    def unwrap(wrapped, context):
        raise ProviderUnavailable("KMS decrypt failed: unreachable")

    monkeypatch.setattr(components.keys, "unwrap", unwrap)
    r = biller.download(tid, fid)
    assert r.status_code == 503 and r.json()["error"]["code"] == "key_provider_unavailable"
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.severity.value == "warning" and failed.details["reason"] == "key_provider_unavailable"
    assert failed.details["released"] is True
    monkeypatch.undo()
    assert biller.download(tid, fid).content == PDF  # the failure did not use up the only download


@pytest.mark.parametrize("where", ["key_lookup", "data_key", "file_name"])
def test_key_service_down_on_upload(party, session_for, components, db, settings, monkeypatch, where):
    staff = session_for(party.staff)

    def down(*args, **kwargs):
        raise ProviderUnavailable("KMS failed: unreachable")

    method = {"key_lookup": "current_version", "data_key": "generate_data_key", "file_name": "generate_data_key"}
    if where == "file_name":
        real = components.keys.generate_data_key
        calls = {"n": 0}

        def down(key_id, context):  # the file's data key works; sealing its name does not
            calls["n"] += 1
            if calls["n"] > 1:
                raise ProviderUnavailable("KMS failed: unreachable")
            return real(key_id, context)

    monkeypatch.setattr(components.keys, method[where], down)
    r = staff.upload(party.vendor.id)
    assert r.status_code == 503 and r.json()["error"]["code"] == "key_provider_unavailable"
    assert "Nothing was kept" in r.json()["error"]["message"]
    failed = events(db, "transfer.upload.failed")[-1]
    assert failed.severity.value == "warning" and failed.details["reason"] == "key_provider_unavailable"
    assert failed.target_org_id == party.practice.id and failed.details["vendor_id"] == party.vendor.id
    assert_nothing_kept(db, settings)


def test_storage_refusing_writes_mid_upload(party, session_for, components, db, settings, monkeypatch, fake_clock):
    """The objects directory turns read-only under a non-root server while a file streams in."""
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck

    root = str(components.store.root)
    real_replace, real_unlink = os.replace, os.unlink

    def refused(path):
        return str(path).startswith(root)

    def replace(src, dst, *a, **kw):
        if refused(dst):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_replace(src, dst, *a, **kw)

    def unlink(path, *a, **kw):
        if refused(path):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(path, *a, **kw)

    monkeypatch.setattr("storage.local.os.replace", replace)
    monkeypatch.setattr("storage.local.os.unlink", unlink)
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id)
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    failed = events(db, "transfer.upload.failed")[-1]
    assert failed.severity.value == "warning" and failed.details["reason"] == "storage_refused"
    assert (failed.details["objects_removed"], failed.details["objects_left_for_fsck"]) == (0, 1)
    assert db.scalars(select(Transfer)).all() == []  # no half-written transfer
    db.commit()
    [left] = live_sealed(db)
    assert left.state.value == "pending"  # recorded, so it is never an orphan

    monkeypatch.undo()  # the directory is writable again
    fake_clock.advance(hours=2)
    assert fsck(components, Actor.system(), repair=True).removed == [left.object_key]
    assert_nothing_kept(db, settings)
    assert not any(p.name.startswith(".tmp") for p in stored_objects(settings))


def test_the_pages_say_what_happened_too(party, session_for, components, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party)
    object_key = sealed_of(db, fid).object_key
    ciphertext = b"".join(components.store.get(object_key))
    components.store.destroy(object_key)
    r = biller.client.get(f"/transfers/{tid}/files/{fid}/download")
    assert r.status_code == 503 and r.headers["content-type"].startswith("text/html")
    assert "File storage is unavailable" in r.text and "%PDF" not in r.text
    components.store.put(object_key, iter([ciphertext[:-10]]))
    r = biller.client.get(f"/transfers/{tid}/files/{fid}/download")
    assert r.status_code == 502 and "failed its integrity check" in r.text


def test_baa_copy_failures_say_what_happened(party, session_for, components, db):
    from tests.sealed.test_fsck import SIGNED, put_copy

    admin = session_for(party.admin)
    assert put_copy(admin, party.baa_id, SIGNED).status_code == 200
    key = sealed_of(db, party.baa_id, "baa_copy").object_key
    data = bytearray(b"".join(components.store.get(key)))
    data[300] ^= 0x01
    components.store.put(key, iter([bytes(data)]))
    r = admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy")
    assert r.status_code == 502 and r.json()["error"]["code"] == "integrity_failure"
    failed = events(db, "baa.copy.download.failed")[-1]
    assert failed.severity.value == "high" and failed.details["alert"] is True
    components.store.destroy(key)
    r = admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy")
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    assert events(db, "baa.copy.download.failed")[-1].details["reason"] == "object_missing"
