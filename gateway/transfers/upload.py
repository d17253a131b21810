"""Receiving files: sniff, limit, hash, encrypt and store each one as it streams in.

Runs in a worker thread.  Each object is first recorded as pending (committed)
so a crash can never leave an object nobody can find; the transfer, its files
and their events then commit in one transaction, or everything stored so far
is destroyed again and the failure is recorded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import delete, select

from crypto import ProviderUnavailable, encrypt_stream, seal
from gateway import clock, metrics
from gateway.audit.models import Outcome
from gateway.audit.service import record_event
from gateway.auth.service import Principal
from gateway.baas.service import active_baa
from gateway.components import Components
from gateway.errors import Forbidden, GatewayError, InvalidInput, NotFound
from gateway.ids import new_id
from gateway.orgs.models import Organisation, OrgKind
from gateway.transfers import filenames, filetypes
from gateway.transfers.intake import IncomingFile
from gateway.transfers.models import (Direction, FileState, PendingObject, Transfer, TransferFile, TransferRecipient,
                                      TransferStatus)
from gateway.users.models import Role, User
from storage import StorageError

_UPLOADED = metrics.TRANSFER_BYTES.labels(metrics.UPLOAD)

log = logging.getLogger("phigate.transfers")


class FileTooLarge(GatewayError):
    status = 413
    code = "file_too_large"


class StorageDown(GatewayError):
    status = 503
    code = "storage_unavailable"
    message = "File storage is unavailable. Nothing was kept; try again later."


def relationship_key(practice_id: str, vendor_id: str) -> str:
    """The KEK for files a practice sends to one vendor; destroying it shreds every copy sent there.

    Derived from the pair (KMS aliases and key files limit ids to 64 characters).
    """
    return "rel-" + hashlib.sha256(f"{practice_id}:{vendor_id}".encode()).hexdigest()[:40]


def live_relationship_key(keys, practice_id: str, vendor_id: str) -> str:
    """The relationship KEK new files are sent under: the first generation not destroyed.

    Offboarding destroys the pair's key for good (a destroyed id is never re-created),
    so a practice that signs a new BAA with the same vendor later starts a new
    generation (`rel-...-g1`, `-g2`, ...); files of the old one stay crypto-shredded.
    """
    from crypto import KeyDestroyed, KeyNotFound

    base = relationship_key(practice_id, vendor_id)
    for generation in range(10_000):
        key_id = base if generation == 0 else f"{base}-g{generation}"
        try:
            keys.current_version(key_id)
        except KeyDestroyed:
            continue
        except KeyNotFound:
            return key_id  # not created yet: the next upload creates it
        return key_id
    raise RuntimeError("no free relationship key generation")  # pragma: no cover - 10,000 offboardings


def practice_key(practice_id: str) -> str:
    """The KEK for files a practice receives."""
    return f"org-{practice_id}"


def file_context(*, practice_id: str, vendor_id: str, transfer_id: str,
                 file_id: str) -> dict[str, str]:
    """Bound into every segment: a ciphertext moved to another file or tenant does not decrypt."""
    return {"practice": practice_id, "vendor": vendor_id, "transfer": transfer_id, "file": file_id}


def name_context(file_id: str) -> dict[str, str]:
    return {"purpose": "file-name", "file": file_id}


def note_context(transfer_id: str) -> dict[str, str]:
    return {"purpose": "transfer-note", "transfer": transfer_id}


@dataclass
class Request:
    """What a sender asked for, before any file is read."""

    partner_id: str
    purpose: str
    note: str
    biller_ids: list[str]


@dataclass
class _Stored:
    file_id: str
    object_key: str
    name_sealed: bytes
    file_type: str
    size: int
    sha256: str
    ciphertext_size: int
    wrapped_dek: bytes


class PlaintextMeter:
    """Wraps the incoming bytes: checks the type on the first bytes, enforces the size limit, hashes."""

    def __init__(self, chunks: Iterator[bytes], extension: str, allowed: tuple[str, ...], limit: int):
        self.chunks, self.extension, self.allowed, self.limit = chunks, extension, allowed, limit
        self.sha = hashlib.sha256()
        self.size = 0
        self.file_type = ""

    def __iter__(self) -> Iterator[bytes]:
        head = bytearray()
        pending: list[bytes] = []
        for chunk in self.chunks:
            if not self.file_type:
                head += chunk[: filetypes.SNIFF_BYTES - len(head)]
                pending.append(chunk)
                if len(head) < filetypes.SNIFF_BYTES:
                    continue
                self.file_type = filetypes.check(self.extension, bytes(head), self.allowed)
                for held in pending:
                    yield from self._count(held)
                pending = []
                continue
            yield from self._count(chunk)
        if not self.file_type:
            if not head:
                raise InvalidInput("The file is empty.", code="empty_file")
            self.file_type = filetypes.check(self.extension, bytes(head), self.allowed)
            for held in pending:
                yield from self._count(held)

    def _count(self, chunk: bytes) -> Iterator[bytes]:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FileTooLarge(f"A file may be at most {self.limit} bytes.")
        self.sha.update(chunk)
        _UPLOADED.inc(len(chunk))
        yield chunk


def check_request(db, principal: Principal, req: Request) -> tuple[Direction, str, str, list[User]]:
    """Validate the sender, the partner, the BAA and the named billers before reading any file."""
    user = principal.user
    partner = db.get(Organisation, req.partner_id)
    if user.role in (Role.practice_staff, Role.practice_approver):
        direction, practice_id = Direction.outbound, user.org_id
        if partner is None or partner.kind != OrgKind.vendor or not partner.active:
            raise NotFound("No such vendor.", code="vendor_not_found")
        vendor_id = partner.id
    elif user.role == Role.biller:
        direction, vendor_id = Direction.inbound, user.org_id
        if partner is None or partner.kind != OrgKind.practice or not partner.active:
            raise NotFound("No such practice.", code="practice_not_found")
        practice_id = partner.id
    else:
        raise Forbidden()
    if active_baa(db, practice_id, vendor_id) is None:
        record_event(db, "transfer.upload.denied", actor=principal.actor, outcome=Outcome.denied,
                     target_type="org", target_id=req.partner_id, target_org_id=practice_id,
                     details={"reason": "baa_not_active"})
        db.commit()
        raise Forbidden("There is no BAA in force with this organisation.", code="baa_not_active")
    purpose = " ".join(req.purpose.split())
    if not purpose or len(purpose) > 100:
        raise InvalidInput("Give a purpose or ticket reference (at most 100 characters).", code="invalid_purpose")
    billers: list[User] = []
    if req.biller_ids:
        if direction != Direction.outbound:
            raise InvalidInput("Recipients are named only on files sent to a vendor.", code="invalid_recipients")
        ids = set(req.biller_ids)
        billers = list(db.scalars(select(User).where(User.id.in_(ids), User.org_id == vendor_id,
                                                     User.role == Role.biller, User.active.is_(True))))
        if len(billers) != len(ids):
            raise InvalidInput("Recipients must be active billers of the vendor.", code="invalid_recipients")
    return direction, practice_id, vendor_id, billers


def receive(c: Components, principal: Principal, req: Request, files: Iterator[IncomingFile]) -> str:
    """Store every file of one transfer and create it, all or nothing. Returns the transfer id."""
    with metrics.IN_FLIGHT.labels(metrics.UPLOAD).track_inprogress():
        return _receive(c, principal, req, files)


def _receive(c: Components, principal: Principal, req: Request, files: Iterator[IncomingFile]) -> str:
    settings = c.settings
    transfer_id = new_id()
    stored: list[_Stored] = []
    pending: list[str] = []
    with c.db.sessions() as db:
        direction, practice_id, vendor_id, billers = check_request(db, principal, req)
        db.commit()  # hold no transaction (on SQLite: no write lock) while the files stream in
        key_id = (live_relationship_key(c.keys, practice_id, vendor_id) if direction == Direction.outbound
                  else practice_key(practice_id))
        try:
            c.keys.ensure_key(key_id)
            for position, incoming in enumerate(files):
                if position >= settings.max_files_per_transfer:
                    raise InvalidInput(f"At most {settings.max_files_per_transfer} files per transfer.",
                                       code="too_many_files")
                stored.append(_store_file(c, key_id, practice_id, vendor_id, transfer_id, incoming, pending))
            if not stored:
                raise InvalidInput("Choose at least one file.", code="no_files")
            now = clock.now()
            transfer = Transfer(
                id=transfer_id, direction=direction, practice_id=practice_id, vendor_id=vendor_id,
                status=TransferStatus.awaiting_approval if direction == Direction.outbound else TransferStatus.delivered,
                purpose=" ".join(req.purpose.split()), key_id=key_id, created_by=principal.user.id, created_at=now,
                note_sealed=seal(c.keys, key_id, req.note.encode(), note_context(transfer_id)) if req.note.strip() else None,
            )
            db.add(transfer)
            transfer.recipients = [TransferRecipient(transfer_id=transfer_id, user_id=b.id) for b in billers]
            for position, s in enumerate(stored):
                db.add(TransferFile(
                    id=s.file_id, transfer_id=transfer_id, position=position, object_key=s.object_key,
                    storage_location=c.store.location_id, name_sealed=s.name_sealed, file_type=s.file_type,
                    size=s.size, ciphertext_size=s.ciphertext_size, sha256=s.sha256, wrapped_dek=s.wrapped_dek,
                    state=FileState.stored, created_at=now))
            db.flush()
            record_event(db, "transfer.created", actor=principal.actor, target_type="transfer", target_id=transfer_id,
                         target_org_id=practice_id,
                         details={"direction": direction.value, "vendor_id": vendor_id, "files": len(stored),
                                  "recipients": sorted(b.id for b in billers)})
            for s in stored:
                record_event(db, "transfer.file.stored", actor=principal.actor, target_type="transfer",
                             target_id=transfer_id, target_org_id=practice_id,
                             details={"file_id": s.file_id, "size": s.size, "sha256": s.sha256,
                                      "file_type": s.file_type, "key_id": key_id})
            db.execute(delete(PendingObject).where(PendingObject.object_key.in_([s.object_key for s in stored])))
            db.commit()
        except BaseException as exc:
            db.rollback()
            _discard(c, principal, practice_id, transfer_id, pending, exc)
            if isinstance(exc, StorageError):
                raise StorageDown() from exc
            if isinstance(exc, ProviderUnavailable):
                raise StorageDown("The key service is unavailable. Nothing was kept; try again later.",
                                  code="key_provider_unavailable") from exc
            raise
    return transfer_id


def _store_file(c: Components, key_id: str, practice_id: str, vendor_id: str, transfer_id: str,
                incoming: IncomingFile, pending: list[str]) -> _Stored:
    settings = c.settings
    name = filenames.sanitise(incoming.name)
    extension = filenames.extension(name)
    if extension not in settings.allowed_file_types:
        raise InvalidInput(f"This type of file is not accepted. Accepted: {', '.join(sorted(settings.allowed_file_types))}.",
                           code="file_type_not_allowed")
    file_id, object_key = new_id(), new_id()
    # Recorded before the first byte is stored: a crash leaves a row that `phigate fsck` clears.
    with c.db.transaction() as db:
        db.add(PendingObject(object_key=object_key, storage_location=c.store.location_id, created_at=clock.now(),
                             reason="upload"))
    pending.append(object_key)
    context = file_context(practice_id=practice_id, vendor_id=vendor_id, transfer_id=transfer_id,
                           file_id=file_id)
    dek, wrapped = c.keys.generate_data_key(key_id, context)
    plaintext = PlaintextMeter(incoming.chunks, extension, settings.allowed_file_types, settings.max_file_size)
    info = c.store.put(object_key, encrypt_stream(plaintext, dek, context), metadata={"format": "phg-stream-v1"})
    return _Stored(file_id=file_id, object_key=object_key,
                   name_sealed=seal(c.keys, key_id, name.encode(), name_context(file_id)),
                   file_type=plaintext.file_type, size=plaintext.size, sha256=plaintext.sha.hexdigest(),
                   ciphertext_size=info.size, wrapped_dek=wrapped.to_bytes())


def _discard(c: Components, principal: Principal, practice_id: str, transfer_id: str, pending: list[str],
             exc: BaseException) -> None:
    """Destroy whatever this failed upload stored, and record what happened."""
    destroyed, kept = 0, 0
    for key in pending:
        try:
            c.store.destroy(key)
        except StorageError as err:
            if type(err).__name__ != "ObjectNotFound":
                # Storage is down: the pending row stays, and `phigate fsck` finishes the job.
                log.warning("could not remove object of failed upload (%s); left for fsck", type(err).__name__)
                kept += 1
                continue
        with c.db.transaction() as db:
            db.execute(delete(PendingObject).where(PendingObject.object_key == key))
        destroyed += 1
    reason = getattr(exc, "code", None) or ("client_disconnected" if _is_disconnect(exc) else type(exc).__name__)
    with c.db.transaction() as db:
        record_event(db, "transfer.upload.failed", actor=principal.actor, outcome=Outcome.failure,
                     target_type="transfer", target_id=transfer_id, target_org_id=practice_id,
                     details={"reason": reason, "objects_removed": destroyed, "objects_left_for_fsck": kept})


def _is_disconnect(exc: BaseException) -> bool:
    from starlette.requests import ClientDisconnect

    return isinstance(exc, ClientDisconnect)
