"""Receiving files: sniff, limit and seal each one as it streams in.

Runs in a worker thread.  Each file is sealed through the sealed-object registry:
recorded as pending (committed) before its first byte is stored, so a crash can
never leave an object nobody can find; the transfer, its files, their registry
rows and their events then commit in one transaction, or everything stored so far
is destroyed again and the failure is recorded with its reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select

from crypto import CryptoError, seal
from gateway import clock, metrics
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import record_event
from gateway.auth.service import Principal
from gateway.baas.service import active_baa
from gateway.components import Components
from gateway.errors import ClientDisconnected, Forbidden, InvalidInput, NotFound
from gateway.filetypes import FileTooLarge, PlaintextMeter  # noqa: F401  (FileTooLarge: the routes raise it)
from gateway.ids import new_id
from gateway.orgs.models import Organisation, OrgKind
from gateway.sealed import service as sealed
from gateway.sealed.errors import SealedError, translate
from gateway.sealed.keys import live_relationship_key, practice_key
from gateway.transfers import filenames, notices
from gateway.transfers.intake import IncomingFile
from gateway.transfers.models import Direction, FileState, Transfer, TransferFile, TransferRecipient, TransferStatus
from gateway.users.models import Role, User
from gateway.users.service import active_biller_clause

log = logging.getLogger("phigate.transfers")


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
    written: sealed.Sealed
    name_sealed: bytes
    file_type: str


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
        record_event(
            db,
            Action.TRANSFER_UPLOAD_DENIED,
            actor=principal.actor,
            outcome=Outcome.denied,
            target_type="org",
            target_id=req.partner_id,
            target_org_id=practice_id,
            details={"reason": "baa_not_active", "vendor_id": vendor_id},
        )
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
        billers = list(db.scalars(select(User).where(User.id.in_(ids), active_biller_clause([vendor_id]))))
        if len(billers) != len(ids):
            raise InvalidInput("Recipients must be active billers of the vendor.", code="invalid_recipients")
    return direction, practice_id, vendor_id, billers


UPLOAD_MESSAGES = {
    "storage_unavailable": "File storage is unavailable. Nothing was kept; try again later.",
    "key_provider_unavailable": "The key service is unavailable. Nothing was kept; try again later.",
}


def receive(c: Components, principal: Principal, req: Request, files: Iterator[IncomingFile]) -> str:
    """Store every file of one transfer and create it, all or nothing. Returns the transfer id."""
    with metrics.IN_FLIGHT.labels(metrics.UPLOAD).track_inprogress():
        return _receive(c, principal, req, files)


def _receive(c: Components, principal: Principal, req: Request, files: Iterator[IncomingFile]) -> str:
    settings = c.settings
    transfer_id = new_id()
    stored: list[_Stored] = []
    pending: list[sealed.Pending] = []
    with c.db.sessions() as db:
        direction, practice_id, vendor_id, billers = check_request(db, principal, req)
        db.commit()  # hold no transaction (on SQLite: no write lock) while the files stream in
        try:
            # The key lookup is inside: a key service that fails here is reported and audited like any other.
            key_id = (
                live_relationship_key(c.keys, practice_id, vendor_id)
                if direction == Direction.outbound
                else practice_key(practice_id)
            )
            c.keys.ensure_key(key_id)
            for position, incoming in enumerate(files):
                if position >= settings.max_files_per_transfer:
                    raise InvalidInput(
                        f"At most {settings.max_files_per_transfer} files per transfer.", code="too_many_files"
                    )
                stored.append(_store_file(c, key_id, practice_id, vendor_id, transfer_id, incoming, pending))
            if not stored:
                raise InvalidInput("Choose at least one file.", code="no_files")
            note_sealed = (
                seal(c.keys, key_id, req.note.encode(), note_context(transfer_id)) if req.note.strip() else None
            )
            record_transfer(
                db,
                principal,
                transfer_id=transfer_id,
                direction=direction,
                practice_id=practice_id,
                vendor_id=vendor_id,
                key_id=key_id,
                purpose=req.purpose,
                note_sealed=note_sealed,
                billers=billers,
                files=[
                    StoredFile(s.file_id, s.name_sealed, s.file_type, s.written.plaintext_size, s.written.sha256)
                    for s in stored
                ],
            )
            sealed.commit(db, [s.written for s in stored])
            db.commit()
        except BaseException as exc:
            db.rollback()
            # Key-service failures outside the registry (key lookup, sealing the name or note) read like its own.
            err = translate(exc) if isinstance(exc, CryptoError | SealedError) else None
            if err is not None:
                err.message = UPLOAD_MESSAGES.get(err.code, err.message)
            _discard(c, principal, practice_id, vendor_id, transfer_id, pending, exc, err)
            if err is not None and err is not exc:
                raise err from None
            raise
    return transfer_id


@dataclass(frozen=True)
class StoredFile:
    """A file whose ciphertext is stored, ready to be recorded as part of a transfer."""

    file_id: str
    name_sealed: bytes
    file_type: str
    size: int
    sha256: str


def record_transfer(
    db,
    principal: Principal,
    *,
    transfer_id: str,
    direction: Direction,
    practice_id: str,
    vendor_id: str,
    key_id: str,
    purpose: str,
    note_sealed: bytes | None,
    billers: list[User],
    files: list[StoredFile],
) -> None:
    """Add a transfer, its recipients and files and record their events, in the caller's transaction.

    The one way a transfer comes into being, whether its files arrived in one request or as
    resumable uploads; the caller commits the files' sealed objects in the same transaction.
    """
    now = clock.now()
    transfer = Transfer(
        id=transfer_id,
        direction=direction,
        practice_id=practice_id,
        vendor_id=vendor_id,
        status=TransferStatus.awaiting_approval if direction == Direction.outbound else TransferStatus.delivered,
        purpose=" ".join(purpose.split()),
        key_id=key_id,
        created_by=principal.user.id,
        created_at=now,
        note_sealed=note_sealed,
    )
    db.add(transfer)
    transfer.recipients = [TransferRecipient(transfer_id=transfer_id, user_id=b.id) for b in billers]
    for position, f in enumerate(files):
        db.add(
            TransferFile(
                id=f.file_id,
                transfer_id=transfer_id,
                position=position,
                name_sealed=f.name_sealed,
                file_type=f.file_type,
                size=f.size,
                sha256=f.sha256,
                state=FileState.stored,
                created_at=now,
            )
        )
    db.flush()
    record_event(
        db,
        Action.TRANSFER_CREATED,
        actor=principal.actor,
        target_type="transfer",
        target_id=transfer_id,
        target_org_id=practice_id,
        details={
            "direction": direction.value,
            "vendor_id": vendor_id,
            "files": len(files),
            "recipients": sorted(b.id for b in billers),
        },
    )
    for f in files:
        record_event(
            db,
            Action.TRANSFER_FILE_STORED,
            actor=principal.actor,
            target_type="transfer",
            target_id=transfer_id,
            target_org_id=practice_id,
            details={
                "file_id": f.file_id,
                "vendor_id": vendor_id,
                "size": f.size,
                "sha256": f.sha256,
                "file_type": f.file_type,
                "key_id": key_id,
            },
        )
    notices.created(db, transfer)


def _store_file(
    c: Components,
    key_id: str,
    practice_id: str,
    vendor_id: str,
    transfer_id: str,
    incoming: IncomingFile,
    pending: list[sealed.Pending],
) -> _Stored:
    settings = c.settings
    name = filenames.sanitise(incoming.name)
    extension = filenames.extension(name)
    if extension not in settings.allowed_file_types:
        raise InvalidInput(
            f"This type of file is not accepted. Accepted: {', '.join(sorted(settings.allowed_file_types))}.",
            code="file_type_not_allowed",
        )
    file_id = new_id()
    reserved = sealed.reserve(
        c,
        sealed.transfer_file(
            key_id=key_id, practice_id=practice_id, vendor_id=vendor_id, transfer_id=transfer_id, file_id=file_id
        ),
    )
    pending.append(reserved)
    plaintext = PlaintextMeter(incoming.chunks, extension, settings.allowed_file_types, settings.max_file_size)
    written = sealed.write(c, reserved, plaintext)
    return _Stored(
        file_id=file_id,
        written=written,
        file_type=plaintext.file_type,
        name_sealed=seal(c.keys, key_id, name.encode(), name_context(file_id)),
    )


def _discard(
    c: Components,
    principal: Principal,
    practice_id: str,
    vendor_id: str,
    transfer_id: str,
    pending: list[sealed.Pending],
    exc: BaseException,
    err: SealedError | None,
) -> None:
    """Destroy whatever this failed upload stored, and record what happened (never masking `exc`)."""
    try:
        removed, left = sealed.discard(c, pending)
        if err is not None:
            reason, severity = err.reason, err.severity
        else:
            reason = getattr(exc, "code", None) or (
                "client_disconnected" if _is_disconnect(exc) else type(exc).__name__
            )
            severity = Severity.info
        with c.db.transaction() as db:
            record_event(
                db,
                Action.TRANSFER_UPLOAD_FAILED,
                actor=principal.actor,
                outcome=Outcome.failure,
                severity=severity,
                target_type="transfer",
                target_id=transfer_id,
                target_org_id=practice_id,
                details={
                    "reason": reason,
                    "vendor_id": vendor_id,
                    "objects_removed": removed,
                    "objects_left_for_fsck": left,
                },
            )
    except Exception:  # the upload's own error is what the client must see
        log.exception("could not record the failed upload of transfer %s", transfer_id)


def _is_disconnect(exc: BaseException) -> bool:
    return isinstance(exc, ClientDisconnected)
