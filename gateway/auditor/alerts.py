"""Alert rules over recent events, stored flags, and delivery to a SIEM sink through the outbox.

Rules (thresholds overridable with PHIGATE_AUDIT_ALERT_RULES, JSON):

* download_burst         one user completes >= count downloads within `minutes`
* denied_attempts        one user (or address, when anonymous) is denied >= count times within `minutes`
* failed_logins_account  >= count failed sign-in steps against one account within `minutes`
* failed_logins_address  >= count failed sign-in steps from one address within `minutes`
* login_outside_hours    a successful sign-in outside its organisation's sign-in hours, in its time zone
                         (gateway/orgs/hours.py; default PHIGATE_AUDIT_ALERT_ALLOWED_HOURS in PHIGATE_TIMEZONE)
* high_severity_event    any high-severity event: emergency access opened, a stored file failing its
                         integrity check, an account locked, an object missing from storage, a cloned
                         passkey (signature counter going backwards), a user's passkeys reset

A high-severity event raises its flag as soon as it is in the log: the
integrator (gateway/audit/sequencer.py) calls `raise_for_event()` in the
transaction that gives the event its sequence number (normally right after the
action commits, at most PHIGATE_AUDIT_INTEGRATE_SECONDS later), and the flag's
outbox message leaves as soon as that transaction commits (gateway/outbox.py).
The counting rules need a window of events and are evaluated by the scheduled
job, which also catches any high-severity event left without a flag (bulk
imports, a hook that failed).

A flag is unique per (rule, subject, window), so evaluating again does not
repeat it.  Raising a flag is itself an audit event.  Flags are delivered to
PHIGATE_AUDIT_ALERT_SINK: an http(s) webhook (JSON POST) or file:///path
(one JSON object per line); what could not be delivered stays in the outbox for
the retry job.
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Text, cast, func, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import AuditAlert, AuditEvent, Outcome, Severity
from gateway.audit.sequencer import catch_up
from gateway.audit.service import Actor, record_event
from gateway.errors import NotFound
from gateway.notifications.models import Kind
from gateway.notifications.service import notify
from gateway.orgs import hours
from gateway.orgs.models import Organisation, OrgKind
from gateway.outbox import Channel, Delivery, enqueue
from gateway.paging import Page
from gateway.users.models import Role, User

TOPIC = "audit.alert"
SINK_TIMEOUT_SECONDS = 5  # a request that raised an alert waits at most this long for a webhook

LOGIN_FAILURES = (Action.AUTH_LOGIN_FAILED, Action.AUTH_MFA_FAILED, Action.AUTH_REAUTH_FAILED)
DEFAULT_RULES: dict[str, dict[str, int]] = {
    "download_burst": {"count": 20, "minutes": 10},
    "denied_attempts": {"count": 5, "minutes": 15},
    "failed_logins_account": {"count": 5, "minutes": 15},
    "failed_logins_address": {"count": 20, "minutes": 15},
    "login_outside_hours": {"enabled": 1, "minutes": 60 * 24},
    "high_severity_event": {"enabled": 1, "minutes": 60 * 24},
}
SEVERITY = {
    "download_burst": Severity.high,
    "denied_attempts": Severity.warning,
    "failed_logins_account": Severity.warning,
    "failed_logins_address": Severity.high,
    "login_outside_hours": Severity.warning,
    "high_severity_event": Severity.high,
}


def rules(settings) -> dict[str, dict[str, int]]:
    out = {name: dict(values) for name, values in DEFAULT_RULES.items()}
    for name, values in (settings.audit_alert_rules or {}).items():
        if name in out:
            out[name].update(values)
    return out


def _group(db: Session, subject_col, since: datetime, *conditions):
    return db.execute(
        select(subject_col, func.count(), func.min(AuditEvent.seq), func.max(AuditEvent.seq))
        .where(AuditEvent.occurred_at >= since, subject_col.is_not(None), *conditions)
        .group_by(subject_col)
    ).all()


def _orgs(db: Session, first: int, last: int, subject_col, subject: str) -> list[str]:
    rows = db.execute(
        select(AuditEvent.actor_org_id, AuditEvent.target_org_id)
        .where(AuditEvent.seq.between(first, last), subject_col == subject)
        .limit(200)
    ).all()
    return sorted({o for row in rows for o in row if o})


def evaluate(db: Session, settings, now: datetime | None = None) -> list[AuditAlert]:
    """Raise the flags that recent events call for (new ones only); adds them and their events to `db`."""
    now = now or clock.now()
    cfg = rules(settings)
    found: list[tuple[str, str, str, int, int, int, str, list[str], dict]] = []

    def window(rule: str) -> tuple[datetime, str]:
        minutes = cfg[rule]["minutes"]
        # The flag's window: the rule's period the evaluation falls into.
        key = str(int(now.timestamp()) // (minutes * 60))
        return now - timedelta(minutes=minutes), key

    counted = (
        (
            "download_burst",
            AuditEvent.actor_user_id,
            (AuditEvent.action == Action.TRANSFER_DOWNLOAD_COMPLETED, AuditEvent.outcome == Outcome.success),
            "{n} downloads by one user within {m} minutes",
        ),
        (
            "denied_attempts",
            AuditEvent.actor_user_id,
            (AuditEvent.outcome == Outcome.denied,),
            "{n} denied attempts by one user within {m} minutes",
        ),
        (
            "failed_logins_account",
            AuditEvent.target_id,
            (AuditEvent.action.in_(LOGIN_FAILURES), AuditEvent.outcome == Outcome.failure),
            "{n} failed sign-in steps against one account within {m} minutes",
        ),
        (
            "failed_logins_address",
            AuditEvent.ip,
            (AuditEvent.action.in_(LOGIN_FAILURES), AuditEvent.outcome.in_([Outcome.failure, Outcome.denied])),
            "{n} failed sign-in steps from one address within {m} minutes",
        ),
    )
    for rule, col, conditions, text in counted:
        since, key = window(rule)
        threshold = cfg[rule]["count"]
        for subject, n, first, last in _group(db, col, since, *conditions):
            if n >= threshold:
                found.append(
                    (
                        rule,
                        str(subject),
                        key,
                        n,
                        first,
                        last,
                        text.format(n=n, m=cfg[rule]["minutes"]),
                        _orgs(db, first, last, col, subject),
                        {"threshold": threshold, "minutes": cfg[rule]["minutes"]},
                    )
                )
    if cfg["login_outside_hours"].get("enabled", 1):
        since, _ = window("login_outside_hours")
        sign_ins = db.scalars(
            select(AuditEvent).where(AuditEvent.occurred_at >= since, AuditEvent.action == Action.AUTH_LOGIN_SUCCEEDED)
        ).all()
        local_rules = _signin_hours(
            db, settings, {o for ev in sign_ins for o in (ev.actor_org_id, ev.target_org_id) if o}
        )
        operator_rule = (settings.timezone, settings.audit_alert_allowed_hours)
        for ev in sign_ins:
            zone, allowed = local_rules.get(ev.target_org_id or ev.actor_org_id or "", operator_rule)
            inside, local = hours.within(ev.occurred_at, zone, allowed)
            if not inside:
                found.append(
                    (
                        "login_outside_hours",
                        ev.actor_user_id or ev.target_id or "unknown",
                        f"seq:{ev.seq}",
                        1,
                        ev.seq,
                        ev.seq,
                        f"sign-in at {local:%H:%M} {zone}, outside {allowed.replace('-', ':00-')}:00",
                        sorted({o for o in (ev.actor_org_id, ev.target_org_id) if o}),
                        {"hour": local.hour, "timezone": zone, "utc_hour": ev.occurred_at.hour},
                    )
                )
    if cfg["high_severity_event"].get("enabled", 1):
        # Normally raised with the event itself (raise_for_event); this catches events written
        # without it (record_events_bulk, or before the flag was raised at once).
        since, _ = window("high_severity_event")
        for ev in db.scalars(
            select(AuditEvent).where(
                AuditEvent.occurred_at >= since,
                AuditEvent.severity == Severity.high,
                ~AuditEvent.action.like("audit.alert.%"),
            )
        ):
            found.append(_high_severity_flag(ev))
    raised = []
    for rule, subject, key, n, first, last, summary, orgs, details in found:
        exists = db.scalar(
            select(AuditAlert.id).where(
                AuditAlert.rule == rule, AuditAlert.subject == subject, AuditAlert.window_key == key
            )
        )
        if exists:
            continue
        alert = AuditAlert(
            rule=rule,
            subject=subject[:128],
            window_key=key,
            severity=SEVERITY[rule],
            raised_at=now,
            summary=summary[:300],
            count=n,
            first_seq=first,
            last_seq=last,
            org_ids=orgs,
            details=details,
        )
        try:
            with db.begin_nested():
                db.add(alert)
        except IntegrityError:
            continue  # another replica raised it a moment ago
        # run() delivers right after this transaction: no need to deliver at its commit as well.
        _record_and_enqueue(db, alert, at_commit=False)
        raised.append(alert)
    return raised


def _signin_hours(db: Session, settings, org_ids: set[str]) -> dict[str, tuple[str, str]]:
    """Each organisation's (time zone, sign-in hours), the operator's filling what it leaves unset; one query.

    A zone the zone database no longer holds (a tzdata update retired it) counts as unset rather than
    stopping every alert rule."""
    if not org_ids:
        return {}
    rows = db.execute(
        select(Organisation.id, Organisation.timezone, Organisation.signin_hours).where(Organisation.id.in_(org_ids))
    ).all()
    return {
        org_id: (zone if zone in hours.known() else settings.timezone, allowed or settings.audit_alert_allowed_hours)
        for org_id, zone, allowed in rows
    }


def _high_severity_flag(ev: AuditEvent) -> tuple:
    return (
        "high_severity_event",
        ev.target_id or ev.actor_user_id or "gateway",
        f"seq:{ev.seq}",
        1,
        ev.seq,
        ev.seq,
        f"{ev.action} ({Outcome(ev.outcome).value})",
        sorted({o for o in (ev.actor_org_id, ev.target_org_id) if o}),
        {"action": ev.action},
    )


def _record_and_enqueue(db: Session, alert: AuditAlert, *, at_commit: bool) -> None:
    orgs = alert.org_ids or []
    record_event(
        db,
        Action.AUDIT_ALERT_RAISED,
        actor=Actor.system(),
        severity=alert.severity,
        target_type="alert",
        target_id=str(alert.id),
        target_org_id=orgs[0] if len(orgs) == 1 else None,
        details={"rule": alert.rule, "count": alert.count, "first_seq": alert.first_seq, "last_seq": alert.last_seq},
    )
    enqueue(db, TOPIC, alert_payload(alert), at_commit=at_commit)
    _tell_auditors(db, alert)


def _tell_auditors(db: Session, alert: AuditAlert) -> None:
    """E-mail the auditors who can see the flag: those of each organisation it concerns, and the operator's."""
    concerned = set(alert.org_ids or [])
    rows = db.execute(
        select(User.id, User.org_id, Organisation.kind)
        .join(Organisation, User.org_id == Organisation.id)
        .where(User.role == Role.auditor, User.active.is_(True))
    ).all()
    by_org: dict[str, list[str]] = defaultdict(list)
    for user_id, org_id, kind in rows:
        if kind == OrgKind.operator or org_id in concerned:
            by_org[org_id].append(user_id)
    for org_id, user_ids in sorted(by_org.items()):
        notify(db, Kind.alert_raised, user_ids, org_id)


def raise_for_event(db: Session, event: AuditEvent) -> AuditAlert:
    """Flag a high-severity event in the transaction that integrates it; the flag leaves through the outbox
    when it commits.

    Called by the integrator for every high-severity event, so a new kind of
    high-severity event is flagged without anyone having to remember to.
    """
    rule, subject, key, n, first, last, summary, orgs, details = _high_severity_flag(event)
    alert = AuditAlert(
        rule=rule,
        subject=subject[:128],
        window_key=key,
        severity=SEVERITY[rule],
        raised_at=event.occurred_at,
        summary=summary[:300],
        count=n,
        first_seq=first,
        last_seq=last,
        org_ids=orgs,
        details=details,
    )
    db.add(alert)
    # The alert's id names it in its own event and message. The sequence number in its key was
    # handed out in this very transaction, under the append lock, so no other flag can hold this key.
    db.flush()
    _record_and_enqueue(db, alert, at_commit=True)
    return alert


def alert_payload(alert: AuditAlert) -> dict:
    return {
        "id": alert.id,
        "rule": alert.rule,
        "severity": alert.severity.value,
        "subject": alert.subject,
        "summary": alert.summary,
        "count": alert.count,
        "first_seq": alert.first_seq,
        "last_seq": alert.last_seq,
        "org_ids": alert.org_ids,
        "raised_at": alert.raised_at.isoformat(),
        "source": "phigate",
    }


def send_to_sink(sink: str, payload: dict) -> None:
    """Send one flag to the configured sink; raises OSError when it did not arrive."""
    body = json.dumps(payload, separators=(",", ":"))
    if sink.startswith("file://"):
        with open(sink.removeprefix("file://"), "a", encoding="utf-8") as fh:
            fh.write(body + "\n")
    elif sink.startswith(("http://", "https://")):
        headers = {"Content-Type": "application/json"}
        request = urllib.request.Request(sink, data=body.encode(), method="POST", headers=headers)  # noqa: S310 - http(s) checked above
        with urllib.request.urlopen(request, timeout=SINK_TIMEOUT_SECONDS) as response:  # noqa: S310 - operator URL
            if response.status >= 300:
                raise OSError(f"HTTP {response.status}")
    else:
        raise OSError("unsupported sink scheme")


def _settled(db: Session, payload: dict, delivery: Delivery) -> None:
    # The dashboard shows, beside each flag, whether it reached the sink.
    alert = db.get(AuditAlert, payload["id"])
    if alert is not None:
        alert.delivered_at, alert.delivery_error = delivery.delivered_at, delivery.error


def channel(components) -> Channel:
    """The outbox channel of alerts: PHIGATE_AUDIT_ALERT_SINK, read at each send (it may be reconfigured)."""
    return Channel(
        send=lambda payload: send_to_sink(components.settings.audit_alert_sink, payload),
        settled=_settled,
        ready=lambda: bool(components.settings.audit_alert_sink),
    )


def run(components, now: datetime | None = None) -> tuple[int, int]:
    """Evaluate the rules, then deliver what is waiting in the outbox; returns (raised, delivered)."""
    catch_up(components.db)  # the rules count every event committed before they run
    with components.db.transaction() as db:
        raised = evaluate(db, components.settings, now)
    return len(raised), components.outbox.deliver()


# Newest first.
ORDER = paging.Order("alerts", (AuditAlert.id,), descending=True)


def _concerns(org_id: str | None) -> ColumnElement[bool]:
    """SQL: the alert names `org_id` among its organisations (None: every alert, for operator auditors).

    `org_ids` is a JSON array of organisation ids, which hold no quote or backslash, so its text contains
    `"<id>"` exactly when the id is a member: one test that SQLite and PostgreSQL both run inside the query,
    before its limit (filtering after the limit would hide a practice's alerts behind other practices').
    """
    if org_id is None:
        return true()
    return cast(AuditAlert.org_ids, Text).contains(f'"{org_id}"', autoescape=True)


def visible_alerts(
    db: Session, scope, limit: int = paging.DEFAULT_LIMIT, open_only: bool = False, cursor: str | None = None
) -> Page[AuditAlert]:
    """One page of the alerts this auditor may see, scoped in SQL, newest first."""
    query = select(AuditAlert).where(_concerns(scope.org_id))
    if open_only:
        query = query.where(AuditAlert.acknowledged_at.is_(None))
    return ORDER.page(db, query, limit=limit, cursor=cursor)


def acknowledge(db: Session, scope, alert_id: int, principal) -> datetime:
    """Mark an alert seen (once; again is a no-op) and say when it was; NotFound for an alert outside the auditor's scope."""
    alert = db.get(AuditAlert, alert_id)
    # An alert names the organisations it concerns: another practice's auditor gets the same answer as a missing id.
    if alert is None or (scope.org_id is not None and scope.org_id not in (alert.org_ids or [])):
        raise NotFound("No such alert.", code="alert_not_found")
    acknowledged_at = alert.acknowledged_at
    if acknowledged_at is None:
        acknowledged_at = clock.now()
        alert.acknowledged_at, alert.acknowledged_by = acknowledged_at, principal.user.id
        record_event(
            db,
            Action.AUDIT_ALERT_ACKNOWLEDGED,
            actor=principal.actor,
            target_type="alert",
            target_id=str(alert.id),
            target_org_id=scope.org_id,
            details={"rule": alert.rule},
        )
    return acknowledged_at


def install(components) -> None:
    """Wire alerts into a process (the app, the CLI): the outbox channel that sends them, and a flag
    raised at once for every high-severity event. Called by the adapters that compose a process,
    so the core never imports the auditor feature."""
    from gateway.audit.service import on_high_severity

    components.outbox.channels[TOPIC] = channel(components)
    on_high_severity(raise_for_event)
