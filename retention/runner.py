"""`phigate retention run`: destroy what is due, one job (and one certificate) per practice-vendor pair.

The runner first finishes any job an earlier run left open (a crash, a kill, a
storage outage), then looks for due transfers pair by pair under each pair's
effective policy.  Objects under a legal hold are left alone and the hold is
named in the report.  With `dry_run` nothing is changed and no lock is taken.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.transfers.models import Direction, FileState, Transfer, TransferFile, TransferStatus
from retention import steps
from retention.errors import RunnerBusy
from retention.jobs import Engine, JobResult, held_summary, open_jobs, scope_files
from retention.lock import RunnerLease
from retention.models import DestructionJob, JobKind, JobStatus
from retention.offboarding import operator_of
from retention.policies import effective

log = logging.getLogger("phigate.retention")


@dataclass
class RunReport:
    dry_run: bool
    due: list[dict] = field(default_factory=list)  # per pair: practice, vendor, keep_days, objects
    held: list[dict] = field(default_factory=list)
    jobs: list[JobResult] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run,
            "due": self.due,
            "held": self.held,
            "resumed_jobs": self.resumed,
            "jobs": [j.__dict__ for j in self.jobs],
            "objects_destroyed": sum(j.destroyed for j in self.jobs),
        }


def _candidate_pairs(db) -> list[tuple[str, str]]:
    ended = (TransferStatus.approved, TransferStatus.rejected, TransferStatus.revoked)
    return sorted(
        db.execute(
            select(Transfer.practice_id, Transfer.vendor_id)
            .join(TransferFile)
            .where(
                Transfer.direction == Direction.outbound,
                Transfer.status.in_(ended),
                TransferFile.state == FileState.stored,
            )
            .distinct()
        ).all()
    )


def survey(c: Components, now=None) -> tuple[list[DestructionJob], RunReport]:
    """Unsaved jobs for every pair with due objects, and a report of what is due and what is held."""
    now = now or clock.now()
    report = RunReport(dry_run=True)
    jobs = []
    with c.db.sessions() as db:
        for practice_id, vendor_id in _candidate_pairs(db):
            policy = effective(db, c.settings, practice_id, vendor_id)
            job = DestructionJob(
                kind=JobKind.retention,
                status=JobStatus.running,
                practice_id=practice_id,
                vendor_id=vendor_id,
                include_returned=False,
                held=[],
                baa_references=[],
                cutoff=now - timedelta(days=policy.keep_days),
                reason=f"retention policy ({policy.source}): ciphertext kept {policy.keep_days} "
                "days after the access window ended, or rejection or revocation",
            )
            query = scope_files(job, db=db)
            due = 0 if query is None else db.scalar(select(func.count()).select_from(query.subquery())) or 0
            held = held_summary(db, job)
            for h in held:
                report.held.append({**h, "practice_id": practice_id, "vendor_id": vendor_id})
            if due:
                report.due.append(
                    {
                        "practice_id": practice_id,
                        "vendor_id": vendor_id,
                        "objects": due,
                        "keep_days": policy.keep_days,
                        "policy": policy.source,
                    }
                )
                jobs.append(job)
        db.commit()
    return jobs, report


def run(
    c: Components,
    actor: Actor,
    *,
    dry_run: bool = False,
    via: str = "cli",
    wait_seconds: float = 0,
    progress=None,
    on_start=None,
) -> RunReport:
    """Destroy everything due (or, with dry_run, only say what would be destroyed)."""
    if dry_run:
        return survey(c)[1]
    lease = RunnerLease(c.db, lease_seconds=c.settings.retention_lock_lease_seconds)
    lease.acquire(wait_seconds)
    try:
        engine = Engine(c, actor, lease=lease, progress=progress)
        with c.db.sessions() as db:
            leftover_jobs = open_jobs(db)
            leftover = [j.id for j in leftover_jobs]
            busy = {(j.practice_id, j.vendor_id) for j in leftover_jobs}
            db.commit()
        new, report = survey(c)
        # A pair whose interrupted job is resumed gets no second job (nor a second certificate) in this run.
        new = [j for j in new if (j.practice_id, j.vendor_id) not in busy]
        report.dry_run = False
        report.resumed = leftover
        with c.db.transaction() as db:
            operator = operator_of(db, actor, via)
            for job in new:
                job.operator, job.created_at = operator, clock.now()
                db.add(job)
                db.flush()
                record_event(
                    db,
                    Action.RETENTION_RUN_STARTED,
                    actor=actor,
                    target_type="destruction_job",
                    target_id=job.id,
                    target_org_id=job.practice_id,
                    details={"vendor_id": job.vendor_id, "cutoff": job.cutoff.isoformat() if job.cutoff else None},
                )
            ids = leftover + [j.id for j in new]
        steps.done("retention_started")
        if on_start is not None:
            on_start(sum(engine.pending_count(j) for j in ids))
        for job_id in ids:
            report.jobs.append(engine.run(job_id))
        return report
    finally:
        lease.release()


def scheduled_run(components: Components) -> None:
    """One scheduled retention run (gateway.jobs, inside `phigate serve`); a runner busy elsewhere means skip."""
    try:
        report = run(components, Actor.system(), via="scheduler")
        log.info("scheduled retention run: %d object(s) destroyed", report.as_dict()["objects_destroyed"])
    except RunnerBusy:
        log.info("scheduled retention run skipped: another runner is working")
