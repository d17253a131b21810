"""The signed copy of a BAA: a PDF kept with the contract record, sealed like any file.

It is a sealed object (kind `baa_copy`) under the practice's own key (the practice is
the party that must produce it at an audit), streamed in and out like a transfer,
never written in clear, and it survives offboarding: it is part of the evidence,
not PHI sent to the vendor.  Storing a new copy destroys the one it replaces.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Iterator

from sqlalchemy import select

from crypto import CryptoError
from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event
from gateway.baas.models import Baa
from gateway.components import Components
from gateway.errors import NotFound
from gateway.filetypes import PlaintextMeter
from gateway.sealed import service as sealed
from gateway.sealed.errors import SealedError, translate
from gateway.sealed.keys import practice_key
from gateway.sealed.models import SealedKind

log = logging.getLogger("phigate.baas")


def _failed(
    c: Components, action: Action, actor: Actor, baa: Baa, err: SealedError | None, exc: BaseException, **details
) -> None:
    reason = err.reason if err is not None else (getattr(exc, "code", None) or type(exc).__name__)
    try:
        with c.db.transaction() as db:
            record_event(
                db,
                action,
                actor=actor,
                outcome=Outcome.failure,
                severity=err.severity if err is not None else Severity.info,
                target_type="baa",
                target_id=baa.id,
                target_org_id=baa.practice_id,
                details={"reason": reason, "vendor_id": baa.vendor_id, "alert": bool(err and err.alert), **details},
            )
    except Exception:  # the original error is what the caller must see
        log.exception("could not record the failure on BAA %s", baa.id)


def store_copy(c: Components, baa_id: str, chunks: Iterator[bytes], actor: Actor) -> Baa:
    """Seal and store the signed PDF; a previous copy is replaced and destroyed."""
    with c.db.snapshot() as db:
        baa = db.get(Baa, baa_id)
        if baa is None:
            raise NotFound("No such BAA.", code="baa_not_found")
    pending: list[sealed.Pending] = []
    try:
        key_id = practice_key(baa.practice_id)
        c.keys.ensure_key(key_id)
        pending.append(
            sealed.reserve(
                c, sealed.baa_copy(key_id=key_id, baa_id=baa.id, practice_id=baa.practice_id, vendor_id=baa.vendor_id)
            )
        )
        written = sealed.write(c, pending[0], PlaintextMeter(chunks, "pdf", ("pdf",), c.settings.max_file_size))
        with c.db.transaction() as db:
            # Locked: two copies stored at once must not both stay current.
            baa = db.scalars(select(Baa).where(Baa.id == baa_id).with_for_update()).one()
            replaced = sealed.claim(db, SealedKind.baa_copy, [baa.id])
            sealed.commit(db, [written])
            baa.copy_size, baa.copy_sha256, baa.copy_uploaded_at = written.plaintext_size, written.sha256, clock.now()
            record_event(
                db,
                Action.BAA_COPY_STORED,
                actor=actor,
                target_type="baa",
                target_id=baa.id,
                target_org_id=baa.practice_id,
                details={
                    "size": written.plaintext_size,
                    "sha256": written.sha256,
                    "vendor_id": baa.vendor_id,
                    "replaced": bool(replaced),
                },
            )
    except BaseException as exc:
        err = translate(exc) if isinstance(exc, SealedError | CryptoError) else None
        removed, left = sealed.discard(c, pending)
        _failed(
            c, Action.BAA_COPY_UPLOAD_FAILED, actor, baa, err, exc, objects_removed=removed, objects_left_for_fsck=left
        )
        if err is not None and err is not exc:
            raise err from None
        raise
    for old in replaced:
        try:
            sealed.destroy_object(c, old)
        except SealedError as exc:
            # Claimed `destroying`: no read can reach it, and `phigate fsck --repair` finishes it.
            log.warning("replaced BAA copy not destroyed yet (%s); left for fsck", exc.reason)
    return baa


def read_copy(c: Components, baa_id: str, actor: Actor) -> tuple[Baa, Generator[bytes, None, None]]:
    """The decrypted signed copy, as a stream (first segment verified); each read is an audit event."""
    with c.db.snapshot() as db:
        baa = db.get(Baa, baa_id)
        obj = sealed.owned(db, SealedKind.baa_copy, baa_id) if baa is not None else None
    if baa is None or obj is None:
        raise NotFound("This BAA has no signed copy.", code="baa_copy_not_found")
    try:
        body = sealed.open_object(c, obj)
    except SealedError as err:
        _failed(c, Action.BAA_COPY_DOWNLOAD_FAILED, actor, baa, err, err)
        raise
    with c.db.transaction() as db:
        record_event(
            db,
            Action.BAA_COPY_DOWNLOADED,
            actor=actor,
            target_type="baa",
            target_id=baa.id,
            target_org_id=baa.practice_id,
            details={"size": baa.copy_size, "sha256": baa.copy_sha256, "vendor_id": baa.vendor_id},
        )
    return baa, _audited(c, actor, baa, body)


def _audited(c: Components, actor: Actor, baa: Baa, body: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """The stream, with a failure after the first segment (a later segment tampered with) recorded too."""
    try:
        yield from body
    except SealedError as err:
        _failed(c, Action.BAA_COPY_DOWNLOAD_FAILED, actor, baa, err, err)
        raise
