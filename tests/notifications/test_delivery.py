"""E-mail leaves through the outbox to a real SMTP server on loopback: STARTTLS or TLS with a login, after the
commit and never inside the request, each attempt audited; a server that refuses or is down loses nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from gateway.notifications.models import Notification
from gateway.outbox import LEASE, OutboxEntry
from tests.transfers.conftest import events
from tests.transfers.test_gates import sent


def _email(components) -> list[OutboxEntry]:
    with components.db.snapshot() as db:
        return list(db.scalars(select(OutboxEntry).where(OutboxEntry.topic == "email").order_by(OutboxEntry.id)))


def _retry(components) -> int:
    """What the scheduled outbox job does: deliver whatever is waiting."""
    from gateway.jobs import serve_jobs

    return next(job for job in serve_jobs(components) if job.name == "outbox").run()


def _settled(components) -> None:
    components.outbox.wait()


def _user_email(user) -> str:
    return f"{user.username}@example.invalid"


def test_an_upload_mails_the_approver_after_the_commit_over_starttls_with_a_login(
    party, session_for, components, mailer, db
):
    staff = session_for(party.staff)
    sent(staff, party)
    _settled(components)

    [mail] = mailer.mailbox.received
    assert mail.rcpt_tos == [_user_email(party.approver)]
    assert mail.tls and mail.login == "phigate-mailer"  # upgraded before the password was sent
    msg = mail.message
    assert msg["From"] == "phigate@gateway.example" and msg["Auto-Submitted"] == "auto-generated"
    assert msg["Subject"] == f"PHI Gate: 1 transfer to {party.vendor.name} awaits your approval"
    assert "Sign in to see the details: https://gateway.example/transfers/approvals" in mail.body
    [entry] = _email(components)
    assert entry.delivered_at is not None and entry.attempts == 1 and entry.payload["message_id"] == msg["Message-ID"]
    [event] = events(db, "notification.email.sent")
    assert event.target_id == party.approver.id and event.target_org_id == party.practice.id
    assert event.details["kinds"] == ["approval_requested"] and event.details["attempt"] == 1
    assert events(db, "notification.email.failed") == []
    with components.db.snapshot() as s:
        [notice] = s.scalars(select(Notification)).all()
    assert notice.emailed_at is not None and notice.outbox_id == entry.id
    # The retry job finds nothing left: no second copy.
    assert _retry(components) == 0 and len(mailer.mailbox.received) == 1


def test_smtps_speaks_tls_from_the_first_byte(party, session_for, components, mail_server, use_mail):
    server = mail_server("tls")
    use_mail(server)
    sent(session_for(party.staff), party)
    _settled(components)
    [mail] = server.mailbox.received
    assert mail.tls and mail.login == "phigate-mailer" and mail.rcpt_tos == [_user_email(party.approver)]


def test_a_server_that_does_not_offer_starttls_gets_nothing_in_clear(
    party, session_for, components, mail_server, use_mail, db
):
    plain = mail_server("plain")
    use_mail(plain)
    sent(session_for(party.staff), party)
    _settled(components)
    assert plain.mailbox.received == []
    [entry] = _email(components)
    assert entry.delivered_at is None and "does not offer STARTTLS" in entry.last_error
    [failed] = events(db, "notification.email.failed")
    assert "does not offer STARTTLS" in failed.details["error"]


def test_a_server_that_is_down_keeps_the_mail_for_the_retry_job(
    party, session_for, components, mail_server, use_mail, db
):
    from tests.support.smtp import free_port

    port = free_port()
    use_mail(f"smtp://phigate-mailer@localhost:{port}")  # nothing listens there yet
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id)
    assert r.status_code == 201  # the request never waits on, nor fails with, the mail server
    _settled(components)
    [entry] = _email(components)
    assert entry.delivered_at is None and entry.attempts == 1 and entry.claimed_until is None
    assert "cannot reach the SMTP server" in entry.last_error
    [failed] = events(db, "notification.email.failed")
    assert failed.target_id == party.approver.id and failed.details["attempt"] == 1
    assert _retry(components) == 0  # still down: tried again, kept
    assert _email(components)[0].attempts == 2 and len(events(db, "notification.email.failed")) == 2

    server = mail_server(port=port)  # the server comes back
    assert _retry(components) == 1
    [mail] = server.mailbox.received
    assert mail.rcpt_tos == [_user_email(party.approver)]
    assert events(db, "notification.email.sent")[0].details["attempt"] == 3
    assert _retry(components) == 0 and len(server.mailbox.received) == 1


def test_a_refusal_for_one_recipient_is_kept_and_not_retried_while_others_go(
    party, session_for, components, mailer, db
):
    mailer.mailbox.rcpt_answers[_user_email(party.approver)] = "550 5.1.1 mailbox unavailable"
    staff = session_for(party.staff)
    tid = sent(staff, party)
    _settled(components)
    [refused] = _email(components)
    assert refused.refused_at is not None and refused.delivered_at is None
    assert refused.last_error == "Refused: SMTP 550 for the recipient"  # the server's words are not kept
    [event] = events(db, "notification.email.refused")
    assert event.target_id == party.approver.id and event.details["error"] == "Refused: SMTP 550 for the recipient"

    # The channel is not down: the next message (to the sender, once approved) goes.
    approver = session_for(party.approver)
    assert approver.approve(tid).status_code == 200
    _settled(components)
    assert {r.rcpt_tos[0] for r in mailer.mailbox.received} == {
        _user_email(party.staff),
        _user_email(party.biller),
        _user_email(party.biller2),
    }
    before = len(mailer.mailbox.received)
    assert _retry(components) == 0 and len(mailer.mailbox.received) == before  # the refused one is never resent
    assert len(events(db, "notification.email.refused")) == 1


def test_a_server_refusing_every_message_at_data_settles_them_as_refused(party, session_for, components, mailer, db):
    mailer.mailbox.data_answer = "554 5.7.1 message refused"
    sent(session_for(party.staff), party)
    _settled(components)
    [entry] = _email(components)
    assert entry.refused_at is not None and entry.last_error == "Refused: SMTP 554 for the message"
    assert mailer.mailbox.received == [] and len(events(db, "notification.email.refused")) == 1


def test_a_busy_server_4xx_is_tried_again(party, session_for, components, mailer, db):
    mailer.mailbox.rcpt_answers[_user_email(party.approver)] = "451 4.3.0 try again later"
    sent(session_for(party.staff), party)
    _settled(components)
    [entry] = _email(components)
    assert entry.refused_at is None and entry.delivered_at is None and "SMTP 451" in entry.last_error
    del mailer.mailbox.rcpt_answers[_user_email(party.approver)]
    assert _retry(components) == 1 and len(mailer.mailbox.received) == 1


def test_a_wrong_password_keeps_the_mail(party, session_for, components, mailer, db):
    from pydantic import SecretStr

    components.settings.smtp_password = SecretStr("not the password")
    sent(session_for(party.staff), party)
    _settled(components)
    [entry] = _email(components)
    # aiosmtpd answers 535 and then hangs up on the client's next mechanism: either way, kept.
    assert entry.delivered_at is None and entry.last_error.startswith("MailUnavailable: ")
    assert "not the password" not in entry.last_error
    components.settings.smtp_password = SecretStr(__import__("tests.support.smtp").support.smtp.PASSWORD)
    assert _retry(components) == 1 and len(mailer.mailbox.received) == 1


def test_a_message_claimed_by_a_process_that_died_is_sent_after_its_lease(
    party, session_for, components, settings, mailer, fake_clock
):
    """Never lost on restart: a process claims a message and dies before sending; another process sends it."""
    from gateway.components import Components
    from gateway.notifications import service as notifications

    components.settings.smtp_url = ""  # this process cannot send: the message waits, unclaimed
    sent(session_for(party.staff), party)
    [entry] = _email(components)
    with components.db.transaction() as db:  # the dying process's claim
        db.get_one(OutboxEntry, entry.id).claimed_until = fake_clock.current + LEASE

    restarted = Components(components.settings.model_copy(update={"smtp_url": mailer.url}))
    notifications.install(restarted)
    try:
        assert restarted.outbox.deliver() == 0  # still leased to the dead process
        fake_clock.advance(seconds=LEASE.total_seconds() + 1)
        assert restarted.outbox.deliver() == 1
    finally:
        restarted.close()
    [mail] = mailer.mailbox.received
    assert mail.rcpt_tos == [_user_email(party.approver)]


def test_without_smtp_url_mail_waits_untried(party, session_for, components, mailer):
    components.settings.smtp_url = ""
    sent(session_for(party.staff), party)
    _settled(components)
    [entry] = _email(components)
    assert entry.attempts == 0 and entry.delivered_at is None
    components.settings.smtp_url = mailer.url
    assert _retry(components) == 1 and len(mailer.mailbox.received) == 1


def test_the_lease_outlasts_any_smtp_wait():
    """A slow send must not lose its claim to the retry job of another replica mid-conversation."""
    from annotated_types import Le

    from gateway.config import Settings

    [longest] = [m.le for m in Settings.model_fields["smtp_timeout"].metadata if isinstance(m, Le)]
    # connect, EHLO, STARTTLS, EHLO, AUTH, MAIL, RCPT, DATA, QUIT: each may wait the timeout.
    assert timedelta(seconds=longest * 9) < LEASE


def test_a_savepoint_does_not_send_the_messages_of_a_transaction_still_open(components):
    """SQLAlchemy reports a released savepoint as a commit: messages must wait for the real one."""
    from gateway.outbox import Channel, enqueue

    seen: list[dict] = []
    components.outbox.channels["probe"] = Channel(send=seen.append)
    with components.db.transaction() as db:
        enqueue(db, "probe", {"n": 1})
        with db.begin_nested():
            enqueue(db, "probe", {"n": 2})
        with db.begin_nested():
            pass
        assert seen == []  # nothing leaves before the commit
    assert sorted(p["n"] for p in seen) == [1, 2]


def test_two_replicas_retrying_at_once_send_each_message_once(party, session_for, components, mailer):
    """Every replica runs the outbox job's code; a message is claimed by one of them only."""
    import threading

    from gateway.components import Components
    from gateway.notifications import service as notifications

    components.settings.smtp_url = ""  # let messages pile up, untried
    staff = session_for(party.staff)
    for _ in range(6):
        sent(staff, party)
    assert len(_email(components)) == 6

    replicas = []
    for _ in range(2):
        replica = Components(components.settings.model_copy(update={"smtp_url": mailer.url}))
        notifications.install(replica)
        replicas.append(replica)
    counts: list[int] = []
    start = threading.Barrier(2)

    def run(replica):
        start.wait()
        counts.append(replica.outbox.deliver())

    try:
        threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for r in replicas:
            r.close()
    ids = [m.message["Message-ID"] for m in mailer.mailbox.received]
    assert sum(counts) == 6 and len(ids) == 6 and len(set(ids)) == 6
    assert all(e.delivered_at is not None and e.attempts == 1 for e in _email(components))


def test_an_address_that_would_inject_a_header_is_refused_and_the_rest_go(party, session_for, components, mailer, db):
    from sqlalchemy import update

    from gateway.users.models import User

    with components.db.transaction() as s:
        s.execute(
            update(User)
            .where(User.id == party.approver.id)
            .values(email="approver@example.invalid\r\nBcc: someone@example.invalid")
        )
    staff, admin = session_for(party.staff), session_for(party.admin)
    tid = sent(staff, party)
    _settled(components)
    [entry] = _email(components)
    assert entry.refused_at is not None and "cannot be built" in entry.last_error
    assert mailer.mailbox.received == []
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access",
        json={"hours": 2, "reason": "approver on leave", "code": admin.fresh_code()},
    )
    assert r.status_code == 200
    _settled(components)
    assert {m.rcpt_tos[0] for m in mailer.mailbox.received} == {
        _user_email(party.biller),
        _user_email(party.biller2),
        _user_email(party.auditor),
    }
    assert all("someone@" not in m.raw.decode() for m in mailer.mailbox.received)
