"""Who is told of what: notices recorded in the action's transaction, sent at once or in a daily digest.

`notify()` is called by the domain that knows the event (transfers, auditor alerts), in
the event's own transaction: a notice of an action that rolls back never exists.  A
notice to be sent at once becomes an outbox message in that same transaction, delivered
after the commit in a thread of the outbox (never in the request) and retried by the
outbox job until the server takes it.  Daily notices wait for `send_digests()`, which
folds each user's into one message.  Each attempt is audited when it is settled.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import Outcome
from gateway.audit.service import Actor, record_event
from gateway.errors import InvalidInput
from gateway.notifications import mail
from gateway.notifications.messages import Item, compose
from gateway.notifications.models import Cadence, Kind, Notification, NotificationPreference, Topic
from gateway.orgs.service import names
from gateway.outbox import Channel, Delivery, Refused, enqueue
from gateway.users.models import Role, User

TOPIC = "email"  # the outbox channel

# The topics each role may be told of, in the order the account page lists them.
ROLE_TOPICS: dict[Role, tuple[Topic, ...]] = {
    Role.practice_staff: (Topic.sent, Topic.received),
    Role.practice_approver: (Topic.approvals, Topic.sent, Topic.received),
    Role.biller: (Topic.received,),
    Role.auditor: (Topic.alerts,),
    Role.admin: (),
}
# An approver cannot silence approval requests: transfers would wait unseen.
MANDATORY = {Topic.approvals}


# -- preferences ----------------------------------------------------------------------


def preferences(db: Session, user: User) -> dict[Topic, Cadence]:
    """The user's cadence for each topic of their role (immediately where they chose nothing)."""
    chosen = {
        p.topic: p.cadence
        for p in db.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    }
    return {topic: _effective(topic, chosen.get(topic)) for topic in ROLE_TOPICS[user.role]}


def _effective(topic: Topic, cadence: Cadence | None) -> Cadence:
    if cadence is None or (cadence == Cadence.off and topic in MANDATORY):
        return Cadence.immediately
    return cadence


def set_preferences(db: Session, user: User, choices: dict[str, str], actor: Actor) -> dict[Topic, Cadence]:
    """Store the user's cadences (topic name -> cadence name) for the topics of their role; audited."""
    allowed = ROLE_TOPICS[user.role]
    wanted: dict[Topic, Cadence] = {}
    for name, value in choices.items():
        if name not in Topic.__members__ or Topic(name) not in allowed:
            raise InvalidInput("There is no such notification setting for your role.", code="invalid_topic")
        if value not in Cadence.__members__:
            raise InvalidInput("Choose immediately, daily digest or off.", code="invalid_cadence")
        topic, cadence = Topic(name), Cadence(value)
        if cadence == Cadence.off and topic in MANDATORY:
            raise InvalidInput(
                "Approval requests cannot be switched off: choose immediately or daily digest.",
                code="notification_mandatory",
            )
        wanted[topic] = cadence
    now = clock.now()
    current = {
        p.topic: p for p in db.scalars(select(NotificationPreference).where(NotificationPreference.user_id == user.id))
    }
    changed = {}
    for topic, cadence in wanted.items():
        row = current.get(topic)
        if row is None:
            db.add(NotificationPreference(user_id=user.id, topic=topic, cadence=cadence, updated_at=now))
        elif row.cadence != cadence:
            row.cadence, row.updated_at = cadence, now
        else:
            continue
        changed[topic.value] = cadence.value
    if changed:
        record_event(
            db,
            Action.NOTIFICATION_PREFERENCES_CHANGED,
            actor=actor,
            target_type="user",
            target_id=user.id,
            target_org_id=user.org_id,
            details=dict(sorted(changed.items())),
        )
    db.flush()
    return preferences(db, user)


# -- notices ----------------------------------------------------------------------------


def notify(
    db: Session,
    kind: Kind,
    user_ids: Iterable[str],
    org_id: str,
    *,
    count: int = 1,
    dedupe_key: str | None = None,
) -> list[Notification]:
    """Tell each of these users (active ones) of `count` `kind` events concerning organisation `org_id`.

    Recorded in the caller's transaction. With `dedupe_key`, a user already told under
    that key is not told again (a reminder, the first download by a vendor).
    """
    ids = sorted(set(user_ids))
    if not ids:
        return []
    users = list(db.scalars(select(User).where(User.id.in_(ids), User.active.is_(True)).order_by(User.id)))
    chosen = {
        (p.user_id, p.topic): p.cadence
        for p in db.scalars(
            select(NotificationPreference).where(
                NotificationPreference.user_id.in_(ids), NotificationPreference.topic == kind.topic
            )
        )
    }
    now = clock.now()
    made = []
    for user in users:
        if kind.topic not in ROLE_TOPICS[user.role]:
            continue  # the role changed since the event's recipients were chosen
        cadence = _effective(kind.topic, chosen.get((user.id, kind.topic)))
        if cadence == Cadence.off:
            continue
        if dedupe_key is not None and db.scalar(
            select(Notification.id).where(Notification.user_id == user.id, Notification.dedupe_key == dedupe_key)
        ):
            continue
        notice = Notification(
            user_id=user.id,
            kind=kind,
            org_id=org_id,
            count=count,
            cadence=cadence,
            created_at=now,
            dedupe_key=dedupe_key,
        )
        try:
            with db.begin_nested():
                db.add(notice)
        except IntegrityError:
            continue  # told under this key a moment ago by another request
        if cadence == Cadence.immediately:
            _queue(db, user, [notice], digest=False)
        made.append(notice)
    return made


def _queue(db: Session, user: User, notices: list[Notification], *, digest: bool) -> None:
    """One outbox message to `user` carrying `notices`, sent after the commit."""
    orgs = names(db, {n.org_id for n in notices})
    totals: dict[tuple[Kind, str], int] = defaultdict(int)
    for n in notices:
        totals[(Kind(n.kind), n.org_id)] += n.count
    items = [
        {"kind": kind.value, "org": orgs.get(org_id, "your partner"), "count": count}
        for (kind, org_id), count in sorted(totals.items(), key=lambda x: (list(Kind).index(x[0][0]), x[0][1]))
    ]
    entry = enqueue(
        db,
        TOPIC,
        {
            "to": user.email,
            "user_id": user.id,
            "org_id": user.org_id,
            "digest": digest,
            "items": items,
            "notifications": [n.id for n in notices],
            # The same id on every attempt: a server or reader that saw it already can drop a repeat.
            "message_id": f"<{uuid.uuid4().hex}@phigate>",
        },
    )
    db.flush()
    for n in notices:
        n.outbox_id = entry.id


def digest_cutoff(now: datetime, hour: int) -> datetime:
    """The latest digest time at or before `now`: today's at `hour` UTC, or yesterday's before it."""
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return today if now >= today else today - timedelta(days=1)


def send_digests(db: Session, hour: int, now: datetime | None = None) -> int:
    """Fold each user's daily notices made before the latest digest time into one message; returns how many."""
    cutoff = digest_cutoff(now or clock.now(), hour)
    waiting = list(
        db.scalars(
            select(Notification)
            .where(
                Notification.cadence == Cadence.daily,
                Notification.outbox_id.is_(None),
                Notification.email_error.is_(None),
                Notification.created_at < cutoff,
            )
            .order_by(Notification.user_id, Notification.id)
        )
    )
    by_user: dict[str, list[Notification]] = defaultdict(list)
    for n in waiting:
        by_user[n.user_id].append(n)
    users = {u.id: u for u in db.scalars(select(User).where(User.id.in_(list(by_user))))}
    sent = 0
    for user_id, notices in by_user.items():
        user = users[user_id]
        if not user.active:
            # A disabled account is told nothing; its notices are settled as not sent.
            for n in notices:
                n.email_error = "account disabled"
            continue
        _queue(db, user, notices, digest=True)
        sent += 1
    return sent


# -- the outbox channel -----------------------------------------------------------------


def message(settings, payload: dict) -> EmailMessage:
    """The e-mail of one outbox message: sender, recipient, subject and a plain-text body."""
    items = [Item(Kind(i["kind"]), i["org"], int(i["count"])) for i in payload["items"]]
    subject, body = compose(items, settings.effective_public_url, digest=bool(payload.get("digest")))
    msg = EmailMessage()
    msg["From"] = settings.effective_smtp_from
    msg["To"] = payload["to"]
    msg["Subject"] = subject
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = payload["message_id"]
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content(body)
    return msg


def settle(db: Session, payload: dict, delivery: Delivery) -> None:
    """Record one attempt: an audit event, and on each notice whether it left."""
    kinds = sorted({i["kind"] for i in payload["items"]})
    count = sum(int(i["count"]) for i in payload["items"])
    if delivery.delivered_at is not None:
        action, outcome = Action.NOTIFICATION_EMAIL_SENT, Outcome.success
    elif delivery.refused:
        action, outcome = Action.NOTIFICATION_EMAIL_REFUSED, Outcome.failure
    else:
        action, outcome = Action.NOTIFICATION_EMAIL_FAILED, Outcome.failure
    details: dict = {"kinds": kinds, "count": count, "attempt": delivery.attempts, "digest": bool(payload["digest"])}
    if delivery.error:
        details["error"] = delivery.error[:200]
    record_event(
        db,
        action,
        actor=Actor.system(),
        outcome=outcome,
        target_type="user",
        target_id=payload["user_id"],
        target_org_id=payload["org_id"],
        details=details,
    )
    db.execute(
        update(Notification)
        .where(Notification.id.in_(payload["notifications"]))
        .values(emailed_at=delivery.delivered_at, email_error=delivery.error)
    )


def channel(components) -> Channel:
    """E-mail through PHIGATE_SMTP_URL, read at each send; messages wait while it is unset."""

    def send(payload: dict) -> None:
        settings = components.settings
        try:
            built = message(settings, payload)
        except ValueError:
            # An address with a line break (header injection) or otherwise unusable: never sendable.
            raise Refused("the message cannot be built for this recipient address") from None
        mail.send(settings, built)

    return Channel(send=send, settled=settle, ready=lambda: bool(components.settings.smtp_url), background=True)


def install(components) -> None:
    """Wire e-mail into a process's outbox (the app, the CLI, the tests compose it)."""
    components.outbox.channels[TOPIC] = channel(components)


def run(components, now: datetime | None = None) -> int:
    """The digest step of the scheduled job: queue what is due (sent when this commits)."""
    with components.db.transaction() as db:
        return send_digests(db, components.settings.notify_digest_hour, now)
