"""Who is told of what, at the cadence each chose, and that no message ever carries a file name, purpose or note."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from gateway.notifications.models import Notification
from tests.transfers.conftest import events
from tests.transfers.test_gates import sent

# Synthetic values that would be PHI in real life: none may appear in any message.
NAME = "Doe-Jane-MRN-4417.pdf"
PURPOSE = "CLAIM-JANEDOE-4417"
NOTE = "Jane Doe, DOB 1970-01-01, appeal for knee MRI"
REASON = "wrong patient Jane Doe"


def _addr(user) -> str:
    return f"{user.username}@example.invalid"


def _upload(staff, party, **extra):
    from urllib.parse import quote

    r = staff.upload(party.vendor.id, name=NAME, purpose=PURPOSE, **{"X-Note": quote(NOTE)}, **extra)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _inboxes(mailer) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for mail in mailer.mailbox.received:
        out.setdefault(mail.rcpt_tos[0], []).append(str(mail.message["Subject"]).strip())
    return out


def test_a_day_of_transfers_mails_exactly_who_should_hear_and_nothing_of_the_content(
    party, session_for, components, mailer, fake_clock, db
):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    vendor, practice = party.vendor.name, party.practice.name

    # Sent, approved for one named biller, downloaded; a second one rejected; a third revoked.
    tid = _upload(staff, party, billers=[party.biller.id])
    assert approver.approve(tid).status_code == 200
    fid = staff.client.get(f"/api/v1/transfers/{tid}").json()["files"][0]["id"]
    assert biller.download(tid, fid).status_code == 200
    assert biller.download(tid, fid).status_code == 200  # a second download tells nobody again
    rejected = _upload(staff, party)
    assert approver.client.post(f"/api/v1/transfers/{rejected}/reject", json={"reason": REASON}).status_code == 200
    revoked = _upload(staff, party)
    assert approver.approve(revoked).status_code == 200
    r = approver.client.post(f"/api/v1/transfers/{revoked}/revoke", json={"reason": REASON})
    assert r.status_code == 200
    # The revoked one's billers were told it was available; an emergency release raises an alert.
    emergency = _upload(staff, party)
    admin = session_for(party.admin)
    r = admin.client.post(
        f"/api/v1/transfers/{emergency}/emergency-access",
        json={"hours": 2, "reason": REASON, "code": admin.fresh_code()},
    )
    assert r.status_code == 200
    # Access to the first one ends within a day: its biller already has every file, the reminder skips them.
    components.outbox.wait()

    boxes = _inboxes(mailer)
    assert boxes[_addr(party.approver)] == [f"PHI Gate: 1 transfer to {vendor} awaits your approval"] * 4
    assert sorted(boxes[_addr(party.staff)]) == sorted(
        [
            f"PHI Gate: 1 transfer you sent to {vendor} was approved",
            f"PHI Gate: {vendor} downloaded 1 transfer you sent",
            f"PHI Gate: 1 transfer you sent to {vendor} was rejected",
            f"PHI Gate: 1 transfer you sent to {vendor} was approved",
            f"PHI Gate: 1 transfer you sent to {vendor} was revoked",
        ]
    )
    available = f"PHI Gate: 1 transfer from {practice} is available for you to download"
    assert boxes[_addr(party.biller)] == [available] * 3  # named on the first; all billers on the others
    assert boxes[_addr(party.biller2)] == [available] * 2
    assert boxes[_addr(party.auditor)] == [f"PHI Gate: 1 new audit alert concerns {practice}"]
    assert _addr(party.admin) not in boxes  # administrators are told nothing (no topic of theirs)

    # Not one byte of any message names the file, the purpose, the note or a reason.
    for mail in mailer.mailbox.received:
        raw = mail.raw.decode("utf-8", "replace")
        for secret in (NAME, "Doe-Jane", PURPOSE, "JANEDOE", NOTE, "Jane Doe", REASON, tid):
            assert secret not in raw, (secret, mail.message["Subject"])
        assert re.search(r"Sign in to see the details: https://gateway\.example/\S+", mail.body)
    # Nor does any notice's audit event.
    for event in events(db, "notification.email.sent"):
        assert NAME not in str(event.details) and PURPOSE not in str(event.details)
    assert len(events(db, "notification.email.sent")) == len(mailer.mailbox.received)


def test_access_ending_tomorrow_reminds_the_billers_who_have_not_fetched_it_once(
    party, session_for, components, mailer, fake_clock
):
    from gateway.jobs import notify

    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = sent(staff, party)
    assert approver.approve(tid, days=2).status_code == 200
    fid = staff.client.get(f"/api/v1/transfers/{tid}").json()["files"][0]["id"]
    assert session_for(party.biller).download(tid, fid).status_code == 200
    components.outbox.wait()
    before = len(mailer.mailbox.received)

    assert notify(components) == 0  # two days left: not yet
    fake_clock.advance(days=1, hours=1)
    assert notify(components) == 1  # biller2 only: biller has the file
    assert notify(components) == 0  # once
    components.outbox.wait()
    [reminder] = mailer.mailbox.received[before:]
    assert reminder.rcpt_tos == [_addr(party.biller2)]
    assert (
        str(reminder.message["Subject"]).strip()
        == f"PHI Gate: Access to 1 transfer from {party.practice.name} ends within a day"
    )


def test_daily_digest_folds_a_days_notices_into_one_message_at_the_digest_hour(
    party, session_for, components, mailer, fake_clock, db
):
    from gateway.jobs import notify

    approver = session_for(party.approver)
    r = approver.client.post(
        "/account/notifications", data={"approvals": "daily", "csrf_token": approver.csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    [changed] = events(db, "notification.preferences.changed")
    assert changed.details["approvals"] == "daily" and changed.target_id == party.approver.id
    staff = session_for(party.staff)
    for _ in range(3):
        sent(staff, party)
    components.outbox.wait()
    assert mailer.mailbox.received == []  # nothing at once

    components.settings.notify_digest_hour = (fake_clock.current + timedelta(hours=1)).hour
    assert notify(components) == 0  # before the digest hour
    fake_clock.advance(hours=1)
    assert notify(components) == 1
    assert notify(components) == 0  # sent once
    components.outbox.wait()
    [digest] = mailer.mailbox.received
    assert digest.rcpt_tos == [_addr(party.approver)] and digest.message["Subject"] == "PHI Gate: your daily summary"
    assert f"- 3 transfers to {party.vendor.name} await your approval." in digest.body
    with components.db.snapshot() as s:
        notices = list(s.scalars(select(Notification)))
    assert len(notices) == 3 and all(n.emailed_at is not None for n in notices)


def test_off_means_no_message_and_approvers_cannot_silence_approval_requests(
    party, session_for, components, mailer, db
):
    staff, approver = session_for(party.staff), session_for(party.approver)
    page = approver.client.get("/account").text
    assert 'name="approvals"' in page and 'name="sent"' in page and "cannot be switched off" in page
    approvals = page.split('name="approvals"')[1].split("</select>")[0]
    assert 'value="off"' not in approvals

    r = approver.client.post(
        "/account/notifications", data={"approvals": "off", "csrf_token": approver.csrf}, follow_redirects=False
    )
    assert r.status_code == 422 and "Approval requests cannot be switched off" in r.text
    assert events(db, "notification.preferences.changed") == []
    r = staff.client.post(
        "/account/notifications", data={"approvals": "daily", "csrf_token": staff.csrf}, follow_redirects=False
    )
    assert r.status_code == 422 and "no such notification setting for your role" in r.text
    r = staff.client.post(
        "/account/notifications", data={"sent": "sometimes", "csrf_token": staff.csrf}, follow_redirects=False
    )
    assert r.status_code == 422 and "Choose immediately, daily digest or off" in r.text

    r = staff.client.post(
        "/account/notifications", data={"sent": "off", "csrf_token": staff.csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert 'value="off" selected' in staff.client.get("/account").text
    tid = sent(staff, party)
    assert approver.approve(tid).status_code == 200
    components.outbox.wait()
    assert _addr(party.staff) not in _inboxes(mailer)  # switched off: not even recorded
    assert _addr(party.approver) in _inboxes(mailer)
    with components.db.snapshot() as s:
        assert s.scalars(select(Notification).where(Notification.user_id == party.staff.id)).all() == []


def test_a_disabled_account_is_told_nothing(party, session_for, components, mailer, factory):
    from gateway.audit.service import Actor
    from gateway.users.service import disable_user, get_user

    with components.db.transaction() as s:
        disable_user(s, get_user(s, party.approver.id), Actor.system())
    sent(session_for(party.staff), party)
    components.outbox.wait()
    assert mailer.mailbox.received == []
