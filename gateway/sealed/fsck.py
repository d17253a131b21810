"""`phigate fsck`: reconcile the sealed-object registry with object storage, for every kind of object.

Reports:

* `stale_pending`: objects recorded as pending longer than the in-flight window (an
  upload or copy that crashed, or whose clean-up failed), or, for an unfinished
  resumable upload held longer, past the time it was held until (it expired);
* `unfinished_destruction`: objects whose destruction was decided (`destroying`) longer
  than the window ago and never finished (storage was down);
* `unreferenced`: objects in storage that no registry row names, of any kind or state;
* `missing`: stored objects (in use) whose object is not in storage;
* `destroyed_but_present`: objects whose row says destroyed but storage still lists
  (Object Lock, or restored from a backup); their data keys are erased.

`--repair` destroys what is unreferenced, stale pending or unfinished destruction,
each removal audited.  A `stored` object is never touched, whatever storage says: the
registry names it, so something uses it.  Ciphertext only: nothing here can read a file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import cast

from sqlalchemy import CursorResult, select, update

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.sealed import service as sealed
from gateway.sealed.errors import SealedError
from gateway.sealed.models import SealedObject, SealedState

log = logging.getLogger("phigate.sealed")


@dataclass
class FsckReport:
    stale_pending: list[str] = field(default_factory=list)
    unfinished_destruction: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    destroyed_but_present: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def fsck(c: Components, actor: Actor, *, repair: bool, grace_minutes: int | None = None) -> FsckReport:
    """Report (and with `repair` remove) objects nothing uses; report objects in use that storage lacks."""
    report = FsckReport()
    window = grace_minutes if grace_minutes is not None else c.settings.retention_in_flight_minutes
    now = clock.now()
    cutoff = now - timedelta(minutes=window)
    here = c.store.location_id
    # Storage first, then the registry: every object is recorded (pending) before it is written, so
    # an object listed here has a row committed before the registry is read below.
    in_storage = {info.key for info in c.store.list()}
    with c.db.snapshot() as db:
        every = {r.object_key: r for r in db.scalars(select(SealedObject))}
    # A row naming another store still makes the key someone's here (objects copied between stores).
    rows = {k: r for k, r in every.items() if r.storage_location in (here, None)}
    for key, row in sorted(rows.items()):
        counts = report.by_kind.setdefault(row.kind.value, {})
        counts[row.state.value] = counts.get(row.state.value, 0) + 1
        if (
            row.state == SealedState.pending
            and row.created_at < cutoff
            and (row.held_until is None or row.held_until < now)
        ):
            report.stale_pending.append(key)
        elif row.state == SealedState.destroying and (row.destroying_at or row.created_at) < cutoff:
            report.unfinished_destruction.append(key)
        elif row.state == SealedState.stored and key not in in_storage:
            report.missing.append(key)
        elif row.state == SealedState.destroyed and key in in_storage:
            report.destroyed_but_present.append(key)
    report.unreferenced = sorted(k for k in in_storage if k not in every)
    if repair:
        for key in report.unreferenced:
            _remove_unreferenced(c, actor, key, report)
        for key in report.stale_pending + report.unfinished_destruction:
            _finish(c, actor, rows[key], report)
    if report.missing:
        with c.db.transaction() as db:
            record_event(
                db,
                Action.STORAGE_OBJECT_MISSING,
                actor=actor,
                severity=Severity.high,
                target_type="object",
                details={"count": len(report.missing), "object_keys": report.missing[:100], "alert": True},
            )
    return report


def _remove_unreferenced(c: Components, actor: Actor, key: str, report: FsckReport) -> None:
    with c.db.snapshot() as db:
        # Checked again right before: a row written since the listing makes the object someone's.
        if db.scalar(select(SealedObject.id).where(SealedObject.object_key == key)) is not None:
            return
    try:
        sealed.erase(c, key, None)
    except SealedError as exc:
        report.failed.append(key)
        log.warning("fsck could not remove an unreferenced object (%s)", exc.reason)
        return
    with c.db.transaction() as db:
        record_event(
            db,
            Action.STORAGE_ORPHAN_DESTROYED,
            actor=actor,
            severity=Severity.warning,
            target_type="object",
            target_id=key,
            details={"why": "unreferenced"},
        )
    report.removed.append(key)


def _finish(c: Components, actor: Actor, row: SealedObject, report: FsckReport) -> None:
    """Destroy a stale pending object, or finish a destruction that was decided, claiming it first."""
    why = "pending" if row.state == SealedState.pending else "destroying"
    with c.db.transaction() as db:
        # Claimed only if still in the state it was found in: an upload that commits now keeps its object.
        claimed = cast(
            CursorResult,
            db.execute(
                update(SealedObject)
                .where(SealedObject.id == row.id, SealedObject.state == row.state)
                .values(state=SealedState.destroying, destroying_at=clock.now())
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
    if not claimed:
        return
    try:
        sealed.destroy_object(c, row)
    except SealedError as exc:
        report.failed.append(row.object_key)
        log.warning("fsck could not remove a %s object (%s)", why, exc.reason)
        return
    with c.db.transaction() as db:
        record_event(
            db,
            Action.STORAGE_ORPHAN_DESTROYED,
            actor=actor,
            severity=Severity.warning,
            target_type="object",
            target_id=row.object_key,
            target_org_id=row.practice_id,
            details={
                "why": why,
                "kind": row.kind.value,
                "sealed_id": row.id,
                **({"vendor_id": row.vendor_id} if row.vendor_id else {}),
                **({"owner_id": row.owner_id} if row.owner_id else {}),
            },
        )
    report.removed.append(row.object_key)
