"""Brute-force throttles kept in the database, so they hold across replicas.

Two independent limits: consecutive failures per account (lockout) and failures
per client address in a window.  The address limit stops one attacker from
locking every account; the account limit stops a distributed guesser.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock
from gateway.auth.models import AddressThrottle
from gateway.config import Settings
from gateway.errors import RateLimited


def check_address(db: Session, settings: Settings, address: str) -> None:
    """Raise RateLimited while the address is over its window's failure limit."""
    row = db.get(AddressThrottle, address)
    if row is None:
        return
    window = timedelta(minutes=settings.ip_window_minutes)
    resets_at = row.window_start + window
    now = clock.now()
    if now < resets_at and row.failures >= settings.ip_failure_limit:
        raise RateLimited(int((resets_at - now).total_seconds()))


def count_address_failure(db: Session, settings: Settings, address: str) -> None:
    now = clock.now()
    row = db.execute(select(AddressThrottle).where(AddressThrottle.address == address).with_for_update()).scalar()
    if row is None:
        db.add(AddressThrottle(address=address, window_start=now, failures=1))
    elif now >= row.window_start + timedelta(minutes=settings.ip_window_minutes):
        row.window_start, row.failures = now, 1
    else:
        row.failures += 1
