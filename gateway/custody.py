"""Key custody operations on the gateway's data: rotation and re-wrapping, each audited.

Rotation adds a KEK version that new writes use at once.  Re-wrapping moves every
object's wrapped DEK (through the sealed-object registry, so every kind of object
is covered) and every sealed value (TOTP secrets, file names, notes) to the newest
version of its KEK without touching object data, so an old KEK version can then be
retired.  Destroyed keys are skipped: what they protected is already crypto-shredded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from crypto import KeyDestroyed, WrappedKey, reseal, sealed_key_info
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.sealed import service as sealed
from gateway.transfers.models import Transfer, TransferFile
from gateway.transfers.upload import name_context, note_context
from gateway.users.models import User

BATCH = 500


def rotate(c: Components, key_id: str, actor: Actor) -> int:
    """Add a new version of `key_id`; returns it."""
    version = c.keys.rotate(key_id)
    with c.db.transaction() as db:
        record_event(
            db,
            Action.KEYS_ROTATED,
            actor=actor,
            severity=Severity.warning,
            target_type="key",
            target_id=key_id,
            details={"version": version},
        )
    return version


@dataclass
class RewrapReport:
    rewrapped: int = 0
    already_current: int = 0
    skipped_destroyed: int = 0
    by_key: dict[str, int] = field(default_factory=dict)
    # Objects re-wrapped per kind (transfer_file, baa_copy, ...), and those still being written.
    objects_by_kind: dict[str, int] = field(default_factory=dict)
    objects_pending: int = 0


def _current(c: Components, wrapped: WrappedKey, cache: dict[str, int]) -> bool:
    if wrapped.key_id not in cache:
        cache[wrapped.key_id] = c.keys.current_version(wrapped.key_id)
    return wrapped.key_version >= cache[wrapped.key_id]


def _reseal_column(
    c: Components, report: RewrapReport, versions: dict[str, int], model, column: str, context_of, visit
) -> None:
    """Re-seal one column of sealed values, a batch per transaction."""
    last = ""
    attr = getattr(model, column)
    while True:
        with c.db.transaction() as db:
            rows = list(
                db.scalars(select(model).where(model.id > last, attr.is_not(None)).order_by(model.id).limit(BATCH))
            )
            if not rows:
                return
            for row in rows:
                blob, ctx = getattr(row, column), context_of(row)
                new = visit(sealed_key_info(blob), lambda b=blob, ctx=ctx: reseal(c.keys, b, ctx))
                if new is not None:
                    setattr(row, column, new)
            last = rows[-1].id


def rewrap_all(c: Components, actor: Actor) -> RewrapReport:
    """Re-wrap every object's DEK and every sealed value that is not on its key's newest version."""
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

    _reseal_column(
        c, report, versions, User, "totp_secret_sealed", lambda u: {"purpose": "totp-secret", "user": u.id}, visit
    )
    _reseal_column(c, report, versions, TransferFile, "name_sealed", lambda f: name_context(f.id), visit)
    _reseal_column(c, report, versions, Transfer, "note_sealed", lambda t: note_context(t.id), visit)
    objects = sealed.rewrap_objects(c, versions)
    report.rewrapped += objects.rewrapped
    report.already_current += objects.already_current
    report.skipped_destroyed += objects.skipped_destroyed
    for key_id, n in objects.by_key.items():
        report.by_key[key_id] = report.by_key.get(key_id, 0) + n
    report.objects_by_kind, report.objects_pending = objects.by_kind, objects.pending
    with c.db.transaction() as db:
        record_event(
            db,
            Action.KEYS_REWRAPPED,
            actor=actor,
            target_type="key",
            target_id=None,
            details={
                "rewrapped": report.rewrapped,
                "already_current": report.already_current,
                "skipped_destroyed": report.skipped_destroyed,
                "keys": sorted(report.by_key),
                **{f"objects_{kind}": n for kind, n in sorted(objects.by_kind.items())},
                "objects_pending": objects.pending,
            },
        )
    return report


def key_inventory(c: Components) -> list[dict]:
    """Every key the provider holds, its current version, and how many objects each version still wraps."""
    with c.db.snapshot() as db:
        wrapped = sealed.wrapped_by_version(db)
    return [
        {"key_id": k, "version": c.keys.current_version(k), "objects_by_version": wrapped.get(k, {})}
        for k in sorted(c.keys.key_ids())
    ]
