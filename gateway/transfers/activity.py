"""What a user's transfers are waiting for: the sender's view of what became of each, the biller's files not
fetched yet, the approver's queue with its age. Read-only, scoped like every transfer lookup."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock
from gateway.auth.service import Principal
from gateway.transfers import service
from gateway.transfers.models import Direction, Download, DownloadOutcome, Transfer, TransferFile, TransferStatus
from gateway.users.models import Role, User


@dataclass(frozen=True)
class Fetch:
    """One biller's complete download of one file."""

    user_name: str
    at: datetime


@dataclass(frozen=True)
class Sent:
    transfer: Transfer
    state: str  # awaiting approval, approved, expired, rejected, revoked, delivered, destroyed
    fetches: list[Fetch]


def state_of(transfer: Transfer, now: datetime) -> str:
    """The state a person reads: an approval whose window has ended is `expired`."""
    if (
        transfer.status == TransferStatus.approved
        and transfer.access_ends_at is not None
        and transfer.access_ends_at <= now
    ):
        return "expired"
    return transfer.status.value.replace("_", " ")


def sent_by_me(db: Session, principal: Principal, limit: int = 20) -> list[Sent]:
    """The caller's latest transfers, each with its state and who downloaded which file when."""
    page = service.list_transfers(db, principal, limit=limit, where=Transfer.created_by == principal.user.id)
    ids = [t.id for t in page.items]
    fetched: dict[str, list[Fetch]] = {}
    if ids:
        rows = db.execute(
            select(Download.transfer_id, User.full_name, Download.active_at, Download.started_at)
            .join(User, User.id == Download.user_id)
            .where(Download.transfer_id.in_(ids), Download.outcome == DownloadOutcome.completed)
            .order_by(Download.started_at)
        ).all()
        for transfer_id, name, active_at, started_at in rows:
            fetched.setdefault(transfer_id, []).append(Fetch(name, active_at or started_at))
    now = clock.now()
    return [Sent(t, state_of(t, now), fetched.get(t.id, [])) for t in page.items]


@dataclass(frozen=True)
class FileDownload:
    """One user's download of one file: complete, or partly (a range, an interrupted or unfinished one)."""

    file_id: str
    user_id: str
    user_name: str
    at: datetime  # when its latest request started
    bytes: int  # bytes delivered, over every request of it
    complete: bool


def sees_downloads(principal: Principal, transfer: Transfer) -> bool:
    """The sending organisation's staff, approvers and billers see who fetched what; auditors read the log."""
    sender = transfer.practice_id if transfer.direction == Direction.outbound else transfer.vendor_id
    return principal.user.org_id == sender and principal.user.role in (
        Role.practice_staff,
        Role.practice_approver,
        Role.biller,
    )


def downloads_of(db: Session, principal: Principal, transfer: Transfer) -> list[FileDownload] | None:
    """Who downloaded which file of a transfer found for this caller (`find_transfer`), oldest first, in one
    query; None for a caller who is not of the sending organisation. Downloads that delivered nothing (the
    gateway failed) are left out: their place under the limit was given back."""
    if not sees_downloads(principal, transfer):
        return None
    rows = db.execute(
        select(
            Download.file_id,
            Download.user_id,
            User.full_name,
            Download.active_at,
            Download.started_at,
            Download.bytes_sent,
            Download.outcome,
        )
        .join(User, User.id == Download.user_id)
        .where(Download.transfer_id == transfer.id, Download.outcome != DownloadOutcome.failed)
        .order_by(Download.started_at, Download.id)
    ).all()
    return [
        FileDownload(file_id, user_id, name, active_at or started_at, sent or 0, outcome == DownloadOutcome.completed)
        for file_id, user_id, name, active_at, started_at, sent, outcome in rows
    ]


def _not_fetched_by(user_id: str):
    """SQL: the transfer has a file this user has not downloaded completely."""
    done = select(Download.file_id).where(Download.user_id == user_id, Download.outcome == DownloadOutcome.completed)
    return Transfer.files.any(~TransferFile.id.in_(done))


def _inbox_clause(principal: Principal):
    return (
        (Transfer.direction == Direction.outbound)
        & (Transfer.status == TransferStatus.approved)
        & (Transfer.access_ends_at > clock.now())
        & _not_fetched_by(principal.user.id)
    )


def to_fetch(db: Session, principal: Principal, limit: int = 20) -> list[Transfer]:
    """A biller's transfers released to them, still open, with a file they have not downloaded yet."""
    return service.list_transfers(db, principal, limit=limit, where=_inbox_clause(principal)).items


def count_to_fetch(db: Session, principal: Principal) -> int:
    return service.count_transfers(db, principal, where=_inbox_clause(principal))


def count_awaiting_approval(db: Session, principal: Principal) -> int:
    return service.count_transfers(
        db,
        principal,
        where=(Transfer.direction == Direction.outbound) & (Transfer.status == TransferStatus.awaiting_approval),
    )


def age(transfer: Transfer, now: datetime | None = None) -> timedelta:
    return (now or clock.now()) - transfer.created_at
