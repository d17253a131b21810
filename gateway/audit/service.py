"""`record_event()`: the only way anything writes to the audit log.

It writes the event in the caller's SQLAlchemy session, so the event commits or
rolls back together with the action it describes: an action without its
event, or an event for an action that never happened, cannot exist.

The event goes into the queue (`audit_queue`) without any lock, so writers never
wait for one another; its gap-free sequence number and Merkle leaf hash are
given to it by the integrator (sequencer.py), which moves committed queue rows
into `audit_events` under the append lock, in batches, as a
certificate-transparency log's sequencer does.  On SQLite the recording
transaction integrates as it commits (it holds the one write lock anyway), so
the event is in the log when the request answers; on PostgreSQL the recording
transaction only queues, and the scheduler's leader integrates within
`PHIGATE_AUDIT_INTEGRATE_SECONDS` (readers that need every committed event
integrate first: sequencer.catch_up).

A high-severity event runs the hooks registered with `on_high_severity()` in the
transaction that integrates it, once it has its sequence number: the auditor
feature registers its alert there when the process is composed (the app and the
CLI call `gateway.auditor.alerts.install`), so every such event, whoever
records it, is flagged and sent as soon as it is in the log
(gateway/auditor/alerts.py, gateway/outbox.py), and this core module knows
nothing of alert rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditQueued, CheckpointKind, Outcome, Severity
from gateway.logs import current_request_id
from gateway.metrics import events_appended
from translog.leaf import format_time, leaf_hash_of

_SCALARS = (str, int, float, bool, type(None))
# Events about alerts themselves never raise another alert.
ALERT_ACTIONS = "audit.alert."

# pg_advisory_xact_lock key for the event sequence ("PHIGATE" "AU" as digits would do; any constant works).
APPEND_LOCK_KEY = 0x5048_4741_5544_4954 & 0x7FFF_FFFF_FFFF_FFFF

HighSeverityHook = Callable[[Session, AuditEvent], object]  # what it returns is not used
_high_severity_hooks: list[HighSeverityHook] = []
# session.info key: this transaction's queued events, handed their sequence numbers once integrated.
QUEUED = "phigate_audit_queued"
# On the table, not the entity: a Core statement does not autoflush the caller's pending objects.
_QUEUE = cast(Table, AuditQueued.__table__)
_QUEUE_INSERT = insert(_QUEUE).returning(_QUEUE.c.id)


def on_high_severity(hook: HighSeverityHook) -> None:
    """Run `hook(db, event)` in the integrating transaction of every high-severity event (once per hook)."""
    if hook not in _high_severity_hooks:
        _high_severity_hooks.append(hook)


def high_severity_hooks(event: AuditEvent) -> list[HighSeverityHook]:
    """The hooks an integrated event calls: those registered, for a high-severity event not about an alert."""
    if event.severity == Severity.high and not event.action.startswith(ALERT_ACTIONS):
        return list(_high_severity_hooks)
    return []


@dataclass(frozen=True)
class Actor:
    """Who acted and from where; `user_id` is None for anonymous or system actions."""

    user_id: str | None = None
    org_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(user_agent="phigate-system")


def lock_appends(db: Session, *, wait: bool = True) -> bool:
    """Serialise appends to the log until this transaction ends; False if `wait` is off and another holds it.

    On SQLite the write transaction (BEGIN IMMEDIATE, gateway/db.py) already holds the one write lock.
    """
    if db.get_bind().dialect.name != "postgresql":
        return True
    if wait:
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY})
        return True
    return bool(db.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY}))


def next_seq(db: Session) -> int:
    """The next sequence number; the caller holds the append lock (lock_appends)."""
    with db.no_autoflush:
        last = db.scalar(select(func.max(AuditEvent.seq)))
        if last is None:
            # Every event may have been pruned up to a signed prune checkpoint.
            last = db.scalar(
                select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.kind == CheckpointKind.prune_base)
            )
    return (last or 0) + 1


def _check_action(action: object) -> None:
    # A bare string, even a valid one, is refused: every kind of event is a member of the
    # one vocabulary (actions.py), so a typo cannot start a new kind of event.
    if not isinstance(action, Action):
        raise TypeError(f"audit actions are Action members, not {type(action).__name__} {action!r}")


def _check_details(details: dict) -> None:
    for key, value in details.items():
        # Events carry ids, counts, reasons and hashes; free text that could hold
        # PHI (file names, notes) must never be passed in here.
        if not isinstance(key, str):
            raise TypeError("audit detail keys must be strings")
        values = value if isinstance(value, list | tuple) else (value,)
        if isinstance(value, list | tuple) and not all(isinstance(v, _SCALARS) for v in value):
            raise TypeError(f"audit detail {key!r} must be a scalar or a list of scalars")
        if not isinstance(value, (*_SCALARS, list, tuple)):
            raise TypeError(f"audit detail {key!r} must be a scalar or a list of scalars")
        # A leaf must serialise the same way for ever: no NaN or infinity.
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise TypeError(f"audit detail {key!r} must be a finite number")


def record_event(
    db: Session,
    action: Action,
    *,
    actor: Actor,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    target_type: str | None = None,
    target_id: str | None = None,
    target_org_id: str | None = None,
    details: dict | None = None,
) -> AuditQueued:
    """Queue one event (an `Action` such as `Action.AUTH_LOGIN_FAILED`) in the caller's transaction.

    The returned row's `seq` is set once this process has integrated it (on SQLite at the commit);
    `sequencer.seq_of()` integrates and waits for it where a caller needs the number.
    """
    _check_action(action)
    # Sorted keys: the database's own JSON text of the column is then the canonical text.
    details = dict(details or {})
    request_id = current_request_id()
    if request_id:
        # Ties the event to the request's log lines and the X-Request-Id the caller saw.
        details.setdefault("request_id", request_id)
    details = {k: list(v) if isinstance(v, tuple) else v for k, v in sorted(details.items())}
    _check_details(details)
    outcome, severity = Outcome(outcome), Severity(severity)
    occurred_at = clock.now()
    user_agent = (actor.user_agent or "")[:256] or None
    # Empty strings are stored as NULL so that a CSV export (empty cell = null) round-trips exactly.
    user_id, org_id, ip = actor.user_id or None, actor.org_id or None, actor.ip or None
    target_type, target_id, target_org_id = target_type or None, target_id or None, target_org_id or None
    row = {
        "occurred_at": occurred_at,
        "action": action,
        "outcome": outcome,
        "severity": severity,
        "actor_user_id": user_id,
        "actor_org_id": org_id,
        "ip": ip,
        "user_agent": user_agent,
        "target_type": target_type,
        "target_id": target_id,
        "target_org_id": target_org_id,
        "details": details,
    }
    # No lock and no number: the integrator (sequencer.py) gives it both after the commit.  One Core
    # INSERT now, in the caller's transaction, rather than a unit-of-work flush at commit: the same one
    # statement at a fraction of the ORM's cost on the hot path of every request that records an event.
    queued = AuditQueued(**row)
    queued.id = db.execute(_QUEUE_INSERT, row).scalar_one()
    db.info.setdefault(QUEUED, []).append(queued)
    events_appended(db, (action,))
    return queued


def event_leaf_hash(event: AuditEvent) -> bytes:
    """Recompute an event's leaf hash from its stored fields."""
    return leaf_hash_at(event.seq, event)


def leaf_hash_at(seq: int, event: AuditEvent | AuditQueued) -> bytes:
    """The leaf hash of an event's fields at sequence number `seq`."""
    return leaf_hash_of(
        seq,
        format_time(event.occurred_at),
        event.action,
        Outcome(event.outcome).value,
        Severity(event.severity).value,
        event.actor_user_id,
        event.actor_org_id,
        event.ip,
        event.user_agent,
        event.target_type,
        event.target_id,
        event.target_org_id,
        event.details or {},
    )


def record_events_bulk(db: Session, events: list[dict]) -> tuple[int, int]:
    """Append many events at once (imports, benchmarks, retention jobs) straight into the log.

    It takes the append lock in the caller's transaction, as the integrator does (same numbering and
    leaf hashing), so queued events wait for it: for batches, never for a request's single event.

    Each dict holds `action` and optionally occurred_at, outcome, severity, actor_user_id, actor_org_id, ip,
    user_agent, target_type, target_id, target_org_id, details.  Returns the (first, last) sequence numbers.
    """

    lock_appends(db)
    first = next_seq(db)
    request_id = current_request_id()
    rows = []
    now = clock.now()
    for offset, spec in enumerate(events):
        _check_action(spec["action"])
        details = dict(spec.get("details") or {})
        if request_id:
            details.setdefault("request_id", request_id)
        details = dict(sorted(details.items()))
        _check_details(details)
        row = {
            "seq": first + offset,
            "occurred_at": spec.get("occurred_at") or now,
            "action": spec["action"],
            "outcome": Outcome(spec.get("outcome", Outcome.success)).value,
            "severity": Severity(spec.get("severity", Severity.info)).value,
            **{
                k: spec.get(k) or None
                for k in (
                    "actor_user_id",
                    "actor_org_id",
                    "ip",
                    "user_agent",
                    "target_type",
                    "target_id",
                    "target_org_id",
                )
            },
            "details": details,
        }
        row["leaf_hash"] = leaf_hash_of(
            row["seq"],
            format_time(row["occurred_at"]),
            row["action"],
            row["outcome"],
            row["severity"],
            row["actor_user_id"],
            row["actor_org_id"],
            row["ip"],
            row["user_agent"],
            row["target_type"],
            row["target_id"],
            row["target_org_id"],
            details,
        )
        rows.append(row)
    if rows:
        db.execute(insert(cast(Table, AuditEvent.__table__)), rows)  # Core insert: rows keyed by column
        events_appended(db, [row["action"] for row in rows])
    return first, first + len(rows) - 1


# The largest tree first.
CHECKPOINTS = paging.Order("checkpoints", (AuditCheckpoint.tree_size, AuditCheckpoint.id), descending=True)


def recent_checkpoints(
    db: Session, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> paging.Page[AuditCheckpoint]:
    """One page of the signed checkpoints, newest first."""
    return CHECKPOINTS.page(db, select(AuditCheckpoint), limit=limit, cursor=cursor)
