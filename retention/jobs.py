"""Destruction jobs: destroy every object of one practice-vendor scope in four audited steps.

For each object, each step commits with its own audit event:

1. ``destroying``: the file is claimed (state ``destroying``, a `DestructionRecord`
   created): from here on no download can start and no other job takes it;
2. ``storage_destroyed``: every stored version and delete marker is gone and
   absence verified (``store.destroy`` + its ``AbsenceProof``), or Object Lock kept
   a version and the record says so (crypto-shred only);
3. ``crypto_shredded``: the wrapped data key and the sealed file name are erased
   from the database, so no copy anywhere can be decrypted or named again;
4. ``destroyed``: the file is marked destroyed with time and verification result.

Objects go through the steps in batches (one transaction per step per batch), so
a batch of 200 costs four commits, not 800.  A record's ``step`` says how far it
got: a rerun after a crash at any instant takes each record on from there.  The
only step that may run twice is the storage call whose result was not yet
committed; destroying an absent object is not an error and verifies absence
again, so nothing is destroyed twice in effect and nothing is skipped.  Records
are unique per file: an object appears on exactly one certificate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from crypto import KeyNotFound
from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event, record_events_bulk
from gateway.components import Components
from gateway.errors import GatewayError
from gateway.sealed import service as sealed
from gateway.sealed.errors import SealedError
from gateway.sealed.keys import live_relationship_key
from gateway.sealed.models import SealedKind
from gateway.transfers.models import Direction, FileState, Transfer, TransferFile, TransferStatus
from retention import steps
from retention.holds import holds_on_pair
from retention.models import DestructionJob, DestructionRecord, JobKind, JobStatus

log = logging.getLogger("phigate.retention")

DESTROYING, STORAGE_DONE, SHREDDED, DESTROYED = "destroying", "storage_destroyed", "crypto_shredded", "destroyed"


class JobIncomplete(GatewayError):
    status = 503
    code = "destruction_incomplete"
    message = "Some objects could not be destroyed yet (storage unavailable); run again to finish."


@dataclass
class JobResult:
    job_id: str
    kind: str
    practice_id: str
    vendor_id: str
    destroyed: int = 0
    crypto_shred_only: int = 0
    held: list[dict] = field(default_factory=list)
    certificate_id: str | None = None
    key_evidence: dict | None = None


def retention_due(cutoff):
    """SQL condition: an outbound transfer whose window ended, or that was rejected or revoked, before `cutoff`."""
    return or_(
        and_(Transfer.status == TransferStatus.approved, Transfer.access_ends_at <= cutoff),
        and_(Transfer.status == TransferStatus.rejected, Transfer.decided_at <= cutoff),
        and_(Transfer.status == TransferStatus.revoked, Transfer.revoked_at <= cutoff),
    )


def scope_files(job: DestructionJob, *, db: Session, ignore_holds: bool = False):
    """SELECT of the stored files this job must destroy (None when a hold covers the whole scope)."""
    query = (
        select(TransferFile.id)
        .join(Transfer, Transfer.id == TransferFile.transfer_id)
        .where(
            Transfer.practice_id == job.practice_id,
            Transfer.vendor_id == job.vendor_id,
            TransferFile.state == FileState.stored,
        )
    )
    if job.kind == JobKind.retention:
        query = query.where(Transfer.direction == Direction.outbound, retention_due(job.cutoff))
    elif not job.include_returned:
        # Files the vendor sent back belong to the practice: kept unless the administrator chose otherwise.
        query = query.where(Transfer.direction == Direction.outbound)
    if not ignore_holds:
        whole, single = holds_on_pair(db, job.practice_id, job.vendor_id)
        if whole:
            return None
        if single:
            query = query.where(Transfer.id.not_in([h.target_id for h in single]))
    return query


def held_summary(db: Session, job: DestructionJob) -> list[dict]:
    """Each active hold that keeps objects of this scope, and how many."""
    whole, single = holds_on_pair(db, job.practice_id, job.vendor_id)
    everything = scope_files(job, ignore_holds=True, db=db)
    out = []
    if whole:
        count = db.scalar(select(func.count()).select_from(everything.subquery())) or 0
        for h in whole:
            out.append(
                {
                    "hold_id": h.id,
                    "scope": h.scope.value,
                    "scope_id": h.target_id,
                    "reference": h.reference,
                    "objects": count,
                }
            )
    else:
        for h in single:
            count = (
                db.scalar(
                    select(func.count()).select_from(
                        everything.where(TransferFile.transfer_id == h.target_id).subquery()
                    )
                )
                or 0
            )
            if count:
                out.append(
                    {
                        "hold_id": h.id,
                        "scope": h.scope.value,
                        "scope_id": h.target_id,
                        "reference": h.reference,
                        "objects": count,
                    }
                )
    return out


def _storage_result(report, blocked: bool) -> dict:
    proof = report.proof
    return {
        "location_id": report.location_id,
        "versions_deleted": len(report.versions_deleted),
        "delete_markers_deleted": len(report.delete_markers_deleted),
        "uploads_aborted": report.uploads_aborted,
        "temp_files_removed": report.temp_files_removed,
        "blocked": [
            {
                "version_id": b.version_id,
                "reason": b.reason,
                "is_delete_marker": b.is_delete_marker,
                "retain_until": b.retain_until.isoformat() if b.retain_until else None,
            }
            for b in report.blocked
        ],
        "absent": bool(proof and proof.absent),
        "verified": bool(report.verified) and not blocked,
        "checks": list(proof.checks) if proof else [],
        "checked_at": proof.checked_at.isoformat() if proof else None,
    }


class Engine:
    """Runs destruction jobs for one process; the caller holds the runner lease."""

    def __init__(self, c: Components, actor: Actor, *, lease=None, progress: Callable[[int], None] | None = None):
        self.c = c
        self.actor = actor
        self.lease = lease
        self.progress = progress or (lambda n: None)
        self.batch = c.settings.retention_batch_size
        self._queued: list[dict] = []

    # -- one job ---------------------------------------------------------------
    def pending_count(self, job_id: str) -> int:
        """Objects this job still has to take through the steps (for a progress bar)."""
        with self.c.db.sessions() as db:
            job = db.get_one(DestructionJob, job_id)
            open_records = (
                db.scalar(
                    select(func.count())
                    .select_from(DestructionRecord)
                    .where(DestructionRecord.job_id == job_id, DestructionRecord.step != DESTROYED)
                )
                or 0
            )
            query = scope_files(job, db=db)
            new = 0 if query is None else db.scalar(select(func.count()).select_from(query.subquery())) or 0
            db.commit()
        return open_records + new

    def run(self, job_id: str) -> JobResult:
        """Take the job to completion (resuming whatever a crash left) and issue its certificate."""
        # 1. whatever an earlier run of this job left half way
        while True:
            with self.c.db.sessions() as db:
                ids = list(
                    db.scalars(
                        select(DestructionRecord.file_id)
                        .where(DestructionRecord.job_id == job_id, DestructionRecord.step != DESTROYED)
                        .order_by(DestructionRecord.file_id)
                        .limit(self.batch)
                    )
                )
                db.commit()
            if not ids:
                break
            self._advance(job_id, ids)
        # 2. new objects, one batch at a time: memory does not grow with their number
        while True:
            with self.c.db.sessions() as db:
                job = db.get_one(DestructionJob, job_id)
                query = scope_files(job, db=db)
                ids = [] if query is None else list(db.scalars(query.order_by(TransferFile.id).limit(self.batch)))
                db.commit()
            if not ids:
                break
            self._claim(job_id, ids)
            self._advance(job_id, ids)
        with self.c.db.transaction() as db:
            job = db.get_one(DestructionJob, job_id)
            job.held = held_summary(db, job)
        if job.kind == JobKind.offboarding:
            self._destroy_key(job_id)
        from retention.certificates import issue

        cert_id = issue(self.c, job_id, self.actor)
        with self.c.db.sessions() as db:
            job = db.get_one(DestructionJob, job_id)
            total = (
                db.scalar(select(func.count()).select_from(DestructionRecord).where(DestructionRecord.job_id == job_id))
                or 0
            )
            shred_only = (
                db.scalar(
                    select(func.count())
                    .select_from(DestructionRecord)
                    .where(DestructionRecord.job_id == job_id, DestructionRecord.crypto_shred_only.is_(True))
                )
                or 0
            )
            result = JobResult(
                job.id,
                job.kind.value,
                job.practice_id,
                job.vendor_id,
                destroyed=total,
                crypto_shred_only=shred_only,
                held=job.held,
                certificate_id=cert_id,
                key_evidence=job.key_evidence,
            )
            db.commit()
        return result

    # -- the steps ---------------------------------------------------------------
    def _event(self, db: Session, action: Action, rec: DestructionRecord, parties: tuple[str, str], **details) -> None:
        """Queue one per-object event; `_events_done` appends the batch's events in the same transaction."""
        self._queued.append(
            {
                "action": action,
                "actor_user_id": self.actor.user_id,
                "actor_org_id": self.actor.org_id,
                "ip": self.actor.ip,
                "user_agent": (self.actor.user_agent or "")[:256] or None,
                "target_type": "transfer",
                "target_id": rec.transfer_id,
                "target_org_id": parties[0],
                "details": {
                    "job_id": rec.job_id,
                    "file_id": rec.file_id,
                    "storage_object_key": rec.object_key,
                    "vendor_id": parties[1],
                    **details,
                },
            }
        )

    def _events_done(self, db: Session) -> None:
        # Same lock, numbering and leaf hashing as record_event(), one INSERT per batch.
        if self._queued:
            record_events_bulk(db, self._queued)
            self._queued = []

    def _renew(self) -> None:
        if self.lease is not None:
            self.lease.renew()

    def _claim(self, job_id: str, ids: list[str]) -> None:
        """Step 1: mark each file (and its sealed object) destroying and open its record, in one transaction."""
        now = clock.now()
        with self.c.db.transaction() as db:
            files = list(
                db.scalars(
                    select(TransferFile)
                    .where(TransferFile.id.in_(ids), TransferFile.state == FileState.stored)
                    .with_for_update()
                )
            )
            parties = {
                t.id: (t.practice_id, t.vendor_id)
                for t in db.scalars(select(Transfer).where(Transfer.id.in_({f.transfer_id for f in files})))
            }
            objects = {o.owner_id: o for o in sealed.claim(db, SealedKind.transfer_file, [f.id for f in files])}
            # A file whose object a crashed run (or fsck) already took further still gets its record.
            objects.update(
                dict(
                    sealed.owned_many(
                        db, SealedKind.transfer_file, [f.id for f in files if f.id not in objects]
                    ).items()
                )
            )
            for f in files:
                f.state = FileState.destroying
                obj = objects[f.id]
                rec = DestructionRecord(
                    file_id=f.id,
                    job_id=job_id,
                    transfer_id=f.transfer_id,
                    object_key=obj.object_key,
                    storage_location=obj.storage_location or self.c.store.location_id,
                    size=f.size,
                    sha256=f.sha256,
                    step=DESTROYING,
                    started_at=now,
                )
                db.add(rec)
                self._event(
                    db, Action.RETENTION_OBJECT_DESTROYING, rec, parties[f.transfer_id], size=f.size, sha256=f.sha256
                )
            self._events_done(db)
        steps.done(DESTROYING)

    def _records(self, db: Session, ids: list[str]) -> tuple[list[DestructionRecord], dict[str, tuple[str, str]]]:
        recs = list(
            db.scalars(
                select(DestructionRecord).where(DestructionRecord.file_id.in_(ids)).order_by(DestructionRecord.file_id)
            )
        )
        parties = {
            tid: (p, v)
            for tid, p, v in db.execute(
                select(Transfer.id, Transfer.practice_id, Transfer.vendor_id).where(
                    Transfer.id.in_({r.transfer_id for r in recs})
                )
            )
        }
        return recs, parties

    def _advance(self, job_id: str, ids: list[str]) -> None:
        with self.c.db.sessions() as db:
            recs, _ = self._records(db, ids)
            reached = {r.file_id: r.step for r in recs}
            todo = [(r.file_id, r.object_key, r.storage_location) for r in recs if r.step == DESTROYING]
            db.commit()
        if todo:
            self._storage(todo)
        if any(s in (DESTROYING, STORAGE_DONE) for s in reached.values()):
            self._shred(ids)
        self._finish(ids)
        self._renew()
        self.progress(sum(1 for s in reached.values() if s != DESTROYED))

    def _destroy_one(self, key: str, location: str) -> tuple[str, dict | None, str | None]:
        try:
            erasure = sealed.erase(self.c, key, location)
        except SealedError as exc:
            return key, None, exc.reason
        return key, _storage_result(erasure.report, erasure.blocked), None

    def _storage(self, todo: list[tuple[str, str, str]]) -> None:
        """Step 2: every stored version deleted and absence verified (parallel: S3 is latency-bound)."""
        by_key = {key: fid for fid, key, _ in todo}
        with ThreadPoolExecutor(max_workers=min(self.c.settings.retention_workers, len(todo))) as pool:
            outcomes = list(pool.map(lambda t: self._destroy_one(t[1], t[2]), todo))
        steps.done("storage")
        failures = []
        with self.c.db.transaction() as db:
            recs, parties = self._records(db, [by_key[k] for k, _, _ in outcomes])
            result_of = {by_key[k]: (res, err) for k, res, err in outcomes}
            for rec in recs:
                res, err = result_of[rec.file_id]
                if err is not None:
                    failures.append(err)
                    self._event(db, Action.RETENTION_OBJECT_STORAGE_FAILED, rec, parties[rec.transfer_id], reason=err)
                    continue
                assert res is not None  # noqa: S101 - narrows the type: `_destroy_one` gives a result or a reason
                rec.storage = res
                rec.step = STORAGE_DONE
                rec.crypto_shred_only = bool(res["blocked"])
                if res["blocked"]:
                    # Object Lock keeps the ciphertext; erasing the data key below still makes it unreadable.
                    self._event(
                        db,
                        Action.RETENTION_OBJECT_STORAGE_BLOCKED,
                        rec,
                        parties[rec.transfer_id],
                        versions_deleted=res["versions_deleted"],
                        blocked=len(res["blocked"]),
                        reasons=[b["reason"] for b in res["blocked"]][:10],
                    )
                else:
                    self._event(
                        db,
                        Action.RETENTION_OBJECT_STORAGE_DESTROYED,
                        rec,
                        parties[rec.transfer_id],
                        versions_deleted=res["versions_deleted"],
                        delete_markers_deleted=res["delete_markers_deleted"],
                        verified=res["verified"],
                    )
            self._events_done(db)
        steps.done(STORAGE_DONE)
        if failures:
            with self.c.db.transaction() as db:
                record_event(
                    db,
                    Action.RETENTION_JOB_INTERRUPTED,
                    actor=self.actor,
                    outcome=Outcome.failure,
                    severity=Severity.high,
                    target_type="destruction_job",
                    target_id=recs[0].job_id,
                    details={"objects_failed": len(failures), "reasons": sorted(set(failures))[:5]},
                )
            raise JobIncomplete()

    def _shred(self, ids: list[str]) -> None:
        """Step 3: erase the wrapped data keys and sealed names."""
        with self.c.db.transaction() as db:
            recs, parties = self._records(db, ids)
            recs = [r for r in recs if r.step == STORAGE_DONE]
            if not recs:
                return
            file_ids = [r.file_id for r in recs]
            db.execute(
                update(TransferFile)
                .where(TransferFile.id.in_(file_ids))
                .values(name_sealed=None)
                .execution_options(synchronize_session=False)
            )
            sealed.shred(db, [o.id for o in sealed.owned_many(db, SealedKind.transfer_file, file_ids).values()])
            for rec in recs:
                rec.step = SHREDDED
                self._event(db, Action.RETENTION_OBJECT_CRYPTO_SHREDDED, rec, parties[rec.transfer_id])
            self._events_done(db)
        steps.done(SHREDDED)

    def _finish(self, ids: list[str]) -> None:
        """Step 4: mark destroyed; a transfer whose every file is destroyed becomes a tombstone."""
        now = clock.now()
        with self.c.db.transaction() as db:
            recs, parties = self._records(db, ids)
            recs = [r for r in recs if r.step == SHREDDED]
            if not recs:
                return
            file_ids = [r.file_id for r in recs]
            db.execute(
                update(TransferFile)
                .where(TransferFile.id.in_(file_ids))
                .values(state=FileState.destroyed, destroyed_at=now)
                .execution_options(synchronize_session=False)
            )
            sealed.mark_destroyed(
                db, [o.id for o in sealed.owned_many(db, SealedKind.transfer_file, file_ids).values()]
            )
            for rec in recs:
                rec.step, rec.destroyed_at = DESTROYED, now
                verification = "crypto-shred only" if rec.crypto_shred_only else "absent"
                self._event(
                    db,
                    Action.RETENTION_OBJECT_DESTROYED,
                    rec,
                    parties[rec.transfer_id],
                    size=rec.size,
                    sha256=rec.sha256,
                    verification=verification,
                )
            tids = {r.transfer_id for r in recs}
            alive = set(
                db.scalars(
                    select(TransferFile.transfer_id).where(
                        TransferFile.transfer_id.in_(tids), TransferFile.state != FileState.destroyed
                    )
                )
            )
            done = list(
                db.execute(
                    select(Transfer.id, Transfer.practice_id, Transfer.vendor_id).where(
                        Transfer.id.in_(tids - alive), Transfer.status != TransferStatus.destroyed
                    )
                )
            )
            if done:
                db.execute(
                    update(Transfer)
                    .where(Transfer.id.in_([t[0] for t in done]))
                    .values(status=TransferStatus.destroyed, note_sealed=None)
                    .execution_options(synchronize_session=False)
                )
            for transfer_id, practice_id, vendor_id in done:
                self._queued.append(
                    {
                        "action": Action.TRANSFER_DESTROYED,
                        "severity": Severity.warning,
                        "actor_user_id": self.actor.user_id,
                        "actor_org_id": self.actor.org_id,
                        "ip": self.actor.ip,
                        "user_agent": (self.actor.user_agent or "")[:256] or None,
                        "target_type": "transfer",
                        "target_id": transfer_id,
                        "target_org_id": practice_id,
                        "details": {"job_id": recs[0].job_id, "vendor_id": vendor_id},
                    }
                )
            self._events_done(db)
        steps.done(DESTROYED)

    def _destroy_key(self, job_id: str) -> None:
        """Offboarding: destroy the relationship KEK, unless held objects still depend on it."""
        with self.c.db.sessions() as db:
            job = db.get_one(DestructionJob, job_id)
            if job.key_evidence is not None:
                db.commit()
                return
            # The generation the pair's files were sent under (tombstones keep it, so a rerun
            # after a crash names the same key); with no file ever sent, the live one.
            key_id = db.scalar(
                select(Transfer.key_id)
                .where(
                    Transfer.practice_id == job.practice_id,
                    Transfer.vendor_id == job.vendor_id,
                    Transfer.direction == Direction.outbound,
                )
                .order_by(Transfer.created_at.desc())
                .limit(1)
            ) or live_relationship_key(self.c.keys, job.practice_id, job.vendor_id)
            # Every object of any kind the key still seals (held files, an upload in flight) keeps it.
            left = sealed.live_under_key(db, key_id)
            db.commit()
        if left:
            evidence = {
                "key_id": key_id,
                "destroyed": False,
                "reason": f"kept: {left} object(s) under legal hold (or still being written) are "
                "still encrypted under it",
            }
        else:
            try:
                evidence = {"destroyed": True, **self.c.keys.destroy_key(key_id).to_dict()}
            except KeyNotFound:
                evidence = {
                    "key_id": key_id,
                    "destroyed": False,
                    "reason": "never created: no file was ever sent under it",
                }
        with self.c.db.transaction() as db:
            job = db.get_one(DestructionJob, job_id)
            job.key_evidence = evidence
            record_event(
                db,
                Action.OFFBOARDING_KEY_DESTROYED if evidence["destroyed"] else Action.OFFBOARDING_KEY_KEPT,
                actor=self.actor,
                severity=Severity.warning,
                target_type="key",
                target_id=key_id,
                target_org_id=job.practice_id,
                details={
                    "job_id": job_id,
                    "vendor_id": job.vendor_id,
                    **{
                        k: evidence.get(k)
                        for k in ("provider", "method", "deletion_scheduled_for", "reason")
                        if evidence.get(k) is not None
                    },
                },
            )
        steps.done("key_destroyed")


def open_jobs(db: Session) -> list[DestructionJob]:
    return list(
        db.scalars(
            select(DestructionJob)
            .where(DestructionJob.status == JobStatus.running)
            .order_by(DestructionJob.created_at, DestructionJob.id)
        )
    )
