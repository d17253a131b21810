"""Event search for auditors: filters, organisation scope, keyset paging.

Every query goes through `scoped()`: an auditor of a practice sees only events
whose actor or target organisation is that practice; an auditor of the
onshore operator sees every event.  There is no unscoped search function.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import ColumnElement, and_, func, not_, or_, select, true
from sqlalchemy.orm import Session

from gateway import paging
from gateway.audit.models import AuditEvent, Outcome
from gateway.baas.models import Baa
from gateway.errors import InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page

MAX_RANGE_DAYS = 366
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
_ACTION = re.compile(r"^[a-z0-9_.*]{1,64}$")


@dataclass(frozen=True)
class Scope:
    """Which organisation's events the caller may read; None = every organisation (operator auditors)."""

    org_id: str | None

    @classmethod
    def of(cls, db: Session, principal) -> Scope:
        org = db.get(Organisation, principal.user.org_id)
        return cls(None if org is not None and org.kind == OrgKind.operator else principal.user.org_id)

    def clause(self) -> ColumnElement[bool]:
        if self.org_id is None:
            return true()
        return or_(AuditEvent.actor_org_id == self.org_id, AuditEvent.target_org_id == self.org_id)

    def allows(self, event: AuditEvent) -> bool:
        return self.org_id is None or self.org_id in (event.actor_org_id, event.target_org_id)


@dataclass(frozen=True)
class EventFilter:
    user_id: str | None = None
    org_id: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    target_id: str | None = None
    target_type: str | None = None
    # Timelines: also match file events that name the id as details.file_id.
    target_or_file: bool = False

    def clause(self) -> ColumnElement[bool]:
        parts = []
        if self.user_id:
            parts.append(AuditEvent.actor_user_id == self.user_id)
        if self.org_id:
            # A transfer's vendor is in its events' details (the practice is the target organisation).
            parts.append(
                or_(
                    AuditEvent.actor_org_id == self.org_id,
                    AuditEvent.target_org_id == self.org_id,
                    AuditEvent.details["vendor_id"].as_string() == self.org_id,
                )
            )
        if self.action:
            if self.action.endswith("*"):
                parts.append(AuditEvent.action.startswith(self.action[:-1], autoescape=True))
            else:
                parts.append(AuditEvent.action == self.action)
        if self.outcome:
            parts.append(AuditEvent.outcome == Outcome(self.outcome))
        if self.since:
            parts.append(AuditEvent.occurred_at >= self.since)
        if self.until:
            parts.append(AuditEvent.occurred_at < self.until)
        if self.target_id and self.target_or_file:
            parts.append(
                or_(AuditEvent.target_id == self.target_id, AuditEvent.details["file_id"].as_string() == self.target_id)
            )
        elif self.target_id:
            parts.append(AuditEvent.target_id == self.target_id)
        if self.target_type:
            parts.append(AuditEvent.target_type == self.target_type)
        return and_(true(), *parts)

    def as_params(self) -> dict[str, str]:
        out = {}
        for key, value in asdict(self).items():
            if value is not None and key != "target_or_file":
                out[key] = value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)
        return out


def parse_when(value: str | None, field: str, *, end: bool = False) -> datetime | None:
    """A date (YYYY-MM-DD) or an ISO 8601 time; a date as `until` means the end of that day."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            day = date.fromisoformat(value)
            out = datetime.combine(day + timedelta(days=1) if end else day, time(), UTC)
        else:
            if len(value) > 40:
                raise ValueError
            out = datetime.fromisoformat(value.replace("Z", "+00:00"))
            out = out.replace(tzinfo=UTC) if out.tzinfo is None else out.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{field}: give a date as YYYY-MM-DD or an ISO 8601 time.", code="invalid_input") from None
    if not 2000 <= out.year <= 2200:
        raise InvalidInput(f"{field}: the date is out of range.", code="invalid_input")
    return out


def _ident(value: str | None, field: str, pattern: re.Pattern = _ID) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if not pattern.match(value):
        raise InvalidInput(f"{field}: not a valid value.", code="invalid_input")
    return value


def build_filter(
    db: Session,
    *,
    user: str | None = None,
    org: str | None = None,
    action: str | None = None,
    outcome: str | None = None,
    since: str | None = None,
    until: str | None = None,
    target_id: str | None = None,
    target_type: str | None = None,
    max_days: int | None = MAX_RANGE_DAYS,
) -> EventFilter:
    """Validate raw filter values (bad ones raise InvalidInput, code invalid_input)."""
    start, stop = parse_when(since, "since"), parse_when(until, "until", end=True)
    if start and stop and stop <= start:
        raise InvalidInput("until must be after since.", code="invalid_input")
    if max_days is not None and (start or stop) and (not (start and stop) or stop - start > timedelta(days=max_days)):
        raise InvalidInput(
            f"A date range is at most {max_days} days and needs both since and until.", code="invalid_input"
        )
    if outcome and outcome not in Outcome.__members__:
        raise InvalidInput("outcome is success, failure or denied.", code="invalid_input")
    user_id = _ident(user, "user")
    if user_id:
        from gateway.users.models import User

        found = db.get(User, user_id) or db.scalar(select(User).where(User.username == user_id.lower()))
        # An unknown user simply matches nothing: the answer must not reveal who exists elsewhere.
        user_id = found.id if found else user_id
    return EventFilter(
        user_id=user_id,
        org_id=_ident(org, "org"),
        action=_ident(action, "action", _ACTION),
        outcome=outcome or None,
        since=start,
        until=stop,
        target_id=_ident(target_id, "target_id"),
        target_type=_ident(target_type, "target_type"),
    )


# The log's own order: newest first (the search), oldest first (a day's activity, a timeline).
NEWEST_FIRST = paging.Order("events", (AuditEvent.seq,), descending=True)
OLDEST_FIRST = paging.Order("events-oldest-first", (AuditEvent.seq,))


def search(
    db: Session,
    scope: Scope,
    flt: EventFilter,
    *,
    before: int | None = None,
    cursor: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    ascending: bool = False,
) -> Page[AuditEvent]:
    """One page of events, scoped and filtered in SQL, newest first (or oldest first).

    `before` is a sequence number to start past (older, or newer when ascending): the API's first form of a
    cursor, kept for its clients; `cursor` is the shared one (gateway/paging.py).
    """
    query = select(AuditEvent).where(scope.clause(), flt.clause())
    if before is not None:
        query = query.where(AuditEvent.seq < before if not ascending else AuditEvent.seq > before)
    return (OLDEST_FIRST if ascending else NEWEST_FIRST).page(db, query, limit=limit, cursor=cursor)


def last_seq(page: Page[AuditEvent]) -> int | None:
    """The `before`/`after` sequence number that continues after `page` (None: no more)."""
    return page.items[-1].seq if page.next_cursor else None


def outside_scope(db: Session, scope: Scope, flt: EventFilter) -> int:
    """How many events match `flt` but lie outside the caller's scope: counted, never shown (0 for operators).

    A report that leaves events out says so on the page, so an auditor does not read a partial day as a whole one.
    """
    if scope.org_id is None:
        return 0
    return db.scalar(select(func.count()).select_from(AuditEvent).where(flt.clause(), not_(scope.clause()))) or 0


def orgs_in_scope(db: Session, scope: Scope) -> list[Organisation]:
    """The organisations a filter may name, by name: all for operator auditors; for a practice, itself, the
    vendors it has an agreement with and every organisation its events involve."""
    query = select(Organisation)
    if scope.org_id is not None:
        linked = (
            select(AuditEvent.actor_org_id)
            .where(AuditEvent.target_org_id == scope.org_id)
            .union(
                select(AuditEvent.target_org_id).where(AuditEvent.actor_org_id == scope.org_id),
                select(Baa.vendor_id).where(Baa.practice_id == scope.org_id),
            )
        )
        query = query.where(or_(Organisation.id == scope.org_id, Organisation.id.in_(linked)))
    return list(db.scalars(query.order_by(Organisation.name, Organisation.id)))


def user_in_scope(db: Session, scope: Scope, user_id: str | None) -> bool:
    """Whether the user belongs to an organisation the caller's filters may name (see orgs_in_scope)."""
    from gateway.users.models import User

    user = db.get(User, user_id) if user_id else None
    if user is None:
        return False
    return scope.org_id is None or user.org_id in {o.id for o in orgs_in_scope(db, scope)}


def get_event(db: Session, scope: Scope, seq: int) -> AuditEvent:
    """One event, 404 when it does not exist or lies outside the caller's scope (same answer for both)."""
    event = db.get(AuditEvent, seq)
    if event is None or not scope.allows(event):
        raise NotFound("No such event.", code="event_not_found")
    return event


def day_range(day: str) -> tuple[datetime, datetime]:
    start = parse_when(day, "day")
    if start is None or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", day.strip()):
        raise InvalidInput("day: give a date as YYYY-MM-DD.", code="invalid_input")
    return start, start + timedelta(days=1)


def event_dict(event: AuditEvent) -> dict:
    from translog.leaf import format_time

    return {
        "seq": event.seq,
        "occurred_at": format_time(event.occurred_at),
        "action": event.action,
        "outcome": Outcome(event.outcome).value,
        "severity": event.severity.value,
        "actor_user_id": event.actor_user_id,
        "actor_org_id": event.actor_org_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "target_org_id": event.target_org_id,
        "details": event.details or {},
        "leaf_hash": event.leaf_hash.hex(),
    }
