"""Brute-force throttles and the refusal ledger, kept in the database so they hold across replicas.

Two independent limits: consecutive failures per account (lockout) and failures
per client address in a window.  The address limit stops one attacker from
locking every account; the account limit stops a distributed guesser.

The address window is also the ledger of unauthenticated refusals (a made-up
token or cookie, bad input with no credential): anyone can send those, so
recording each one would let anyone grow the six-year audit log without limit.
Per address and window the log gets the first refusal as itself, one
`auth.address.throttled` event when the limit is reached, and one
`auth.address.window_closed` event with the counts when the window ends (written
when the address comes back after the window, or by the sweep job).  Sign-in
failures, which name an account, are still recorded one by one: the limit
bounds them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event
from gateway.auth.models import AddressThrottle
from gateway.config import Settings
from gateway.errors import RateLimited

UNKNOWN = "unknown"


@dataclass(frozen=True)
class Counted:
    """What one counted failure means for the caller."""

    first_in_window: bool  # record the refusal itself: it is the window's first
    throttled: RateLimited | None  # the address was already over its limit: answer this instead


def check_address(db: Session, settings: Settings, address: str) -> None:
    """Raise RateLimited while the address is over its window's failure limit (a read; counts nothing)."""
    row = db.get(AddressThrottle, address)
    if row is not None and (refusal := _over_limit(row, settings)) is not None:
        raise refusal


def count_address_failure(db: Session, settings: Settings, address: str, *, recorded: bool) -> Counted:
    """Count one failure from the address, in the caller's write transaction.

    `recorded`: the caller records this failure as an event of its own (a sign-in
    failure naming an account); otherwise only the window's first is recorded, by the
    caller, and the rest are counts in the window's closing event.
    """
    row = _locked_row(db, address)
    now = clock.now()
    if _expired(row, settings):
        _close_window(db, settings, row)
        row.window_start, row.failures, row.unrecorded, row.refused = now, 0, 0, 0
    if (refusal := _over_limit(row, settings)) is not None:
        # Over the limit: refused without being looked at, counted, never recorded one by one.
        row.refused += 1
        return Counted(first_in_window=False, throttled=refusal)
    first = row.failures == 0
    row.failures += 1
    if not recorded and not first:
        row.unrecorded += 1
    if row.failures == settings.ip_failure_limit:
        record_event(
            db,
            Action.AUTH_ADDRESS_THROTTLED,
            actor=Actor(ip=address),
            outcome=Outcome.denied,
            severity=Severity.high,
            details={"failures": row.failures, "window_minutes": settings.ip_window_minutes},
        )
    return Counted(first_in_window=first, throttled=None)


def count_refused(db: Session, settings: Settings, address: str) -> None:
    """Count a request refused by the limit itself (the caller answers 429 and records nothing)."""
    row = _locked_row(db, address)
    if not _expired(row, settings):
        row.refused += 1


def close_expired_windows(db: Session, settings: Settings) -> int:
    """The sweep job: write the closing event of every ended window and forget it. Returns windows closed."""
    cutoff = clock.now() - timedelta(minutes=settings.ip_window_minutes)
    rows = db.scalars(
        select(AddressThrottle)
        .where(AddressThrottle.window_start <= cutoff)
        .order_by(AddressThrottle.address)
        .with_for_update(skip_locked=True)
    ).all()
    for row in rows:
        _close_window(db, settings, row)
    if rows:
        db.execute(
            delete(AddressThrottle).where(
                AddressThrottle.address.in_([r.address for r in rows]), AddressThrottle.window_start <= cutoff
            )
        )
    return len(rows)


def _locked_row(db: Session, address: str) -> AddressThrottle:
    """The address's row, created if missing, locked until the transaction ends (parallel failures each count)."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.execute(
        insert(AddressThrottle)
        .values(address=address, window_start=clock.now(), failures=0, unrecorded=0, refused=0)
        .on_conflict_do_nothing(index_elements=["address"])
    )
    # SQLite: the write transaction already excludes other writers; PostgreSQL: the row lock does.
    return db.execute(
        select(AddressThrottle)
        .where(AddressThrottle.address == address)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _expired(row: AddressThrottle, settings: Settings) -> bool:
    return row.window_start <= clock.now() - timedelta(minutes=settings.ip_window_minutes)


def _over_limit(row: AddressThrottle, settings: Settings) -> RateLimited | None:
    resets_at = row.window_start + timedelta(minutes=settings.ip_window_minutes)
    now = clock.now()
    if now < resets_at and row.failures >= settings.ip_failure_limit:
        return RateLimited(int((resets_at - now).total_seconds()))
    return None


def _close_window(db: Session, settings: Settings, row: AddressThrottle) -> None:
    """One event with what the window counted but did not record one by one (nothing when all was recorded)."""
    if row.unrecorded == 0 and row.refused == 0:
        return
    record_event(
        db,
        Action.AUTH_ADDRESS_WINDOW_CLOSED,
        actor=Actor(ip=row.address),
        outcome=Outcome.denied,
        details={
            "window_start": row.window_start.isoformat(),
            "window_minutes": settings.ip_window_minutes,
            "failures": row.failures,
            "unrecorded": row.unrecorded,
            "refused": row.refused,
        },
    )
