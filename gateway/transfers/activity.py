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
from gateway.users.models import User


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
