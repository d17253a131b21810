"""High-severity alerts leave at once, in the request that caused them, through an outbox that keeps
what a sink refused for the retry job."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy import select

from gateway.audit.actions import Action
from gateway.audit.models import AuditAlert, AuditEvent, Severity
from gateway.audit.service import Actor, record_event
from gateway.outbox import OutboxEntry
from tests.transfers.conftest import party, session_for  # noqa: F401 - fixtures
from tests.transfers.test_gates import sent


def _lines(path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _outbox(components) -> list[OutboxEntry]:
    """The alert sink's messages (e-mail to auditors and billers waits in the same outbox, topic "email")."""
    with components.db.snapshot() as db:
        return list(db.scalars(select(OutboxEntry).where(OutboxEntry.topic == "audit.alert").order_by(OutboxEntry.id)))


def _retry_job(components):
    from gateway.jobs import serve_jobs

    return next(job for job in serve_jobs(components) if job.name == "outbox")


def _open_emergency(party, session_for):
    staff, admin = session_for(party.staff), session_for(party.admin)
    tid = sent(staff, party)
    r = admin.client.post(
        f"/api/v1/transfers/{tid}/emergency-access",
        json={"hours": 2, "reason": "approver on leave", "code": admin.fresh_code()},
    )
    assert r.status_code == 200, r.text
    return tid


def test_emergency_access_alert_is_in_the_sink_when_the_response_returns(party, session_for, components, tmp_path):
    sink = tmp_path / "alerts.jsonl"
    components.settings.audit_alert_sink = f"file://{sink}"
    tid = _open_emergency(party, session_for)

    # No scheduled job has run (each waits a whole interval first): the request delivered it.
    [line] = _lines(sink)
    assert line["rule"] == "high_severity_event" and line["severity"] == "high" and line["subject"] == tid
    assert line["summary"] == "transfer.emergency_access.opened (success)"
    assert party.practice.id in line["org_ids"]
    with components.db.snapshot() as db:
        opened = db.scalar(select(AuditEvent).where(AuditEvent.action == "transfer.emergency_access.opened"))
        raised = db.scalar(select(AuditEvent).where(AuditEvent.action == "audit.alert.raised"))
        alert = db.get(AuditAlert, line["id"])
    # The flag and its own event were written in the same transaction as the event they flag.
    assert alert.first_seq == alert.last_seq == opened.seq and raised.seq == opened.seq + 1
    assert raised.target_id == str(alert.id) and raised.severity == Severity.high
    assert alert.delivered_at is not None and alert.delivery_error is None
    [entry] = _outbox(components)
    assert entry.delivered_at is not None and entry.attempts == 1 and entry.payload == line

    # The practice's auditor sees it at once, on the API and on the dashboard.
    auditor = session_for(party.auditor)
    [item] = auditor.client.get("/api/v1/audit/alerts").json()["items"]
    assert item["id"] == alert.id and item["delivered_at"] is not None
    dashboard = auditor.client.get("/audit").text.split('id="alerts"')[1]
    assert "transfer.emergency_access.opened (success)" in dashboard and "No alerts" not in dashboard
    # The retry job finds nothing left to send: no duplicate line.
    assert _retry_job(components).run() == 0
    assert len(_lines(sink)) == 1


def test_a_sink_that_fails_keeps_the_alert_for_the_retry_job(party, session_for, components, tmp_path):
    missing = tmp_path / "not-yet" / "alerts.jsonl"
    components.settings.audit_alert_sink = f"file://{missing}"
    tid = _open_emergency(party, session_for)  # the request still succeeds

    [entry] = _outbox(components)
    assert entry.delivered_at is None and entry.attempts == 1 and "FileNotFoundError" in entry.last_error
    assert entry.claimed_until is None  # released for the retry job
    with components.db.snapshot() as db:
        alert = db.scalar(select(AuditAlert))
        assert db.scalar(select(AuditEvent).where(AuditEvent.action == "transfer.emergency_access.opened"))
    assert alert.subject == tid and alert.delivered_at is None and "FileNotFoundError" in alert.delivery_error
    auditor = session_for(party.auditor)
    assert "FileNotFoundError" in auditor.client.get("/audit").text.split('id="alerts"')[1]

    # The sink still refuses: the job tries again and keeps it.
    job = _retry_job(components)
    assert job.run() == 0
    assert _outbox(components)[0].attempts == 2
    # The sink comes back: the job delivers it, once.
    missing.parent.mkdir()
    assert job.run() == 1
    [line] = _lines(missing)
    assert line["id"] == alert.id and line["subject"] == tid
    [entry] = _outbox(components)
    assert entry.delivered_at is not None and entry.last_error is None
    assert job.run() == 0 and len(_lines(missing)) == 1
    with components.db.snapshot() as db:
        assert db.get(AuditAlert, alert.id).delivered_at is not None


def test_an_unconfigured_sink_keeps_alerts_until_one_is_set(party, session_for, components, tmp_path):
    components.settings.audit_alert_sink = ""
    _open_emergency(party, session_for)
    [entry] = _outbox(components)
    assert entry.delivered_at is None and entry.attempts == 0  # nothing to send to: not even tried
    components.settings.audit_alert_sink = f"file://{tmp_path / 'later.jsonl'}"
    assert _retry_job(components).run() == 1
    assert len(_lines(tmp_path / "later.jsonl")) == 1


def test_every_high_severity_event_raises_its_alert_at_once(client, factory, components, tmp_path):
    """Generic: an account locked by failed sign-ins (another high-severity event) goes out in that request."""
    sink = tmp_path / "alerts.jsonl"
    components.settings.audit_alert_sink = f"file://{sink}"
    components.settings.lockout_threshold = 3
    victim = factory.user("biller")
    for _ in range(3):
        r = client.post("/api/v1/auth/login", json={"username": victim.username, "password": "wrong password 123"})
        assert r.status_code in (401, 423)
    assert [(x["rule"], x["subject"], x["summary"]) for x in _lines(sink)] == [
        ("high_severity_event", victim.id, "auth.account.locked (success)")
    ]


def test_an_alert_commits_or_rolls_back_with_its_event(components, tmp_path):
    sink = tmp_path / "alerts.jsonl"
    components.settings.audit_alert_sink = f"file://{sink}"
    with pytest.raises(RuntimeError), components.db.transaction() as db:
        record_event(db, Action.STORAGE_OBJECT_MISSING, actor=Actor.system(), severity=Severity.high, target_id="t-1")
        raise RuntimeError("the action failed after its event was written")
    assert _outbox(components) == [] and not sink.exists()
    with components.db.snapshot() as db:
        assert db.scalar(select(AuditAlert)) is None

    with components.db.transaction() as db:
        record_event(db, Action.STORAGE_OBJECT_MISSING, actor=Actor.system(), severity=Severity.high, target_id="t-2")
        record_event(db, Action.KEYS_REWRAPPED, actor=Actor.system(), target_id="t-3")
        assert not sink.exists()  # nothing leaves before the commit
    assert [x["subject"] for x in _lines(sink)] == ["t-2"]


def test_a_commit_on_the_event_loop_hands_delivery_to_a_thread(components, tmp_path):
    sink = tmp_path / "alerts.jsonl"
    components.settings.audit_alert_sink = f"file://{sink}"

    async def commit_on_the_loop():
        with components.db.transaction() as db:
            record_event(
                db, Action.STORAGE_OBJECT_MISSING, actor=Actor.system(), severity=Severity.high, target_id="t-loop"
            )

    asyncio.run(commit_on_the_loop())
    for _ in range(400):  # bounded wait for the delivery thread
        if _lines(sink):
            break
        time.sleep(0.025)
    assert [x["subject"] for x in _lines(sink)] == ["t-loop"]


def test_a_dead_sink_is_tried_once_per_run_not_once_per_alert(components, tmp_path):
    """A webhook that is down costs one timeout per retry run, not one per waiting alert."""
    components.settings.audit_alert_sink = ""
    with components.db.transaction() as db:
        for i in range(3):
            record_event(
                db, Action.STORAGE_OBJECT_MISSING, actor=Actor.system(), severity=Severity.high, target_id=f"t-{i}"
            )
    components.settings.audit_alert_sink = f"file://{tmp_path / 'missing' / 'alerts.jsonl'}"
    assert _retry_job(components).run() == 0
    assert [(e.attempts, e.claimed_until, e.delivered_at) for e in _outbox(components)] == [
        (1, None, None),
        (0, None, None),
        (0, None, None),
    ]
    (tmp_path / "missing").mkdir()
    assert _retry_job(components).run() == 3
    assert [x["subject"] for x in _lines(tmp_path / "missing" / "alerts.jsonl")] == ["t-0", "t-1", "t-2"]
