"""Bulk seeding of transfers for retention tests and bench/retention.py.

Each file is sealed as an upload seals it: a fresh data key from the key provider
under the relationship KEK, `crypto.encrypt_stream` with the registry's context for
a transfer file, `store.put` of the ciphertext, a sealed-object row, the sealed file
name; only the HTTP layer and the per-transfer audit events are skipped, and rows
are inserted in bulk.
The content is synthetic (no patient data).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import insert

from crypto import encrypt_stream, seal
from gateway import clock
from gateway.ids import new_id
from gateway.sealed.keys import practice_key, relationship_key, transfer_file_context
from gateway.sealed.models import SealedKind, SealedObject, SealedState
from gateway.transfers.models import Direction, FileState, Transfer, TransferFile, TransferStatus
from gateway.transfers.upload import name_context

SYNTHETIC = b"%PDF-1.7\nsynthetic claim attachment, no real patient data\n%%EOF\n"


def seed(
    c,
    practice_id: str,
    vendor_id: str,
    created_by: str,
    n: int,
    *,
    status: TransferStatus = TransferStatus.approved,
    direction: Direction = Direction.outbound,
    ended_days_ago: int = 0,
    files_per_transfer: int = 1,
    batch: int = 500,
    payload: bytes = SYNTHETIC,
) -> list[str]:
    """Create `n` transfers (each with `files_per_transfer` small files); returns their ids."""
    key_id = relationship_key(practice_id, vendor_id) if direction == Direction.outbound else practice_key(practice_id)
    c.keys.ensure_key(key_id)
    now = clock.now()
    ended = now - timedelta(days=ended_days_ago)
    ids: list[str] = []
    transfers, files, objects = [], [], []

    def flush():
        if transfers:
            with c.db.transaction() as db:
                db.execute(insert(Transfer), transfers)
                db.execute(insert(TransferFile), files)
                db.execute(insert(SealedObject), objects)
            transfers.clear()
            files.clear()
            objects.clear()

    for i in range(n):
        tid = new_id()
        ids.append(tid)
        row = {
            "id": tid,
            "direction": direction,
            "practice_id": practice_id,
            "vendor_id": vendor_id,
            "status": status,
            "purpose": f"SEED-{i}",
            "key_id": key_id,
            "created_by": created_by,
            "created_at": ended - timedelta(days=1),
            "note_sealed": None,
            "decided_by": None,
            "decided_at": None,
            "access_ends_at": None,
            "revoked_at": None,
        }
        if status in (TransferStatus.approved, TransferStatus.rejected, TransferStatus.revoked):
            row["decided_by"], row["decided_at"] = created_by, ended - timedelta(hours=1)
        if status == TransferStatus.approved:
            row["access_ends_at"] = ended
        if status == TransferStatus.revoked:
            row["revoked_at"] = ended
        transfers.append(row)
        for pos in range(files_per_transfer):
            fid, key = new_id(), new_id()
            data = payload + f"{tid}:{pos}".encode()
            context = transfer_file_context(practice_id=practice_id, vendor_id=vendor_id, transfer_id=tid, file_id=fid)
            dek, wrapped = c.keys.generate_data_key(key_id, context)
            info = c.store.put(key, encrypt_stream(iter([data]), dek, context), metadata={"format": "phg-stream-v1"})
            sha = hashlib.sha256(data).hexdigest()
            files.append(
                {
                    "id": fid,
                    "transfer_id": tid,
                    "position": pos,
                    "name_sealed": seal(c.keys, key_id, f"claim-{i}-{pos}.pdf".encode(), name_context(fid)),
                    "file_type": "pdf",
                    "size": len(data),
                    "sha256": sha,
                    "state": FileState.stored,
                    "created_at": now,
                    "destroyed_at": None,
                }
            )
            objects.append(
                {
                    "id": new_id(),
                    "kind": SealedKind.transfer_file,
                    "owner_id": fid,
                    "practice_id": practice_id,
                    "vendor_id": vendor_id,
                    "key_id": key_id,
                    "key_generation": 0,
                    "key_version": wrapped.key_version,
                    "context": context,
                    "wrapped_dek": wrapped.to_bytes(),
                    "object_key": key,
                    "storage_location": c.store.location_id,
                    "plaintext_size": len(data),
                    "sha256": sha,
                    "ciphertext_size": info.size,
                    "state": SealedState.stored,
                    "created_at": now,
                    "stored_at": now,
                    "destroying_at": None,
                    "destroyed_at": None,
                }
            )
        if len(transfers) >= batch:
            flush()
    flush()
    return ids
