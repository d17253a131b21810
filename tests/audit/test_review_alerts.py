"""Access review, the inactivity job, and alert rules with their sinks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from gateway.audit.actions import Action
from gateway.audit.models import AuditAlert, AuditEvent
from gateway.audit.sequencer import catch_up
from gateway.audit.service import Actor, record_event
from gateway.auditor.search import Scope
from gateway.users.models import User


@pytest.fixture
def webhook():
    """A loopback HTTP server that records the JSON bodies POSTed to it."""
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/siem", received
    server.shutdown()
    server.server_close()


def _download(components, user, org_id, n=1):
    with components.db.transaction() as db:
        for i in range(n):
            record_event(
                db,
                Action.TRANSFER_DOWNLOAD_COMPLETED,
                actor=Actor(user.id, user.org_id, "198.51.100.2"),
                target_type="transfer",
                target_id=f"t{i}",
                target_org_id=org_id,
                details={"file_id": f"f{i}"},
            )


def test_access_review_lists_each_vendor_user_with_last_activity(components, factory, login, client, fake_clock):
    from gateway.auditor.review import access_review

    practice, vendor = factory.org("practice"), factory.org("vendor")
    active = factory.user("biller", vendor)
    idle = factory.user("biller", vendor, enrolled=False)
    login(client, active, fake_clock)
    _download(components, active, practice.id)
    fake_clock.advance(days=10)
    catch_up(components.db)  # as the auditor's request does before the review reads the log
    with components.db.sessions() as db:
        org, rows = access_review(db, Scope(None), vendor.id)
    by_name = {r.username: r for r in rows}
    assert org.id == vendor.id and set(by_name) == {active.username, idle.username}
    a, i = by_name[active.username], by_name[idle.username]
    assert a.role == "biller" and a.active and a.mfa_enrolled and a.last_login_at is not None
    assert a.last_download_at is not None and a.days_inactive == 10
    assert not i.mfa_enrolled and i.last_login_at is None and i.last_download_at is None and i.days_inactive == 10
    assert a.created_by is None  # made by the system actor in the factory


def test_practice_auditor_reviews_only_vendors_linked_to_their_practice(components, factory):
    from gateway.auditor.review import vendors_in_scope

    practice, other = factory.org("practice"), factory.org("practice")
    linked, unlinked = factory.org("vendor"), factory.org("vendor")
    biller = factory.user("biller", linked)
    _download(components, biller, practice.id)
    catch_up(components.db)
    with components.db.sessions() as db:
        assert [v.id for v in vendors_in_scope(db, Scope(practice.id))] == [linked.id]
        assert vendors_in_scope(db, Scope(other.id)) == []
        assert {v.id for v in vendors_in_scope(db, Scope(None))} >= {linked.id, unlinked.id}


def test_inactive_accounts_are_disabled_with_the_reason_on_record(components, factory, fake_clock):
    from gateway.auditor.review import disable_inactive

    vendor = factory.org("vendor")
    old = factory.user("biller", vendor)
    admin = factory.user("admin")
    fake_clock.advance(days=91)
    fresh = factory.user("biller", vendor)
    assert disable_inactive(components, Actor.system()) == [old.username]
    catch_up(components.db)
    with components.db.sessions() as db:
        assert not db.get(User, old.id).active
        assert db.get(User, fresh.id).active and db.get(User, admin.id).active
        why = db.scalar(select(AuditEvent).where(AuditEvent.action == "audit.access_review.account_disabled"))
        assert why.target_id == old.id and why.details["days_inactive"] == 91 and why.details["threshold_days"] == 90
        disabled = db.scalar(select(AuditEvent).where(AuditEvent.action == "admin.user.disabled"))
        assert disabled.details["reason"] == "inactive_over_90_days"
    assert disable_inactive(components, Actor.system()) == []  # already done


def test_failed_logins_against_one_account_raise_one_alert_delivered_to_a_file(components, factory, client, tmp_path):
    from gateway.auditor import alerts

    victim = factory.user("biller")
    for _ in range(5):
        r = client.post("/api/v1/auth/login", json={"username": victim.username, "password": "wrong password 123"})
        assert r.status_code == 401
    components.settings.audit_alert_sink = f"file://{tmp_path / 'alerts.jsonl'}"
    assert alerts.run(components) == (1, 1)
    assert alerts.run(components) == (0, 0)  # not raised twice
    lines = [json.loads(x) for x in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(x["rule"], x["subject"], x["count"]) for x in lines] == [("failed_logins_account", victim.id, 5)]
    with components.db.sessions() as db:
        raised = db.scalar(select(AuditEvent).where(AuditEvent.action == "audit.alert.raised"))
        assert raised.details["rule"] == "failed_logins_account"


def test_download_burst_and_denials_go_to_the_webhook(components, factory, webhook):
    from gateway.auditor import alerts

    url, received = webhook
    practice = factory.org("practice")
    biller = factory.user("biller")
    _download(components, biller, practice.id, n=20)
    with components.db.transaction() as db:
        for _ in range(5):
            record_event(
                db,
                Action.TRANSFER_DOWNLOAD_DENIED,
                actor=Actor(biller.id, biller.org_id),
                outcome="denied",
                target_type="transfer",
                target_id="t9",
                target_org_id=practice.id,
            )
    components.settings.audit_alert_sink = url
    raised, delivered = alerts.run(components)
    assert raised == 2 and delivered == 2
    assert sorted(x["rule"] for x in received) == ["denied_attempts", "download_burst"]
    assert all(x["subject"] == biller.id and practice.id in x["org_ids"] for x in received)


def test_an_unreachable_sink_keeps_the_flag_for_the_next_run(components, factory, webhook):
    from gateway.auditor import alerts

    url, received = webhook
    biller = factory.user("biller")
    _download(components, biller, None, n=20)
    components.settings.audit_alert_sink = "http://127.0.0.1:9/unreachable"
    assert alerts.run(components) == (1, 0)
    with components.db.sessions() as db:
        assert db.scalar(select(AuditAlert)).delivery_error
    components.settings.audit_alert_sink = url
    assert alerts.run(components) == (0, 1)
    assert [x["rule"] for x in received] == ["download_burst"]


def test_sign_in_outside_allowed_hours_is_flagged_and_shown_on_the_dashboard(
    components, factory, client, login, fake_clock
):
    from gateway.auditor import alerts

    hour = fake_clock.current.hour
    components.settings.audit_alert_allowed_hours = f"{(hour + 1) % 24:02d}-{(hour + 2) % 24:02d}"
    auditor = factory.user("auditor", factory.org("operator"))
    biller = factory.user("biller")
    login(client, biller, fake_clock)
    client.cookies.clear()
    raised, _ = alerts.run(components)
    assert raised == 1
    with components.db.sessions() as db:
        alert = db.scalar(select(AuditAlert))
    assert alert.rule == "login_outside_hours" and alert.subject == biller.id
    login(client, auditor, fake_clock)
    page = client.get("/audit")
    assert "login_outside_hours" in page.text and "outside" in page.text
    csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    r = client.post(f"/api/v1/audit/alerts/{alert.id}/acknowledge", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200
    assert client.get("/api/v1/audit/alerts", params={"open_only": True}).json()["items"] == []


def test_practice_auditor_sees_only_alerts_about_their_practice(components, factory, client, login):
    from gateway.auditor import alerts

    practice, other = factory.org("practice"), factory.org("practice")
    biller = factory.user("biller")
    _download(components, biller, other.id, n=20)
    alerts.run(components)
    login(client, factory.user("auditor", practice))
    assert client.get("/api/v1/audit/alerts").json()["items"] == []


def test_an_alert_about_another_practice_cannot_be_acknowledged_by_api_or_page(components, factory, client, login):
    """One rule (alerts.acknowledge) behind both doors: outside the auditor's scope it is a missing alert."""
    from gateway.auditor import alerts

    practice, other = factory.org("practice"), factory.org("practice")
    _download(components, factory.user("biller"), other.id, n=20)
    alerts.run(components)
    with components.db.sessions() as db:
        alert_id = db.scalar(select(AuditAlert.id))
    login(client, factory.user("auditor", practice))
    csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    r = client.post(f"/api/v1/audit/alerts/{alert_id}/acknowledge", headers={"X-CSRF-Token": csrf})
    assert r.status_code == 404 and r.json()["error"]["code"] == "alert_not_found"
    page = client.post(f"/audit/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf}, follow_redirects=False)
    assert page.status_code == 404 and "No such alert." in page.text
    with components.db.sessions() as db:
        assert db.get(AuditAlert, alert_id).acknowledged_at is None
        assert not db.scalars(select(AuditEvent).where(AuditEvent.action == "audit.alert.acknowledged")).all()
