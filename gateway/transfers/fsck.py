"""`phigate fsck`: reconcile the database with object storage.

Finds (1) objects recorded as pending by uploads that crashed or whose clean-up
failed, and (2) objects in storage that no file and no pending record names.
With `repair`, both are destroyed (every version) and each removal is audited.
Ciphertext only: nothing here can read a file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select

from gateway import clock
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.transfers.models import PendingObject, TransferFile
from storage import ObjectNotFound


@dataclass
class FsckReport:
    stale_pending: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def fsck(c: Components, actor: Actor, *, repair: bool, grace_minutes: int = 60) -> FsckReport:
    """Report (and with `repair` remove) objects nothing can find; report files whose object is missing."""
    report = FsckReport()
    cutoff = clock.now() - timedelta(minutes=grace_minutes)
    with c.db.sessions() as db:
        pending = {p.object_key: p for p in db.scalars(select(PendingObject))}
        stored = set(db.scalars(select(TransferFile.object_key).where(TransferFile.state == "stored")))
        known = set(db.scalars(select(TransferFile.object_key)))
        db.commit()
    # Uploads still in progress are younger than the grace period and left alone.
    report.stale_pending = sorted(k for k, p in pending.items() if p.created_at < cutoff)
    in_storage = set()
    for info in c.store.list():
        in_storage.add(info.key)
        if info.key not in known and info.key not in pending:
            report.unreferenced.append(info.key)
    report.missing = sorted(stored - in_storage)
    if repair:
        for key in report.stale_pending + report.unreferenced:
            try:
                c.store.destroy(key)
            except ObjectNotFound:
                pass
            with c.db.transaction() as db:
                db.execute(delete(PendingObject).where(PendingObject.object_key == key))
                record_event(db, "storage.orphan.destroyed", actor=actor, severity=Severity.warning,
                             target_type="object", target_id=key,
                             details={"why": "pending" if key in pending else "unreferenced"})
            report.removed.append(key)
    if report.missing:
        with c.db.transaction() as db:
            record_event(db, "storage.object.missing", actor=actor, severity=Severity.high, target_type="object",
                         details={"count": len(report.missing), "object_keys": report.missing[:100], "alert": True})
    return report
