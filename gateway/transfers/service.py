"""Transfer rules: who sees what, the approval gate, four-eyes, revocation, emergency access.

Every lookup goes through `find_transfer`, scoped to the caller's organisation
and role, so a transfer of another organisation answers exactly like one that
does not exist.  Every denial is recorded with its reason before it is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Select, func, select, true
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import record_event
from gateway.auth.service import Principal, Proof, step_up
from gateway.baas.service import active_baa
from gateway.config import Settings
from gateway.errors import Conflict, Forbidden, GatewayError, InvalidInput, NotFound
from gateway.orgs.models import OrgKind
from gateway.paging import Page
from gateway.transfers import notices
from gateway.transfers.models import (
    Direction,
    Download,
    DownloadOutcome,
    Transfer,
    TransferFile,
    TransferRecipient,
    TransferStatus,
)
from gateway.users.models import Role, User
from gateway.users.service import active_biller_clause

PRACTICE_ROLES = (Role.practice_staff, Role.practice_approver)


def _visible_clause(principal: Principal):
    """The SQL condition for the transfers this caller may see (metadata, not content)."""
    user = principal.user
    if user.role in PRACTICE_ROLES:
        return Transfer.practice_id == user.org_id
    if user.role == Role.biller:
        # A vendor sees its own sent-back files, and outbound transfers only once approved for it.
        approved_for_me = (
            (Transfer.direction == Direction.outbound)
            & Transfer.status.in_((TransferStatus.approved, TransferStatus.revoked))
            & Transfer.decided_at.is_not(None)
        )
        return (Transfer.vendor_id == user.org_id) & ((Transfer.direction == Direction.inbound) | approved_for_me)
    if user.role == Role.auditor:
        return Transfer.practice_id == user.org_id if user.org.kind == OrgKind.practice else True
    return user.role == Role.admin


def _addressed_to(transfer: Transfer, user: User) -> bool:
    if user.role != Role.biller or transfer.direction != Direction.outbound:
        return True
    return not transfer.recipients or user.id in transfer.recipient_ids


def _addressed_clause(principal: Principal):
    """SQL for `_addressed_to`: a biller sees an outbound transfer only when it names no one or names them."""
    user = principal.user
    if user.role != Role.biller:
        return true()
    return (
        (Transfer.direction != Direction.outbound)
        | ~Transfer.recipients.any()
        | Transfer.recipients.any(TransferRecipient.user_id == user.id)
    )


def find_transfer(db: Session, principal: Principal, transfer_id: str) -> Transfer:
    """The transfer if this caller may see it; NotFound otherwise, identical to a missing id."""
    transfer = db.scalar(
        select(Transfer).where(Transfer.id == transfer_id, _visible_clause(principal), _addressed_clause(principal))
    )
    if transfer is None:
        raise NotFound("No such transfer.", code="transfer_not_found")
    return transfer


# Newest first; inbox and approval queue are the same list, narrowed.
ORDER = paging.Order("transfers", (Transfer.created_at, Transfer.id), descending=True)


def list_transfers(
    db: Session,
    principal: Principal,
    *,
    status: TransferStatus | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    cursor: str | None = None,
    where=None,
) -> Page[Transfer]:
    """Transfers the caller may see, newest first, one page filtered entirely in SQL."""
    return ORDER.page(db, listed(principal, select(Transfer), status, where), limit=limit, cursor=cursor)


def listed(principal: Principal, query: Select, status: TransferStatus | None = None, where=None) -> Select:
    """`query` (of transfers or of their columns) narrowed to what `list_transfers` shows this caller."""
    query = query.where(_visible_clause(principal), _addressed_clause(principal))
    if status is not None:
        query = query.where(Transfer.status == status)
    if where is not None:
        query = query.where(where)
    return query


def count_transfers(db: Session, principal: Principal, *, where=None) -> int:
    """How many transfers the caller may see match `where` (counted in SQL, for the navigation's badges)."""
    query = select(func.count()).select_from(Transfer).where(_visible_clause(principal), _addressed_clause(principal))
    if where is not None:
        query = query.where(where)
    return db.scalar(query) or 0


def inbox_filter() -> tuple[TransferStatus, ColumnElement[bool]]:
    """A biller's inbox: outbound transfers approved for them and inside their window (status, condition)."""
    return TransferStatus.approved, (Transfer.direction == Direction.outbound) & (Transfer.access_ends_at > clock.now())


def approval_filter() -> tuple[TransferStatus, ColumnElement[bool]]:
    """The approval queue: outbound transfers awaiting a decision (status, condition)."""
    return TransferStatus.awaiting_approval, Transfer.direction == Direction.outbound


def inbox(
    db: Session, principal: Principal, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Transfer]:
    """A biller's outbound transfers that are approved for them and inside their window."""
    status, where = inbox_filter()
    return list_transfers(db, principal, status=status, limit=limit, cursor=cursor, where=where)


def approval_queue(
    db: Session, principal: Principal, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Transfer]:
    status, where = approval_filter()
    return list_transfers(db, principal, status=status, limit=limit, cursor=cursor, where=where)


def _deny(
    db: Session,
    principal: Principal,
    action: Action,
    transfer: Transfer,
    reason: str,
    error: GatewayError,
    extra: dict | None = None,
) -> None:
    record_event(
        db,
        action,
        actor=principal.actor,
        outcome=Outcome.denied,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={"reason": reason, "vendor_id": transfer.vendor_id, **(extra or {})},
    )
    db.commit()
    raise error


# -- decisions --------------------------------------------------------------------


def _check_decidable(db: Session, principal: Principal, transfer: Transfer, action: Action) -> None:
    if transfer.direction != Direction.outbound or transfer.status != TransferStatus.awaiting_approval:
        _deny(
            db,
            principal,
            action,
            transfer,
            "not_awaiting_approval",
            Conflict("This transfer is not waiting for approval.", code="not_awaiting_approval"),
        )
    # Four-eyes: whoever sent the files never releases them, whatever roles they hold now.
    if transfer.created_by == principal.user.id:
        _deny(
            db,
            principal,
            action,
            transfer,
            "four_eyes",
            Forbidden("You cannot decide on a transfer you uploaded.", code="four_eyes"),
        )


def approve(
    db: Session,
    settings: Settings,
    keys,
    principal: Principal,
    transfer: Transfer,
    *,
    days: int,
    download_limit: int | None,
    recipient_ids: list[str],
    proof: Proof,
    max_days: int | None = None,
) -> None:
    """Release an outbound transfer to its vendor for a time-bound window (step-up: TOTP or passkey).

    `max_days`: the longest window the practice's retention policy (or its override for this
    vendor) allows, `retention.policies.max_access_days`, which the routes and pages look up
    (retention sits above transfers); without it, the gateway's PHIGATE_MAX_ACCESS_DAYS.
    """
    action = Action.TRANSFER_APPROVE_DENIED
    _check_decidable(db, principal, transfer, action)
    max_days = max_days or settings.max_access_days
    if not 1 <= days <= max_days:
        raise InvalidInput(f"The access window is 1 to {max_days} days.", code="invalid_window")
    if download_limit is not None and download_limit < 1:
        raise InvalidInput("A download limit is at least 1.", code="invalid_download_limit")
    billers = _validate_recipients(db, transfer, recipient_ids)
    _release(
        db,
        settings,
        keys,
        principal,
        transfer,
        proof,
        action,
        Action.TRANSFER_APPROVE_STEPUP_FAILED,
        timedelta(days=days),
    )
    transfer.download_limit = download_limit
    if billers is not None:
        _set_recipients(transfer, billers)
    record_event(
        db,
        Action.TRANSFER_APPROVED,
        actor=principal.actor,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={
            "vendor_id": transfer.vendor_id,
            "days": days,
            "download_limit": download_limit,
            "recipients": sorted(transfer.recipient_ids),
        },
    )
    notices.released(db, transfer, approved=True)


def _release(
    db: Session,
    settings: Settings,
    keys,
    principal: Principal,
    transfer: Transfer,
    proof: Proof,
    action: Action,
    stepup_action: Action,
    window: timedelta,
) -> None:
    """Step-up, BAA in force, then open the window: the common core of approval and emergency access."""
    # A hijacked session alone must not release PHI: ask for a fresh factor.
    step_up(db, settings, keys, principal, proof, stepup_action)
    if active_baa(db, transfer.practice_id, transfer.vendor_id) is None:
        _deny(
            db,
            principal,
            action,
            transfer,
            "baa_not_active",
            Forbidden("There is no BAA in force with this vendor.", code="baa_not_active"),
        )
    now = clock.now()
    transfer.status = TransferStatus.approved
    transfer.decided_by, transfer.decided_at = principal.user.id, now
    transfer.access_ends_at = now + window


def _validate_recipients(db: Session, transfer: Transfer, recipient_ids: list[str]) -> list[User] | None:
    """Named billers must be active billers of the vendor, and approval may only narrow the list."""
    if not recipient_ids:
        return None
    ids = set(recipient_ids)
    users = list(db.scalars(select(User).where(User.id.in_(ids), active_biller_clause([transfer.vendor_id]))))
    if len(users) != len(ids):
        raise InvalidInput("Recipients must be active billers of the vendor.", code="invalid_recipients")
    if transfer.recipients and not ids <= transfer.recipient_ids:
        raise InvalidInput("Approval can only narrow the named recipients.", code="recipients_widened")
    return users


def _set_recipients(transfer: Transfer, billers: list[User]) -> None:
    from gateway.transfers.models import TransferRecipient

    transfer.recipients = [TransferRecipient(transfer_id=transfer.id, user_id=b.id) for b in billers]


def reject(db: Session, principal: Principal, transfer: Transfer, reason: str) -> None:
    _check_decidable(db, principal, transfer, Action.TRANSFER_REJECT_DENIED)
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("Give a reason for the rejection.", code="reason_required")
    transfer.status = TransferStatus.rejected
    transfer.decided_by, transfer.decided_at = principal.user.id, clock.now()
    transfer.reject_reason = reason[:500]
    record_event(
        db,
        Action.TRANSFER_REJECTED,
        actor=principal.actor,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={"vendor_id": transfer.vendor_id},
    )
    notices.rejected(db, transfer)


def revoke(db: Session, principal: Principal, transfer: Transfer, reason: str) -> None:
    """Stop all further downloads at once."""
    if transfer.direction != Direction.outbound or transfer.status not in (
        TransferStatus.approved,
        TransferStatus.awaiting_approval,
    ):
        _deny(
            db,
            principal,
            Action.TRANSFER_REVOKE_DENIED,
            transfer,
            "not_revocable",
            Conflict("Only a pending or approved transfer can be revoked.", code="not_revocable"),
        )
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("Give a reason for the revocation.", code="reason_required")
    transfer.status = TransferStatus.revoked
    transfer.revoked_by, transfer.revoked_at = principal.user.id, clock.now()
    transfer.revoke_reason = reason[:500]
    record_event(
        db,
        Action.TRANSFER_REVOKED,
        actor=principal.actor,
        severity=Severity.warning,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={"vendor_id": transfer.vendor_id},
    )
    notices.revoked(db, transfer)


def open_emergency_access(
    db: Session,
    settings: Settings,
    keys,
    principal: Principal,
    transfer: Transfer,
    *,
    hours: int,
    reason: str,
    proof: Proof,
) -> None:
    """HIPAA's emergency access procedure: an administrator releases a transfer when no approver can.

    It is time-limited, needs a reason and a fresh factor (TOTP or passkey), raises a high-severity
    event, and stays on the auditors' list until an auditor reviews it.
    """
    action = Action.TRANSFER_EMERGENCY_ACCESS_DENIED
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput("Emergency access needs a reason.", code="reason_required")
    if not 1 <= hours <= settings.emergency_max_hours:
        raise InvalidInput(f"Emergency access lasts 1 to {settings.emergency_max_hours} hours.", code="invalid_window")
    _check_decidable(db, principal, transfer, action)
    _release(
        db,
        settings,
        keys,
        principal,
        transfer,
        proof,
        action,
        Action.TRANSFER_EMERGENCY_ACCESS_STEPUP_FAILED,
        timedelta(hours=hours),
    )
    transfer.emergency_reason = reason[:500]
    record_event(
        db,
        Action.TRANSFER_EMERGENCY_ACCESS_OPENED,
        actor=principal.actor,
        severity=Severity.high,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={"vendor_id": transfer.vendor_id, "hours": hours, "alert": True},
    )
    notices.released(db, transfer, approved=False)


def unreviewed_emergencies(db: Session, principal: Principal) -> list[Transfer]:
    query = select(Transfer).where(
        _visible_clause(principal), Transfer.emergency_reason.is_not(None), Transfer.emergency_reviewed_at.is_(None)
    )
    return list(db.scalars(query.order_by(Transfer.decided_at)))


def review_emergency(db: Session, principal: Principal, transfer: Transfer) -> None:
    if transfer.emergency_reason is None or transfer.emergency_reviewed_at is not None:
        raise Conflict("There is no emergency access waiting for review.", code="nothing_to_review")
    transfer.emergency_reviewed_by, transfer.emergency_reviewed_at = principal.user.id, clock.now()
    record_event(
        db,
        Action.TRANSFER_EMERGENCY_ACCESS_REVIEWED,
        actor=principal.actor,
        target_type="transfer",
        target_id=transfer.id,
        target_org_id=transfer.practice_id,
        details={"vendor_id": transfer.vendor_id},
    )


# -- the download gate ------------------------------------------------------------

# How far before the end of what was delivered a resumption may start: bytes the gateway
# handed to a connection that then dropped may never have reached the client.
RESUME_OVERLAP = 1 << 20
COUNTED = (DownloadOutcome.started, DownloadOutcome.aborted, DownloadOutcome.completed)


def downloads_counted(db: Session, file: TransferFile) -> int:
    """Downloads holding a place under the limit: completed, in progress or paused (failed ones gave theirs back)."""
    return (
        db.scalar(
            select(func.count())
            .select_from(Download)
            .where(Download.file_id == file.id, Download.resumed.is_(False), Download.outcome.in_(COUNTED))
        )
        or 0
    )


def download_denial(
    db: Session, principal: Principal, transfer: Transfer, file: TransferFile, *, resuming: bool
) -> str | None:
    """Why this caller may not download this file now, or None. Checked at the moment of each request."""
    user = principal.user
    now = clock.now()
    if file.state.value != "stored" or transfer.status == TransferStatus.destroyed:
        return "destroyed"
    if transfer.direction == Direction.inbound:
        if user.role not in PRACTICE_ROLES or user.org_id != transfer.practice_id:
            return "not_recipient"
    else:
        if user.role != Role.biller or user.org_id != transfer.vendor_id:
            return "not_recipient"
        if transfer.status == TransferStatus.revoked:
            return "revoked"
        if transfer.status != TransferStatus.approved:
            return "not_approved"
        if not _addressed_to(transfer, user):
            return "not_recipient"
        if transfer.access_ends_at is None or now >= transfer.access_ends_at:
            return "window_ended"
        if (
            transfer.download_limit is not None
            and not resuming
            and downloads_counted(db, file) >= transfer.download_limit
        ):
            return "limit_reached"
    if active_baa(db, transfer.practice_id, transfer.vendor_id, now) is None:
        return "baa_not_active"
    return None


@dataclass(frozen=True)
class Access:
    """What a transfer's page may offer now, so it never shows a link or an action that would fail.

    `state`: open, revoked, ended (the window passed), used_up (every file at its download
    limit), no_baa (no BAA in force now), or None (never released: pending, rejected, inbound). `files`: for the caller, each
    file's reason it cannot be downloaded now (`download_denial`), None where it can.
    """

    state: str | None
    files: dict[str, str | None]


def access(db: Session, principal: Principal, transfer: Transfer) -> Access:
    """The transfer's access as its page shows it to this caller (reads only: nothing is recorded)."""
    files = {f.id: download_denial(db, principal, transfer, f, resuming=False) for f in transfer.files}
    state: str | None = None
    if transfer.status == TransferStatus.revoked and transfer.decided_at is not None:
        state = "revoked"
    elif transfer.status == TransferStatus.approved:
        if transfer.access_ends_at is None or clock.now() >= transfer.access_ends_at:
            state = "ended"
        elif transfer.download_limit is not None and all(
            downloads_counted(db, f) >= transfer.download_limit for f in transfer.files
        ):
            state = "used_up"
        elif active_baa(db, transfer.practice_id, transfer.vendor_id) is None:
            state = "no_baa"  # downloads resume if a BAA comes back into force inside the window
        else:
            state = "open"
    return Access(state, files)


def lock_downloads_of(db: Session, file: TransferFile) -> None:
    """Serialise download starts of one file until this transaction ends, so the limit check and the
    reservation are one step (a row lock on PostgreSQL; SQLite's write transaction already is one)."""
    db.execute(select(TransferFile.id).where(TransferFile.id == file.id).with_for_update())


def resumable_download(
    db: Session, file: TransferFile, user: User, start: int, *, stale_after: timedelta
) -> Download | None:
    """This user's unfinished download of the file that a request starting at `start` continues, if any.

    Only a paused download (or one left `started` by a crash, after `stale_after`) is
    resumed, never a completed one, and only from the end of what it delivered (less
    RESUME_OVERLAP): a range can never fetch the file again piece by piece.
    """
    now = clock.now()
    for d in db.scalars(
        select(Download)
        .where(
            Download.file_id == file.id,
            Download.user_id == user.id,
            Download.resumed.is_(False),
            Download.outcome.in_((DownloadOutcome.aborted, DownloadOutcome.started)),
        )
        .order_by(Download.started_at.desc())
    ):
        if d.outcome == DownloadOutcome.started and (d.active_at or d.started_at) > now - stale_after:
            continue  # being sent right now: a second request for it is a download of its own
        end = d.delivered_to if d.delivered_to is not None else d.range_start
        if max(d.range_start, end - RESUME_OVERLAP) <= start <= end:
            return d
    return None


def parties(db: Session, transfer_id: str) -> tuple[str, str] | None:
    """(practice, vendor) of a transfer whoever asks: only to record a refused attempt against both
    organisations, so each side's auditors see it; never shown to the caller."""
    row = db.execute(select(Transfer.practice_id, Transfer.vendor_id).where(Transfer.id == transfer_id)).first()
    return (row[0], row[1]) if row else None


def find_file(transfer: Transfer, file_id: str) -> TransferFile:
    for f in transfer.files:
        if f.id == file_id:
            return f
    raise NotFound("No such file.", code="file_not_found")
