"""`record_event()`: the only way anything writes to the audit log.

It adds the event to the caller's SQLAlchemy session, so the event commits or
rolls back together with the action it describes: an action without its
event, or an event for an action that never happened, cannot exist.

Each event gets the next gap-free sequence number and its Merkle leaf hash at
once.  Numbers are handed out under a lock held until the caller's transaction
ends: on PostgreSQL a transaction-scoped advisory lock, on SQLite the write
lock every write transaction takes (BEGIN IMMEDIATE in gateway/db.py; a read
session cannot record an event at all).  So
transactions that write events commit in sequence order, a rolled-back one
leaves no gap, and two gateway processes can never hand out the same number.
Appending costs one indexed max() and one SHA-256: the tree itself is only
extended at checkpoint time (checkpoint.py).

A high-severity event also runs the hooks registered with `on_high_severity()` in
the same transaction: the auditor feature registers its alert there when the
process is composed (the app and the CLI call `gateway.auditor.alerts.install`), so every such event, whoever records
it, is flagged and sent the moment it commits (gateway/auditor/alerts.py,
gateway/outbox.py), and this core module knows nothing of alert rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditEvent, CheckpointKind, Outcome, Severity
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


def on_high_severity(hook: HighSeverityHook) -> None:
    """Run `hook(db, event)` in the recording transaction of every high-severity event (once per hook)."""
    if hook not in _high_severity_hooks:
        _high_severity_hooks.append(hook)


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


def lock_appends(db: Session) -> None:
    """Serialise event appends until this transaction ends (no-op on SQLite, which is already serialised)."""
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY})


def _next_seq(db: Session) -> int:
    lock_appends(db)
    with db.no_autoflush:
        # Events added earlier in this transaction but not flushed yet count too.
        pending = [o.seq for o in db.new if isinstance(o, AuditEvent)]
        last = db.scalar(select(func.max(AuditEvent.seq)))
        if last is None:
            # Every event may have been pruned up to a signed prune checkpoint.
            last = db.scalar(
                select(func.max(AuditCheckpoint.tree_size)).where(AuditCheckpoint.kind == CheckpointKind.prune_base)
            )
    return max([last or 0, *pending]) + 1


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
) -> AuditEvent:
    """Append one event (an `Action` such as `Action.AUTH_LOGIN_FAILED`) to the caller's transaction."""
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
    seq = _next_seq(db)
    leaf = leaf_hash_of(
        seq,
        format_time(occurred_at),
        action,
        outcome.value,
        severity.value,
        user_id,
        org_id,
        ip,
        user_agent,
        target_type,
        target_id,
        target_org_id,
        details,
    )
    event = AuditEvent(
        seq=seq,
        occurred_at=occurred_at,
        action=action,
        outcome=outcome,
        severity=severity,
        actor_user_id=user_id,
        actor_org_id=org_id,
        ip=ip,
        user_agent=user_agent,
        target_type=target_type,
        target_id=target_id,
        target_org_id=target_org_id,
        details=details,
        leaf_hash=leaf,
    )
    db.add(event)
    if severity == Severity.high and not action.startswith(ALERT_ACTIONS):
        # A high-severity event raises its alert in the same transaction, delivered as soon
        # as it commits (gateway/outbox.py): nobody waits for the scheduled rules.
        for hook in _high_severity_hooks:
            hook(db, event)
    events_appended(db, (action,))
    return event


def event_leaf_hash(event: AuditEvent) -> bytes:
    """Recompute an event's leaf hash from its stored fields."""
    return leaf_hash_of(
        event.seq,
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
    """Append many events at once (imports, benchmarks): same lock, numbering and leaf hashing as record_event().

    Each dict holds `action` and optionally occurred_at, outcome, severity, actor_user_id, actor_org_id, ip,
    user_agent, target_type, target_id, target_org_id, details.  Returns the (first, last) sequence numbers.
    """
    from sqlalchemy import Table, insert

    first = _next_seq(db)
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
