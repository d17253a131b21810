"""Leader election among gateway replicas: a lease row in the database, renewed by the leader.

Every replica runs a `Leadership` contender; the one that holds the row of
`leader_leases` named "scheduler" runs the leader-only jobs (gateway.scheduler).
A contender takes the row when it is absent or its lease has run out, and then
renews it every quarter lease; each takeover raises the row's `term`, a fencing
token later work can check ("am I still the leader of term N?").

Why a lease row and not a PostgreSQL session advisory lock held on a dedicated
connection:

* SQLite has no advisory locks, and its file locks belong to transactions, so
  a lock held for the life of a process would block every other writer.  A row
  works the same on both databases, and needs nothing but short transactions.
* After SIGKILL a lease simply stops being renewed and runs out, wherever the
  dead process was.  An advisory lock is released when PostgreSQL notices the
  session is gone: at once for a process killed on a live host, but for a
  host that vanished (power loss, network partition) only when TCP keepalives
  give up, by default hours later; meanwhile nobody can lead.  Through a
  transaction-pooling proxy (PgBouncer) a session lock is not even tied to the
  process that took it.
* A partitioned advisory-lock holder cannot tell that it lost the lock until it
  next talks to the server, so two replicas may both act.  A lease holder knows
  its own deadline: it stops acting at `lease_seconds - margin` after the renewal
  that started its lease, measured on its monotonic clock, while the others wait
  for the full lease by the wall clock.  Clocks synchronised (NTP) to well within
  the margin (a quarter lease) keep the two windows apart.

The cost is failover time: a killed leader is replaced within one lease
(`PHIGATE_SCHEDULER_LEASE_SECONDS`, default 30 s) plus one polling interval.
A leader that stops cleanly gives the row up at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, String, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, Database, UTCDateTime

log = logging.getLogger("phigate.leader")

SCHEDULER = "scheduler"


class LeaderLease(Base):
    """Who leads a named role, until when, and in which term."""

    __tablename__ = "leader_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    term: Mapped[int] = mapped_column(BigInteger)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())


def _wall() -> datetime:
    # Leases are about real processes: the machine's clock, never the gateway's (test) clock.
    return datetime.now(UTC)


def contender_id() -> str:
    """host|pid|random: unique per process, readable by an operator."""
    return f"{socket.gethostname()}|{os.getpid()}|{secrets.token_hex(4)}"


class Leadership:
    """This process's claim to lead `name`: `step()` once, or `start()` a thread that keeps stepping."""

    def __init__(
        self, database: Database, *, name: str = SCHEDULER, lease_seconds: float = 30.0, owner: str | None = None
    ):
        self.db = database
        self.name = name
        self.lease = float(lease_seconds)
        self.owner = owner or contender_id()
        self.term: int | None = None
        self._until = 0.0  # monotonic time after which this process no longer believes it leads
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def interval(self) -> float:
        """How often the leader renews and followers look for a lapsed lease."""
        return self.lease / 4

    def is_leader(self) -> bool:
        return time.monotonic() < self._until

    def step(self) -> bool:
        """Take or renew the lease if possible; True while this process leads."""
        started, now = time.monotonic(), _wall()
        was = self.is_leader()
        try:
            term = self._claim(now)
        except SQLAlchemyError as exc:
            # Another contender inserted the row first, or the database is unreachable:
            # keep whatever belief the last successful renewal allows, no longer.
            log.warning("leader election for %s: %s", self.name, type(exc).__name__)
            term = None
        if term is not None:
            # The margin: stop believing a quarter lease before anyone else may take over.
            self._until = started + self.lease - self.interval
            if not was or term != self.term:
                log.info("leader of %s: this process (term %d)", self.name, term)
            self.term = term
        elif was and not self.is_leader():
            log.warning("leader of %s: lease lost (term %s)", self.name, self.term)
        return self.is_leader()

    def _claim(self, now: datetime) -> int | None:
        until = now + timedelta(seconds=self.lease)
        with self.db.transaction() as db:
            row = db.scalar(select(LeaderLease).where(LeaderLease.name == self.name).with_for_update())
            if row is None:
                db.add(LeaderLease(name=self.name, owner=self.owner, term=1, acquired_at=now, lease_until=until))
                return 1
            if row.owner == self.owner:
                row.lease_until = until
                return row.term
            if row.lease_until <= now:
                row.owner, row.term, row.acquired_at, row.lease_until = self.owner, row.term + 1, now, until
                return row.term
            return None

    def resign(self) -> None:
        """Give the lease up (clean shutdown) so that another replica takes over at once."""
        self._until = 0.0
        try:
            with self.db.transaction() as db:
                db.execute(delete(LeaderLease).where(LeaderLease.name == self.name, LeaderLease.owner == self.owner))
        except SQLAlchemyError as exc:
            log.warning("could not resign leadership of %s: %s", self.name, type(exc).__name__)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"phigate-leader-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            try:
                self.step()
            except Exception:  # the election must outlive any single failure
                log.exception("leader election for %s failed", self.name)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop contending and resign if leading."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.term is not None:
            self.resign()


def current_leader(database: Database, name: str = SCHEDULER) -> LeaderLease | None:
    """The lease row as the database has it (the holder may be dead and its lease running out)."""
    with database.snapshot() as db:
        row = db.scalar(select(LeaderLease).where(LeaderLease.name == name))
        if row is not None:
            db.expunge(row)
        return row
