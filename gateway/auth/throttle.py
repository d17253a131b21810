"""Brute-force throttles kept in the database, so they hold across replicas.

Two independent limits: consecutive failures per account (lockout) and failures
per client address in a window.  The address limit stops one attacker from
locking every account; the account limit stops a distributed guesser.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
    """Count one failure in one atomic upsert: parallel first failures from an address cannot collide."""
    now = clock.now()
    expired = AddressThrottle.window_start <= now - timedelta(minutes=settings.ip_window_minutes)
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.execute(
        insert(AddressThrottle)
        .values(address=address, window_start=now, failures=1)
        .on_conflict_do_update(index_elements=["address"], set_={
            # Both expressions read the row as it was: a stale window restarts at one.
            "failures": case((expired, 1), else_=AddressThrottle.failures + 1),
            "window_start": case((expired, now), else_=AddressThrottle.window_start),
        })
    )
