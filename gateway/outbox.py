"""The outbox: messages that must leave the gateway (alerts today), kept in the database until delivered.

A message is written with `enqueue()` into the caller's session, so it commits
or rolls back with the action that caused it: an alert about an event that was
rolled back never leaves, and a committed one cannot be lost by a sink that is
down.  Right after the commit (a SQLAlchemy `after_commit` hook, in the thread
that committed, never on the event loop) the messages of that transaction are
delivered at once; whatever could not be delivered stays in the table and the
scheduled job (`PHIGATE_OUTBOX_RETRY_SECONDS`) retries it.

Delivery is at least once: a message is claimed for a lease in a short write
transaction, sent outside any transaction (a webhook may take seconds), then
marked delivered.  A process that dies between sending and marking sends it
again after the lease; receivers deduplicate on the message's own id.  When a
channel fails, the rest of its messages wait for the next run rather than each
waiting on the same dead sink.

A receiver may also refuse one message for good (a mail server answering 5xx for
its recipient): the channel raises `Refused`, the message is settled as refused
(kept, never sent again) and the channel goes on with the rest.  A channel whose
sends may take seconds (SMTP) delivers after the commit in a thread of its own
(`Channel.background`), so no request waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import JSON, Integer, String, event, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway import clock
from gateway.db import Base, Database, UTCDateTime

log = logging.getLogger("phigate.outbox")

_PENDING = "phigate_outbox_pending"  # session.info key: entries of this transaction to deliver after commit
_SKIPPED = "not attempted"  # its channel had just failed on an earlier message of the same run
LEASE = timedelta(minutes=2)  # longer than any channel's send timeout
BATCH = 200


class OutboxEntry(Base):
    """One message for one channel (`topic`), with its delivery state."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
    last_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Refused for good by its receiver: settled, never sent again (migration 0014).
    refused_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class Refused(Exception):
    """Raised by a channel's send: the receiver refused this message for good; the channel itself works."""


@dataclass(frozen=True)
class Delivery:
    """The outcome of one attempt at one message, as `Channel.settled` records it."""

    attempts: int  # this one included
    delivered_at: datetime | None
    error: str | None = None
    refused: bool = False  # for good: not retried


@dataclass(frozen=True)
class Channel:
    """Where messages of one topic go.

    `send(payload)` raises on failure (any exception counts as "not delivered, try again";
    `Refused` as "never"); `settled(db, payload, delivery)` records the outcome beside the
    message's subject (the alert row shows whether it left), in the marking transaction.
    `ready()` is False while the channel is not configured: its messages then wait.
    `background`: deliver after the commit in a thread of its own, never in the committing one.
    """

    send: Callable[[dict], None]
    settled: Callable[[Session, dict, Delivery], None] | None = None
    ready: Callable[[], bool] = lambda: True
    background: bool = False


def enqueue(db: Session, topic: str, payload: dict, *, at_commit: bool = True) -> OutboxEntry:
    """Add a message to the caller's transaction; with `at_commit`, deliver it as soon as that commits."""
    entry = OutboxEntry(topic=topic, payload=payload, created_at=clock.now(), attempts=0)
    db.add(entry)
    if at_commit:
        db.info.setdefault(_PENDING, []).append(entry)
    return entry


class Outbox:
    """Delivers the outbox of one database through its channels; one per process (Components.outbox)."""

    def __init__(self, database: Database, channels: dict[str, Channel]):
        self.database = database
        self.channels = channels
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def install(self) -> None:
        """Deliver each transaction's messages right after it commits, on every session of the database."""
        for maker in (self.database.sessions, self.database.reads):
            event.listen(maker, "after_commit", self._after_commit)
            event.listen(maker, "after_soft_rollback", _forget)

    def _after_commit(self, session: Session) -> None:
        if session.in_nested_transaction():
            # A savepoint was released (SQLAlchemy reports it as a commit too): the
            # transaction, and so its messages, are not committed yet.
            return
        entries = session.info.pop(_PENDING, None)
        if not entries:
            return
        from sqlalchemy import inspect

        # Entries of a rolled-back savepoint never reached the table.
        kept = [e for e in entries if inspect(e).persistent and e.id is not None]
        later = [e.id for e in kept if self._background(e.topic)]
        now = [e.id for e in kept if not self._background(e.topic)]
        if later:
            self._in_thread(later)
        if now and _on_event_loop():
            # The event loop never waits on a sink: hand the delivery to a thread.
            self._in_thread(now)
        elif now:
            self._deliver_quietly(now)

    def _background(self, topic: str) -> bool:
        channel = self.channels.get(topic)
        return channel is not None and channel.background

    def _in_thread(self, ids: list[int]) -> None:
        def run() -> None:
            try:
                self._deliver_quietly(ids)
            finally:
                with self._lock:
                    self._threads.discard(thread)

        thread = threading.Thread(target=run, name="phigate-outbox", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the deliveries already handed to threads (at shutdown; a process that stops
        without waiting loses nothing: the retry job sends them after their lease)."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

    def _deliver_quietly(self, ids: list[int]) -> None:
        # The action is committed whatever happens here; the retry job has the message.
        try:
            self.deliver(ids)
        except Exception as exc:  # noqa: BLE001 - never fail a committed request over its notification
            log.warning("outbox delivery deferred to the retry job: %s", type(exc).__name__)

    def deliver(self, ids: Iterable[int] | None = None) -> int:
        """Send undelivered messages (these ids, or every one waiting); returns how many were delivered."""
        now = clock.now()
        with self.database.transaction() as db:
            claimed = self._claim(db, None if ids is None else list(ids), now)
        results: list[tuple[int, str, dict, str | None, bool]] = []
        down: set[str] = set()
        for entry_id, topic, payload in claimed:
            if topic in down:
                results.append((entry_id, topic, payload, _SKIPPED, False))
                continue
            try:
                self.channels[topic].send(payload)
                results.append((entry_id, topic, payload, None, False))
            except Refused as exc:
                log.warning("outbox %s message %s refused for good: %s", topic, entry_id, exc)
                results.append((entry_id, topic, payload, f"Refused: {exc}"[:300], True))
            except Exception as exc:  # noqa: BLE001 - any failure keeps the message for the next run
                down.add(topic)
                log.warning("outbox %s message %s not delivered: %s", topic, entry_id, type(exc).__name__)
                results.append((entry_id, topic, payload, f"{type(exc).__name__}: {exc}"[:300], False))
        if not results:
            return 0
        done = clock.now()
        with self.database.transaction() as db:
            for entry_id, topic, payload, error, refused in results:
                entry = db.get_one(OutboxEntry, entry_id)
                entry.claimed_until = None
                if error is _SKIPPED:
                    continue  # released for the next run, its attempts unchanged
                entry.attempts += 1
                entry.delivered_at, entry.last_error = (done, None) if error is None else (None, error)
                entry.refused_at = done if refused else None
                settled = self.channels[topic].settled
                if settled is not None:
                    settled(db, payload, Delivery(entry.attempts, entry.delivered_at, error, refused))
        return sum(1 for r in results if r[3] is None)

    def _claim(self, db: Session, ids: list[int] | None, now: datetime) -> list[tuple[int, str, dict]]:
        topics = [name for name, channel in self.channels.items() if channel.ready()]
        if not topics or ids == []:
            return []
        query = (
            select(OutboxEntry)
            .where(
                OutboxEntry.delivered_at.is_(None),
                OutboxEntry.refused_at.is_(None),
                OutboxEntry.topic.in_(topics),
                or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until < now),
            )
            .order_by(OutboxEntry.id)
            .limit(BATCH)
        )
        if ids is not None:
            query = query.where(OutboxEntry.id.in_(ids))
        if db.get_bind().dialect.name == "postgresql":
            # Another replica's retry job may be claiming at the same moment: take only free rows.
            query = query.with_for_update(skip_locked=True)
        claimed = []
        for entry in db.scalars(query):
            entry.claimed_until = now + LEASE
            claimed.append((entry.id, entry.topic, dict(entry.payload)))
        return claimed


def _forget(session: Session, previous) -> None:
    # Only the outermost rollback ends the transaction; a savepoint's leaves the rest pending.
    if previous.parent is None:
        session.info.pop(_PENDING, None)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
