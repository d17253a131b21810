"""The signed copy of a BAA: a PDF kept with the contract record, encrypted like any file.

It is sealed under the practice's own key (the practice is the party that must
produce it at an audit), streamed in and out like a transfer, never written in
clear, and it survives offboarding: it is part of the evidence, not PHI sent to
the vendor.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import delete

from crypto import WrappedKey, decrypt_stream, encrypt_stream
from gateway import clock
from gateway.audit.service import Actor, record_event
from gateway.baas.models import Baa
from gateway.components import Components
from gateway.errors import NotFound
from gateway.ids import new_id
from gateway.transfers.models import PendingObject
from gateway.transfers.upload import PlaintextMeter, practice_key


def _context(baa: Baa) -> dict[str, str]:
    return {"purpose": "baa-signed-copy", "baa": baa.id, "practice": baa.practice_id}


def store_copy(c: Components, baa_id: str, chunks: Iterator[bytes], actor: Actor) -> Baa:
    """Encrypt and store the signed PDF; a previous copy is replaced and destroyed."""
    with c.db.sessions() as db:
        baa = db.get(Baa, baa_id)
        if baa is None:
            raise NotFound("No such BAA.", code="baa_not_found")
        db.commit()
    key_id = practice_key(baa.practice_id)
    c.keys.ensure_key(key_id)
    object_key = new_id()
    with c.db.transaction() as db:
        db.add(PendingObject(object_key=object_key, storage_location=c.store.location_id, created_at=clock.now(),
                             reason="baa-copy"))
    try:
        dek, wrapped = c.keys.generate_data_key(key_id, _context(baa))
        plaintext = PlaintextMeter(chunks, "pdf", ("pdf",), c.settings.max_file_size)
        c.store.put(object_key, encrypt_stream(plaintext, dek, _context(baa)), metadata={"format": "phg-stream-v1"})
        with c.db.transaction() as db:
            baa = db.get(Baa, baa_id)
            old = baa.copy_object_key
            baa.copy_object_key, baa.copy_key_id, baa.copy_wrapped_dek = object_key, key_id, wrapped.to_bytes()
            baa.copy_size, baa.copy_sha256, baa.copy_uploaded_at = plaintext.size, plaintext.sha.hexdigest(), clock.now()
            db.execute(delete(PendingObject).where(PendingObject.object_key == object_key))
            record_event(db, "baa.copy.stored", actor=actor, target_type="baa", target_id=baa.id,
                         target_org_id=baa.practice_id,
                         details={"size": plaintext.size, "sha256": baa.copy_sha256, "replaced": old is not None})
    except BaseException:
        # Nothing half-stored: the object goes, and so does its pending record (or fsck takes it).
        try:
            c.store.destroy(object_key)
            with c.db.transaction() as db:
                db.execute(delete(PendingObject).where(PendingObject.object_key == object_key))
        except Exception:  # noqa: BLE001 - left for `phigate fsck`
            pass
        raise
    if old is not None:
        c.store.destroy(old)
    return baa


def read_copy(c: Components, baa_id: str, actor: Actor) -> tuple[Baa, Iterator[bytes]]:
    """The decrypted signed copy, as a stream; each read is an audit event."""
    with c.db.transaction() as db:
        baa = db.get(Baa, baa_id)
        if baa is None or baa.copy_object_key is None:
            raise NotFound("This BAA has no signed copy.", code="baa_copy_not_found")
        record_event(db, "baa.copy.downloaded", actor=actor, target_type="baa", target_id=baa.id,
                     target_org_id=baa.practice_id, details={"size": baa.copy_size, "sha256": baa.copy_sha256})
    dek = c.keys.unwrap(WrappedKey.from_bytes(baa.copy_wrapped_dek), _context(baa))
    return baa, decrypt_stream(c.store.get(baa.copy_object_key), dek, _context(baa))
