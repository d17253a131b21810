"""Who is told of what happens to a transfer (gateway/notifications sends it, at the cadence each chose).

Called in the transaction of the action itself, so a notice exists exactly when its
action does.  Each notice names the other organisation and a count, nothing of the
transfer's content.  The actor is never told of their own action.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import clock
from gateway.notifications.models import Kind
from gateway.notifications.service import notify
from gateway.transfers.models import Direction, Download, DownloadOutcome, Transfer, TransferFile, TransferStatus
from gateway.users.models import Role, User
from gateway.users.service import active_billers

REMIND_BEFORE = timedelta(days=1)  # "access expires tomorrow"


def _practice_users(db: Session, practice_id: str, roles: tuple[Role, ...]) -> list[str]:
    return list(
        db.scalars(select(User.id).where(User.org_id == practice_id, User.role.in_(roles), User.active.is_(True)))
    )


def _billers(db: Session, transfer: Transfer) -> list[str]:
    """The billers who may download it: those it names, or every active biller of the vendor."""
    if transfer.recipient_ids:
        return sorted(transfer.recipient_ids)
    return [u.id for u in active_billers(db, [transfer.vendor_id])]


def created(db: Session, transfer: Transfer) -> None:
    """Outbound: the practice's approvers (never the sender) have one more to decide.
    Inbound: the practice may download what the vendor sent back."""
    if transfer.direction == Direction.outbound:
        approvers = _practice_users(db, transfer.practice_id, (Role.practice_approver,))
        ids = [u for u in approvers if u != transfer.created_by]
        notify(db, Kind.approval_requested, ids, transfer.vendor_id)
    else:
        ids = _practice_users(db, transfer.practice_id, (Role.practice_staff, Role.practice_approver))
        notify(db, Kind.transfer_available, ids, transfer.vendor_id)


def released(db: Session, transfer: Transfer, *, approved: bool) -> None:
    """Approved (or opened in an emergency): the billers may download; the sender learns of the approval."""
    notify(db, Kind.transfer_available, _billers(db, transfer), transfer.practice_id)
    if approved:
        _tell_sender(db, transfer, Kind.transfer_approved, by=transfer.decided_by)


def rejected(db: Session, transfer: Transfer) -> None:
    _tell_sender(db, transfer, Kind.transfer_rejected, by=transfer.decided_by)


def revoked(db: Session, transfer: Transfer) -> None:
    _tell_sender(db, transfer, Kind.transfer_revoked, by=transfer.revoked_by)


def downloaded(db: Session, transfer: Transfer, by: str | None) -> None:
    """The first complete download of an outbound transfer tells its sender (once per transfer)."""
    if transfer.direction == Direction.outbound:
        _tell_sender(db, transfer, Kind.transfer_downloaded, by=by, dedupe_key=f"downloaded:{transfer.id}")


def _tell_sender(db: Session, transfer: Transfer, kind: Kind, *, by: str | None, dedupe_key: str | None = None) -> None:
    if transfer.created_by == by:
        return  # they did it themselves
    notify(db, kind, [transfer.created_by], transfer.vendor_id, dedupe_key=dedupe_key)


def remind_expiring(db: Session, now: datetime | None = None) -> int:
    """Tell billers whose access to an approved transfer ends within a day and who have not fetched
    every file of it; once per transfer and biller. Returns how many were told."""
    now = now or clock.now()
    ending = list(
        db.scalars(
            select(Transfer).where(
                Transfer.direction == Direction.outbound,
                Transfer.status == TransferStatus.approved,
                Transfer.access_ends_at > now,
                Transfer.access_ends_at <= now + REMIND_BEFORE,
            )
        )
    )
    told = 0
    for transfer in ending:
        files = db.scalar(select(func.count()).select_from(TransferFile).where(TransferFile.transfer_id == transfer.id))
        fetched = dict(
            db.execute(
                select(Download.user_id, func.count(func.distinct(Download.file_id)))
                .where(Download.transfer_id == transfer.id, Download.outcome == DownloadOutcome.completed)
                .group_by(Download.user_id)
            ).all()
        )
        waiting = [b for b in _billers(db, transfer) if fetched.get(b, 0) < (files or 0)]
        told += len(
            notify(db, Kind.access_expiring, waiting, transfer.practice_id, dedupe_key=f"expiring:{transfer.id}")
        )
    return told
