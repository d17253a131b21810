"""Key custody operations on the gateway's data: rotation and re-wrapping, each audited.

Rotation adds a KEK version that new writes use at once.  Re-wrapping moves
every existing wrapped DEK and sealed value (TOTP secrets, file names, notes)
to the newest version of its KEK without touching object data, so an old KEK
version can then be retired.  Destroyed keys are skipped: what they protected
is already crypto-shredded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from crypto import KeyDestroyed, WrappedKey, reseal, sealed_key_info
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.transfers.models import Transfer, TransferFile
from gateway.transfers.upload import file_context, name_context, note_context
from gateway.users.models import User

BATCH = 500


def rotate(c: Components, key_id: str, actor: Actor) -> int:
    """Add a new version of `key_id`; returns it."""
    version = c.keys.rotate(key_id)
    with c.db.transaction() as db:
        record_event(db, "keys.rotated", actor=actor, severity=Severity.warning, target_type="key", target_id=key_id,
                     details={"version": version})
    return version


@dataclass
class RewrapReport:
    rewrapped: int = 0
    already_current: int = 0
    skipped_destroyed: int = 0
    by_key: dict[str, int] = field(default_factory=dict)


def _current(c: Components, wrapped: WrappedKey, cache: dict[str, int]) -> bool:
    if wrapped.key_id not in cache:
        cache[wrapped.key_id] = c.keys.current_version(wrapped.key_id)
    return wrapped.key_version >= cache[wrapped.key_id]


def rewrap_all(c: Components, actor: Actor) -> RewrapReport:
    """Re-wrap every DEK and sealed value that is not on its key's newest version."""
    report = RewrapReport()
    versions: dict[str, int] = {}

    def visit(wrapped: WrappedKey, redo) -> object | None:
        try:
            if _current(c, wrapped, versions):
                report.already_current += 1
                return None
            new = redo()
        except KeyDestroyed:
            report.skipped_destroyed += 1
            return None
        report.rewrapped += 1
        report.by_key[wrapped.key_id] = report.by_key.get(wrapped.key_id, 0) + 1
        return new

    with c.db.transaction() as db:
        for user in db.scalars(select(User).where(User.totp_secret_sealed.is_not(None))):
            ctx = {"purpose": "totp-secret", "user": user.id}
            sealed = user.totp_secret_sealed
            new = visit(sealed_key_info(sealed), lambda s=sealed, ctx=ctx: reseal(c.keys, s, ctx))
            if new is not None:
                user.totp_secret_sealed = new
    last = ""
    while True:
        with c.db.transaction() as db:
            files = list(db.scalars(select(TransferFile).where(TransferFile.id > last,
                                                               TransferFile.wrapped_dek.is_not(None))
                                    .order_by(TransferFile.id).limit(BATCH)))
            if not files:
                break
            for f in files:
                t = db.get(Transfer, f.transfer_id)
                ctx = file_context(practice_id=t.practice_id, vendor_id=t.vendor_id, transfer_id=t.id, file_id=f.id)
                wrapped = WrappedKey.from_bytes(f.wrapped_dek)
                new = visit(wrapped, lambda w=wrapped, ctx=ctx: c.keys.rewrap(w, ctx))
                if new is not None:
                    f.wrapped_dek = new.to_bytes()
                if f.name_sealed is not None:
                    sealed = f.name_sealed
                    new = visit(sealed_key_info(sealed), lambda s=sealed, fid=f.id: reseal(c.keys, s, name_context(fid)))
                    if new is not None:
                        f.name_sealed = new
                if f.position == 0 and t.note_sealed is not None:
                    sealed = t.note_sealed
                    new = visit(sealed_key_info(sealed), lambda s=sealed, tid=t.id: reseal(c.keys, s, note_context(tid)))
                    if new is not None:
                        t.note_sealed = new
            last = files[-1].id
    with c.db.transaction() as db:
        record_event(db, "keys.rewrapped", actor=actor, target_type="key", target_id=None,
                     details={"rewrapped": report.rewrapped, "already_current": report.already_current,
                              "skipped_destroyed": report.skipped_destroyed,
                              "keys": sorted(report.by_key)})
    return report


def key_inventory(c: Components) -> list[dict]:
    """Every key the provider holds with its current version (ids only; no key material)."""
    return [{"key_id": k, "version": c.keys.current_version(k)} for k in sorted(c.keys.key_ids())]


