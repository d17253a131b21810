"""Offboarding a vendor: terminate the BAA(s), disable the vendor's users, destroy every file the
practice(s) sent it and every unfinished resumable upload between them (counted in the run report),
destroy the relationship KEK(s), and issue one certificate per practice-vendor scope.

Everything is checked before anything changes (unknown vendor or practice, transfers in
flight): a refusal leaves nothing half done.  The BAA terminations, the user
disabling and the creation of the jobs commit in one transaction; from then on the
jobs are resumable, and running the same offboarding again finishes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.baas.models import Baa, BaaStatus
from gateway.baas.service import terminate_baa
from gateway.components import Components
from gateway.errors import InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.sealed import service as sealed
from gateway.sealed.models import SealedKind
from gateway.transfers.models import Direction, Download, FileState, Transfer, TransferFile
from gateway.uploads import service as uploads
from gateway.uploads.service import Offboarded
from gateway.users.models import User
from gateway.users.service import disable_user
from retention import steps
from retention.errors import InFlight, NothingToOffboard
from retention.jobs import Engine, JobResult
from retention.lock import RunnerLease
from retention.models import Certificate, DestructionJob, JobKind, JobStatus


@dataclass
class OffboardReport:
    vendor_id: str
    practice_ids: list[str]
    users_disabled: int = 0
    baas_terminated: int = 0
    jobs: list[JobResult] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)  # certificate ids of scopes offboarded before
    unfinished_uploads: Offboarded = field(default_factory=Offboarded)

    def as_dict(self) -> dict:
        return {
            "vendor_id": self.vendor_id,
            "practice_ids": self.practice_ids,
            "users_disabled": self.users_disabled,
            "baas_terminated": self.baas_terminated,
            "already_offboarded_certificates": self.already_done,
            "scopes": [j.__dict__ for j in self.jobs],
            # Resumable uploads between the vendor and these practices that had not become transfers.
            "unfinished_uploads_destroyed": self.unfinished_uploads.uploads,
            "unfinished_upload_bytes_destroyed": self.unfinished_uploads.bytes_received,
            "unfinished_upload_objects_left_for_fsck": self.unfinished_uploads.objects_left_for_fsck,
            "multipart_uploads_aborted": self.unfinished_uploads.multipart_uploads_aborted,
        }


def _org(db: Session, ref: str, kind: OrgKind) -> Organisation:
    org = db.get(Organisation, ref) or db.scalar(select(Organisation).where(Organisation.name == ref))
    if org is None or org.kind != kind:
        # The same answer whether the name is unknown or names another kind of organisation.
        raise NotFound(f"No such {kind.value}: nothing was changed.", code=f"{kind.value}_not_found")
    return org


def operator_of(db: Session, actor: Actor, via: str) -> dict:
    user = db.get(User, actor.user_id) if actor.user_id else None
    return {
        "user_id": actor.user_id,
        "username": user.username if user else None,
        "via": via,
        "user_agent": actor.user_agent,
    }


def plan(db: Session, vendor_ref: str, practice_ref: str | None) -> tuple[Organisation, list[str]]:
    """The vendor and the practices in scope (those with a BAA or a transfer with it)."""
    vendor = _org(db, vendor_ref, OrgKind.vendor)
    related = set(db.scalars(select(Baa.practice_id).where(Baa.vendor_id == vendor.id))) | set(
        db.scalars(select(Transfer.practice_id).where(Transfer.vendor_id == vendor.id).distinct())
    )
    if practice_ref is not None:
        practice = _org(db, practice_ref, OrgKind.practice)
        if practice.id not in related:
            raise NothingToOffboard()
        return vendor, [practice.id]
    if not related:
        raise NothingToOffboard("This vendor has never had a BAA or exchanged files; nothing was changed.")
    return vendor, sorted(related)


def in_flight(db: Session, settings, vendor_id: str, practice_ids: list[str]) -> dict[str, int]:
    """What is moving right now: downloads started recently and not finished, uploads being stored.

    An upload being written to this vendor (or, recorded by wave 1, to an unknown one)
    blocks: offboarding must not destroy the relationship key while a file for it may
    still be arriving (it would land encrypted under a destroyed key, or fail).
    """
    since = clock.now() - timedelta(minutes=settings.retention_in_flight_minutes)
    downloads = (
        db.scalar(
            select(func.count())
            .select_from(Download)
            .join(Transfer, Transfer.id == Download.transfer_id)
            .where(
                Transfer.vendor_id == vendor_id,
                Transfer.practice_id.in_(practice_ids),
                Download.outcome == "started",
                func.coalesce(Download.active_at, Download.started_at) >= since,
            )
        )
        or 0
    )
    uploads = sealed.pending_since(db, since, kind=SealedKind.transfer_file, vendor_id=vendor_id)
    return {k: v for k, v in (("downloads", downloads), ("uploads", uploads)) if v}


def offboard(
    c: Components,
    actor: Actor,
    vendor_ref: str,
    *,
    practice_ref: str | None = None,
    reason: str,
    include_returned: bool = False,
    via: str = "cli",
    lease: RunnerLease | None = None,
    progress=None,
    on_start=None,
) -> OffboardReport:
    """Offboard a vendor (from every practice, or one); resumes an interrupted offboarding of the same scope."""
    reason = " ".join(reason.split())
    if not reason or len(reason) > 500:
        raise InvalidInput("Give a reason (at most 500 characters).", code="reason_required")
    own_lease = lease is None
    lease = lease or RunnerLease(c.db, lease_seconds=c.settings.retention_lock_lease_seconds)
    if own_lease:
        lease.acquire()
    try:
        return _offboard(c, actor, vendor_ref, practice_ref, reason, include_returned, via, lease, progress, on_start)
    finally:
        if own_lease:
            lease.release()


def _offboard(c, actor, vendor_ref, practice_ref, reason, include_returned, via, lease, progress, on_start):
    with c.db.transaction() as db:
        vendor, practice_ids = plan(db, vendor_ref, practice_ref)
        report = OffboardReport(vendor.id, practice_ids)
        open_ = {
            j.practice_id: j.id
            for j in db.scalars(
                select(DestructionJob).where(
                    DestructionJob.kind == JobKind.offboarding,
                    DestructionJob.status == JobStatus.running,
                    DestructionJob.vendor_id == vendor.id,
                    DestructionJob.practice_id.in_(practice_ids),
                )
            )
        }
        fresh = [p for p in practice_ids if p not in open_]
        if fresh:
            moving = in_flight(db, c.settings, vendor.id, fresh)
            if moving:
                parts = ", ".join(f"{n} {k}" for k, n in moving.items())
                raise InFlight(
                    f"Transfers are in flight ({parts} in progress); nothing was changed. "
                    "Try again when they have finished."
                )
        job_ids = dict(open_)
        operator = operator_of(db, actor, via)
        for practice_id in fresh:
            previous = db.scalar(
                select(Certificate)
                .where(
                    Certificate.kind == JobKind.offboarding,
                    Certificate.practice_id == practice_id,
                    Certificate.vendor_id == vendor.id,
                )
                .order_by(Certificate.issued_at.desc())
                .limit(1)
            )
            left = (
                select(func.count())
                .select_from(TransferFile)
                .join(Transfer)
                .where(
                    Transfer.practice_id == practice_id,
                    Transfer.vendor_id == vendor.id,
                    TransferFile.state == FileState.stored,
                )
            )
            if not include_returned:
                left = left.where(Transfer.direction == Direction.outbound)
            remaining = db.scalar(left) or 0
            baas = list(db.scalars(select(Baa).where(Baa.practice_id == practice_id, Baa.vendor_id == vendor.id)))
            active = [b for b in baas if b.status == BaaStatus.active]
            if previous is not None and not remaining and not active:
                report.already_done.append(previous.id)  # idempotent: this scope was offboarded before
                continue
            for baa in active:
                terminate_baa(db, baa, f"offboarding: {reason}", actor)
                report.baas_terminated += 1
            job = DestructionJob(
                kind=JobKind.offboarding,
                status=JobStatus.running,
                practice_id=practice_id,
                vendor_id=vendor.id,
                reason=reason,
                baa_references=sorted({b.reference for b in baas}),
                operator=operator,
                include_returned=include_returned,
                held=[],
                supplements=previous.id if previous is not None else None,
                created_at=clock.now(),
            )
            db.add(job)
            db.flush()
            job_ids[practice_id] = job.id
            record_event(
                db,
                Action.OFFBOARDING_STARTED,
                actor=actor,
                severity=Severity.high,
                target_type="destruction_job",
                target_id=job.id,
                target_org_id=practice_id,
                details={
                    "vendor_id": vendor.id,
                    "include_returned": include_returned,
                    "baas_terminated": len(active),
                    "supplements": job.supplements,
                },
            )
        # The vendor's people lose access once no practice keeps a BAA with it.
        still_active = (
            db.scalar(
                select(func.count()).select_from(Baa).where(Baa.vendor_id == vendor.id, Baa.status == BaaStatus.active)
            )
            or 0
        )
        if not still_active and (fresh or open_):
            for user in db.scalars(select(User).where(User.org_id == vendor.id, User.active.is_(True))):
                disable_user(db, user, actor, reason="vendor_offboarded")
                report.users_disabled += 1
    steps.done("offboarding_started")
    # Unfinished uploads both ways, before the relationship keys go: no BAA is active any more, so none
    # can begin; one being written now fails to keep its next part.  Each is audited with its job.
    if job_ids:
        report.unfinished_uploads = uploads.destroy_for_offboarding(c, actor, vendor.id, job_ids)
    engine = Engine(c, actor, lease=lease, progress=progress)
    # An interrupted retention job of the same pairs is finished first (with its own certificate), so
    # that no object is left half destroyed outside this offboarding's certificate.
    with c.db.sessions() as db:
        retention_left = list(
            db.scalars(
                select(DestructionJob.id).where(
                    DestructionJob.kind == JobKind.retention,
                    DestructionJob.status == JobStatus.running,
                    DestructionJob.vendor_id == vendor.id,
                    DestructionJob.practice_id.in_(practice_ids),
                )
            )
        )
        db.commit()
    for job_id in retention_left:
        engine.run(job_id)
    ordered = [job_ids[p] for p in practice_ids if p in job_ids]
    if on_start is not None:
        on_start(sum(engine.pending_count(j) for j in ordered))
    for job_id in ordered:
        report.jobs.append(engine.run(job_id))
    return report
