"""Alert rules over recent events, stored flags, and delivery to a SIEM sink.

Rules (thresholds overridable with PHIGATE_AUDIT_ALERT_RULES, JSON):

* download_burst         one user completes >= count downloads within `minutes`
* denied_attempts        one user (or address, when anonymous) is denied >= count times within `minutes`
* failed_logins_account  >= count failed sign-in steps against one account within `minutes`
* failed_logins_address  >= count failed sign-in steps from one address within `minutes`
* login_outside_hours    a successful sign-in outside PHIGATE_AUDIT_ALERT_ALLOWED_HOURS (UTC)
* high_severity_event    any high-severity event: emergency access opened, a stored file failing its
                         integrity check, an account locked, an object missing from storage, a cloned
                         passkey (signature counter going backwards), a user's passkeys reset

A flag is unique per (rule, subject, window), so evaluating again does not
repeat it.  Raising a flag is itself an audit event.  Flags are delivered to
PHIGATE_AUDIT_ALERT_SINK: an http(s) webhook (JSON POST) or file:///path
(one JSON object per line); failed deliveries are retried on the next run.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.models import AuditAlert, AuditEvent, Outcome, Severity
from gateway.audit.service import Actor, record_event

log = logging.getLogger("phigate.audit")

LOGIN_FAILURES = ("auth.login.failed", "auth.mfa.failed", "auth.reauth.failed")
DEFAULT_RULES: dict[str, dict[str, int]] = {
    "download_burst": {"count": 20, "minutes": 10},
    "denied_attempts": {"count": 5, "minutes": 15},
    "failed_logins_account": {"count": 5, "minutes": 15},
    "failed_logins_address": {"count": 20, "minutes": 15},
    "login_outside_hours": {"enabled": 1, "minutes": 60 * 24},
    "high_severity_event": {"enabled": 1, "minutes": 60 * 24},
}
SEVERITY = {"download_burst": Severity.high, "denied_attempts": Severity.warning,
            "failed_logins_account": Severity.warning, "failed_logins_address": Severity.high,
            "login_outside_hours": Severity.warning, "high_severity_event": Severity.high}


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
        .group_by(subject_col)).all()


def _orgs(db: Session, first: int, last: int, subject_col, subject: str) -> list[str]:
    rows = db.execute(select(AuditEvent.actor_org_id, AuditEvent.target_org_id)
                      .where(AuditEvent.seq.between(first, last), subject_col == subject).limit(200)).all()
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
        ("download_burst", AuditEvent.actor_user_id, (AuditEvent.action == "transfer.download.completed",
                                                      AuditEvent.outcome == Outcome.success),
         "{n} downloads by one user within {m} minutes"),
        ("denied_attempts", AuditEvent.actor_user_id, (AuditEvent.outcome == Outcome.denied,),
         "{n} denied attempts by one user within {m} minutes"),
        ("failed_logins_account", AuditEvent.target_id, (AuditEvent.action.in_(LOGIN_FAILURES),
                                                         AuditEvent.outcome == Outcome.failure),
         "{n} failed sign-in steps against one account within {m} minutes"),
        ("failed_logins_address", AuditEvent.ip, (AuditEvent.action.in_(LOGIN_FAILURES),
                                                  AuditEvent.outcome.in_([Outcome.failure, Outcome.denied])),
         "{n} failed sign-in steps from one address within {m} minutes"),
    )
    for rule, col, conditions, text in counted:
        since, key = window(rule)
        threshold = cfg[rule]["count"]
        for subject, n, first, last in _group(db, col, since, *conditions):
            if n >= threshold:
                found.append((rule, str(subject), key, n, first, last,
                              text.format(n=n, m=cfg[rule]["minutes"]), _orgs(db, first, last, col, subject),
                              {"threshold": threshold, "minutes": cfg[rule]["minutes"]}))
    if cfg["login_outside_hours"].get("enabled", 1):
        start, end = (int(h) for h in settings.audit_alert_allowed_hours.split("-"))
        since, _ = window("login_outside_hours")
        for ev in db.scalars(select(AuditEvent).where(AuditEvent.occurred_at >= since,
                                                      AuditEvent.action == "auth.login.succeeded")):
            if not start <= ev.occurred_at.hour < end:
                found.append(("login_outside_hours", ev.actor_user_id or ev.target_id or "unknown", f"seq:{ev.seq}",
                              1, ev.seq, ev.seq, f"sign-in at {ev.occurred_at:%H:%M} UTC, outside "
                              f"{start:02d}:00-{end:02d}:00", sorted({o for o in (ev.actor_org_id, ev.target_org_id)
                                                                      if o}), {"hour": ev.occurred_at.hour}))
    if cfg["high_severity_event"].get("enabled", 1):
        since, _ = window("high_severity_event")
        for ev in db.scalars(select(AuditEvent).where(AuditEvent.occurred_at >= since,
                                                      AuditEvent.severity == Severity.high,
                                                      ~AuditEvent.action.like("audit.alert.%"))):
            found.append(("high_severity_event", ev.target_id or ev.actor_user_id or "gateway", f"seq:{ev.seq}", 1,
                          ev.seq, ev.seq, f"{ev.action} ({ev.outcome.value})",
                          sorted({o for o in (ev.actor_org_id, ev.target_org_id) if o}), {"action": ev.action}))
    raised = []
    for rule, subject, key, n, first, last, summary, orgs, details in found:
        exists = db.scalar(select(AuditAlert.id).where(AuditAlert.rule == rule, AuditAlert.subject == subject,
                                                       AuditAlert.window_key == key))
        if exists:
            continue
        alert = AuditAlert(rule=rule, subject=subject[:128], window_key=key, severity=SEVERITY[rule], raised_at=now,
                           summary=summary[:300], count=n, first_seq=first, last_seq=last, org_ids=orgs,
                           details=details)
        try:
            with db.begin_nested():
                db.add(alert)
        except IntegrityError:
            continue  # another replica raised it a moment ago
        record_event(db, "audit.alert.raised", actor=Actor.system(), severity=SEVERITY[rule], target_type="alert",
                     target_id=str(alert.id), target_org_id=orgs[0] if len(orgs) == 1 else None,
                     details={"rule": rule, "count": n, "first_seq": first, "last_seq": last})
        raised.append(alert)
    return raised


def alert_payload(alert: AuditAlert) -> dict:
    return {"id": alert.id, "rule": alert.rule, "severity": alert.severity.value, "subject": alert.subject,
            "summary": alert.summary, "count": alert.count, "first_seq": alert.first_seq, "last_seq": alert.last_seq,
            "org_ids": alert.org_ids, "raised_at": alert.raised_at.isoformat(), "source": "phigate"}


def deliver(db: Session, sink: str, now: datetime | None = None) -> int:
    """Send undelivered flags to the sink; returns how many were delivered."""
    if not sink:
        return 0
    delivered = 0
    for alert in db.scalars(select(AuditAlert).where(AuditAlert.delivered_at.is_(None)).order_by(AuditAlert.id)
                            .limit(500)):
        body = json.dumps(alert_payload(alert), separators=(",", ":"))
        try:
            if sink.startswith("file://"):
                with open(sink.removeprefix("file://"), "a", encoding="utf-8") as fh:
                    fh.write(body + "\n")
            elif sink.startswith(("http://", "https://")):
                request = urllib.request.Request(sink, data=body.encode(), method="POST",
                                                 headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - operator-set URL
                    if response.status >= 300:
                        raise OSError(f"HTTP {response.status}")
            else:
                raise OSError("unsupported sink scheme")
        except OSError as exc:
            alert.delivery_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("alert %s not delivered: %s", alert.id, type(exc).__name__)
            continue
        alert.delivered_at = now or clock.now()
        alert.delivery_error = None
        delivered += 1
    return delivered


def run(components, now: datetime | None = None) -> tuple[int, int]:
    """Evaluate the rules, then deliver; returns (raised, delivered)."""
    with components.db.transaction() as db:
        raised = evaluate(db, components.settings, now)
    with components.db.transaction() as db:
        delivered = deliver(db, components.settings.audit_alert_sink, now)
    return len(raised), delivered


def visible_alerts(db: Session, scope, limit: int = 50, open_only: bool = False) -> list[AuditAlert]:
    query = select(AuditAlert).order_by(AuditAlert.id.desc()).limit(limit * 4 if scope.org_id else limit)
    if open_only:
        query = query.where(AuditAlert.acknowledged_at.is_(None))
    alerts = list(db.scalars(query))
    if scope.org_id is not None:
        alerts = [a for a in alerts if scope.org_id in (a.org_ids or [])]
    return alerts[:limit]
