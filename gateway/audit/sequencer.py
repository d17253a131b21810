"""The integrator: gives queued events their gap-free place in the log, as a CT log's sequencer does.

`record_event()` only inserts the event into `audit_queue`, in the action's own
transaction and without any lock, so writers never wait for one another (today's
alternative, numbering in the writer's transaction, makes every event-writing
transaction wait for the one before it to commit).  `integrate()` then, in one
short transaction under the append lock (a PostgreSQL advisory lock, SQLite's
write lock):

* reads committed queue rows in id order, a batch at a time;
* gives each the next sequence number and its leaf hash, inserts it into
  `audit_events` and deletes its queue row (on PostgreSQL a trigger refuses to
  delete a queue row the log does not hold, migration 0016_audit_queue);
* runs the high-severity hooks (the auditor's alert) for each event, each in a
  savepoint: a failing hook is logged and never holds the log back; the
  scheduled alert rules flag any high-severity event left without its flag.

The numbering is serialised by the lock, so it is gap-free and a rolled-back
action leaves nothing in the queue.  The tree is extended and signed from the
log by checkpoints (checkpoint.py), which integrate the queue first.

Who integrates, and so the bound on the delay:

* SQLite: the transaction that queued events, as it commits (`install()`).  Its
  write transaction already holds the one write lock, so integrating costs no
  lock and no wait: the event is in the log when the request answers and one
  commit does both.
* PostgreSQL: only the scheduler's leader, on a thread of its own (never behind
  another job), runs `integrate()` every `PHIGATE_AUDIT_INTEGRATE_SECONDS`
  (default 1 s), a batch of every committed queue row at a time.  The recording
  transaction only inserts its queue row and commits: no try-lock, no read of
  the queue, nothing another transaction holds (integrating at commit costs the
  writer four more round trips and, with several writers, a race for one lock
  that most of them lose).  The next run starts an interval after the previous
  one ends, so an event waits at most that interval plus two integrations' time
  (the run that just missed it, the run that moves it) while a leader is alive
  (plus one lease when the leader dies).
  The one exception is a transaction that queued a high-severity event (rare:
  emergency access, a locked account): it integrates as it commits when the
  append lock is free (a try-lock, never a wait), so that its alert leaves with
  the request; when the lock is busy the leader's next run moves it.
* Readers that must see every event committed before them integrate first
  (`catch_up()`): the auditor's pages, API and exports, the access review,
  `seq_of()`; every checkpoint integrates the queue first too.

The lock is held until the commit of the transaction that took it, so its
holders are short: an integration (the leader's, a reader's, a high-severity
event's commit), a bulk append, nothing else.

Verification covers the log, not the queue: `phigate audit verify` reports how
many events are queued and not yet integrated.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import cast

from sqlalchemy import Table, delete, event, func, insert, select
from sqlalchemy.orm import Session

from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditQueued, CheckpointKind, Outcome, Severity
from gateway.audit.service import QUEUED, high_severity_hooks, leaf_hash_at, lock_appends
from gateway.db import Database
from translog.leaf import format_time, leaf_hash_of

log = logging.getLogger("phigate.audit")

BATCH = 2_000
_FIELDS = [c.name for c in cast(Table, AuditQueued.__table__).columns if c.name != "id"]
# The leaf's fields between severity and details, in leaf order (translog.leaf.leaf_hash_of).
_LEAF_FIELDS = ("actor_user_id", "actor_org_id", "ip", "user_agent", "target_type", "target_id", "target_org_id")


def integrate_in(db: Session) -> dict[int, int]:
    """Move every queue row this transaction sees into the log; the caller holds the append lock.

    Returns {queue id: sequence number} of the events moved.
    """
    moved: dict[int, int] = {}
    queue = cast(Table, AuditQueued.__table__)
    events = cast(Table, AuditEvent.__table__)
    # One round trip per batch: the rows and the number they continue from.
    query = select(queue, _last_seq().label("last_seq")).order_by(queue.c.id).limit(BATCH)
    while True:
        rows = db.execute(query).mappings().all()
        if not rows:
            return moved
        seq = rows[0]["last_seq"]
        batch, high = [], []
        for row in rows:
            seq += 1
            ev = {f: row[f] for f in _FIELDS}
            ev["seq"] = seq
            ev["leaf_hash"] = leaf_hash_of(
                seq,
                format_time(ev["occurred_at"]),
                ev["action"],
                Outcome(ev["outcome"]).value,
                Severity(ev["severity"]).value,
                *(ev[f] for f in _LEAF_FIELDS),
                ev["details"] or {},
            )
            batch.append(ev)
            moved[row["id"]] = seq
            if Severity(ev["severity"]) == Severity.high:
                high.append(ev)
        db.execute(insert(events), batch)
        db.execute(delete(queue).where(queue.c.id.in_([row["id"] for row in rows])))
        hooked = [_run_hooks(db, AuditEvent(**ev)) for ev in high]
        # A short batch emptied the queue, unless a hook queued events (an alert's own) meanwhile.
        if len(rows) < BATCH and not any(hooked):
            return moved


def _last_seq():
    """The last sequence number given, as a scalar subquery (events may all be pruned: the prune base)."""
    pruned = (
        select(func.max(AuditCheckpoint.tree_size))
        .where(AuditCheckpoint.kind == CheckpointKind.prune_base)
        .scalar_subquery()
    )
    return func.coalesce(select(func.max(AuditEvent.seq)).scalar_subquery(), pruned, 0)


def _run_hooks(db: Session, ev: AuditEvent) -> bool:
    hooks = high_severity_hooks(ev)
    for hook in hooks:
        try:
            with db.begin_nested():
                hook(db, ev)
        except Exception:
            # The event is in the log whatever happens here; the scheduled rules flag it later.
            log.exception("high-severity hook %s failed for event %s", getattr(hook, "__name__", hook), ev.seq)
    return bool(hooks)


def integrate(database: Database, *, wait: bool = True) -> dict[int, int] | None:
    """Integrate every committed queued event in one transaction; None if `wait` is off and the lock is busy."""
    with database.transaction() as db:
        if not lock_appends(db, wait=wait):
            return None
        moved = integrate_in(db)
        # Events queued by the hooks (alerts about alerts never) were integrated just now.
        _hand_out(db.info.pop(QUEUED, ()), moved)
    return moved


def catch_up(database: Database) -> None:
    """Integrate what is queued, if anything, so that a reader sees every event committed before it.

    A read first (one statement, no lock): on SQLite and on an idle PostgreSQL the queue is empty. Otherwise
    it waits for the append lock, which only integrations and bulk appends hold, each briefly.
    """
    with database.snapshot() as db:
        if db.scalar(select(AuditQueued.id).limit(1)) is None:
            return
    integrate(database)


def queued_count(db: Session) -> int:
    """Events committed with their actions but not yet in the log."""
    return db.scalar(select(func.count()).select_from(AuditQueued)) or 0


def _hand_out(handles: Iterable[AuditQueued], moved: dict[int, int]) -> None:
    for handle in handles:
        if handle.id in moved:
            handle.seq = moved[handle.id]


_MOVED = "phigate_audit_moved"  # session.info: what this transaction's own integration moved
_INTEGRATING = "phigate_audit_integrating"


def _before_commit(session: Session) -> None:
    """At the commit of a transaction that queued events: integrate in it, if the append lock is free."""
    if session.in_nested_transaction() or not session.info.get(QUEUED) or session.info.get(_INTEGRATING):
        return
    session.info[_INTEGRATING] = True
    try:
        # Never wait: on SQLite the write transaction holds the one write lock already; on PostgreSQL a
        # busy lock means another transaction is integrating, and the event waits for the leader's
        # next integration instead of this request.  An error here fails the commit, as a failure to
        # record the event always did: no action without its event (the hooks, which may fail on their
        # own, run in savepoints).
        if lock_appends(session, wait=False):
            session.info[_MOVED] = integrate_in(session)
    finally:
        session.info.pop(_INTEGRATING, None)


def _after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint was released: the transaction is not committed yet
    handles = session.info.pop(QUEUED, None)
    moved = session.info.pop(_MOVED, None)
    if handles and moved:
        _hand_out(handles, moved)


def _forget(session: Session, previous) -> None:
    # Only the outermost rollback ends the transaction; a savepoint's leaves the rest queued.
    if previous.parent is None:
        session.info.pop(QUEUED, None)
        session.info.pop(_MOVED, None)


def _before_commit_high(session: Session) -> None:
    """PostgreSQL: integrate at commit only a transaction that queued a high-severity event (rare), so that its
    alert leaves with the request; with a try-lock, never a wait (a busy lock leaves it to the leader)."""
    if any(h.severity == Severity.high for h in session.info.get(QUEUED, ())):
        _before_commit(session)


def install(database: Database) -> None:
    """Integrate at the commit of transactions that queued events (see the module docstring: which, where)."""
    at_commit = _before_commit_high if database.dialect == "postgresql" else _before_commit
    for maker in (database.sessions, database.reads):
        event.listen(maker, "before_commit", at_commit)
        event.listen(maker, "after_commit", _after_commit)
        event.listen(maker, "after_soft_rollback", _forget)


def seq_of(database: Database, handle: AuditQueued) -> int:
    """The sequence number of a committed event recorded by this process, integrating (and waiting) if need be."""
    if handle.seq is None:
        moved = integrate(database) or {}
        handle.seq = moved.get(handle.id)
    if handle.seq is None:
        # Another process integrated it meanwhile: find it by its fields (the occurred_at index).
        with database.snapshot() as db:
            candidates = db.scalars(
                select(AuditEvent).where(
                    AuditEvent.occurred_at == handle.occurred_at,
                    AuditEvent.action == handle.action,
                    AuditEvent.target_id == handle.target_id if handle.target_id else AuditEvent.target_id.is_(None),
                )
            ).all()
            for ev in candidates:
                if leaf_hash_at(ev.seq, handle) == ev.leaf_hash:
                    handle.seq = ev.seq
                    break
    if handle.seq is None:
        raise LookupError("the event is neither queued nor in the log (was its transaction committed?)")
    return handle.seq
