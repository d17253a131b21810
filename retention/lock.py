"""A database lease that lets one destruction runner work at a time, on SQLite and PostgreSQL alike.

A row in `runner_locks` names the owner (host, pid, random token) and a lease end.
A runner takes the row when it is absent, its lease has run out, or its owner is a
dead process on this same host (so a runner killed with -9 does not block the
rerun for a whole lease); it renews the lease as it works and deletes the row at
the end.  Leases use the wall clock of the machine, not the gateway's clock: they
are about real processes.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError

from gateway.db import Database
from retention.errors import RunnerBusy
from retention.models import RunnerLock

LOCK_NAME = "destruction"


def _now() -> datetime:
    return datetime.now(UTC)


def _dead_here(owner: str) -> bool:
    """True if `owner` was a process on this host that no longer exists."""
    host, _, rest = owner.partition("|")
    pid = rest.partition("|")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class RunnerLease:
    def __init__(self, database: Database, *, name: str = LOCK_NAME, lease_seconds: int = 120):
        self.db = database
        self.name = name
        self.lease = timedelta(seconds=lease_seconds)
        self.owner = f"{socket.gethostname()}|{os.getpid()}|{secrets.token_hex(4)}"
        self.held = False

    def try_acquire(self) -> RunnerLock | None:
        """Take the lease; None on success, else the row of whoever holds it."""
        now = _now()
        try:
            with self.db.transaction() as db:
                row = db.scalar(select(RunnerLock).where(RunnerLock.name == self.name).with_for_update())
                if row is None:
                    db.add(RunnerLock(name=self.name, owner=self.owner, acquired_at=now, lease_until=now + self.lease))
                elif row.owner == self.owner or row.lease_until <= now or _dead_here(row.owner):
                    row.owner, row.acquired_at, row.lease_until = self.owner, now, now + self.lease
                else:
                    db.expunge(row)
                    return row
        except IntegrityError:
            # Another runner inserted the row between our read and our insert.
            with self.db.transaction() as db:
                row = db.scalar(select(RunnerLock).where(RunnerLock.name == self.name))
                if row is not None:
                    db.expunge(row)
                    return row
            return self.try_acquire()
        self.held = True
        return None

    def acquire(self, wait_seconds: float = 0) -> None:
        """Take the lease, waiting up to `wait_seconds`; RunnerBusy names the holder otherwise."""
        deadline = time.monotonic() + wait_seconds
        while True:
            holder = self.try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                host, _, rest = holder.owner.partition("|")
                raise RunnerBusy(
                    f"Another destruction runner is working (host {host}, pid "
                    f"{rest.partition('|')[0]}, lease until {holder.lease_until.isoformat()}); "
                    "nothing was done. Run again when it has finished."
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def renew(self) -> None:
        """Extend the lease; raise RunnerBusy if it was lost (taken over after expiry)."""
        with self.db.transaction() as db:
            n = cast(
                CursorResult,
                db.execute(
                    update(RunnerLock)
                    .where(RunnerLock.name == self.name, RunnerLock.owner == self.owner)
                    .values(lease_until=_now() + self.lease)
                ),
            ).rowcount
        if n != 1:
            self.held = False
            raise RunnerBusy("This runner lost its lease to another runner; it stopped.")

    def release(self) -> None:
        if self.held:
            with self.db.transaction() as db:
                db.execute(delete(RunnerLock).where(RunnerLock.name == self.name, RunnerLock.owner == self.owner))
            self.held = False

    def __enter__(self) -> RunnerLease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
