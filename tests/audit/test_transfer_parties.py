"""Every event about a transfer carries both organisations, refusals before approval included (finding 5).

A biller tries a transfer its practice has not approved yet: the answer is 404 (it
does not exist for them), and the practice's auditor finds the attempt in the search
and the export, naming the practice as target and the vendor in the details.
"""

from __future__ import annotations

import json

from tests.transfers.conftest import Party, party, session_for  # noqa: F401
from tests.transfers.test_gates import sent


def test_practice_auditor_sees_the_billers_refused_attempts_before_approval(party, session_for, db):
    staff, biller, auditor = session_for(party.staff), session_for(party.biller), session_for(party.auditor)
    tid = sent(staff, party)
    fid = staff.client.get(f"/api/v1/transfers/{tid}").json()["files"][0]["id"]
    assert biller.download(tid, fid).status_code == 404
    assert biller.client.get(f"/api/v1/transfers/{tid}").status_code == 404
    # An approval the biller may never give: refused by role, about this transfer.
    assert biller.client.post(f"/api/v1/transfers/{tid}/reject", json={"reason": "x"}).status_code == 403

    r = auditor.client.get("/api/v1/audit/events", params={"target_id": tid})
    assert r.status_code == 200
    found = {
        (e["action"], e["details"].get("reason")): e for e in r.json()["items"] if e["actor_user_id"] == party.biller.id
    }
    assert set(found) == {
        ("transfer.download.denied", "not_found"),
        ("request.refused", "transfer_not_found"),
        ("request.refused", "forbidden"),
    }
    for event in found.values():
        assert event["target_org_id"] == party.practice.id and event["details"]["vendor_id"] == party.vendor.id
        assert event["actor_org_id"] == party.vendor.id

    r = auditor.client.get("/api/v1/audit/export.jsonl", params={"target_id": tid})
    assert r.status_code == 200
    exported = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    seqs = {row.get("seq") for row in exported}
    assert {e["seq"] for e in found.values()} <= seqs
    r = auditor.client.get("/api/v1/audit/export.csv", params={"target_id": tid})
    assert r.status_code == 200
    exported = {line.split(",")[0]: line for line in r.text.splitlines()}
    for event in found.values():
        assert event["action"] in exported[str(event["seq"])] and party.biller.id in exported[str(event["seq"])]


def test_every_transfer_event_names_both_organisations(party, session_for, db, factory):
    from tests.transfers.conftest import events

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = sent(staff, party)
    fid = approver.approve(tid).json()["files"][0]["id"]
    assert biller.download(tid, fid).status_code == 200
    assert biller.download(tid, fid, Range="bytes=0-9").status_code == 206
    assert approver.client.post(f"/api/v1/transfers/{tid}/revoke", json={"reason": "done"}).status_code == 200
    assert biller.download(tid, fid).status_code == 403
    about = list(events(db, target_id=tid))
    assert {e.action for e in about} >= {
        "transfer.created",
        "transfer.file.stored",
        "transfer.approved",
        "transfer.download.started",
        "transfer.download.completed",
        "transfer.download.range_delivered",
        "transfer.revoked",
        "transfer.download.denied",
    }
    for e in about:
        assert e.target_org_id == party.practice.id, e.action
        assert e.details.get("vendor_id") == party.vendor.id, e.action

    # An operator auditor filtering by the vendor finds the practice's side of its transfers too.
    operator_auditor = session_for(factory.user("auditor", factory.org("operator")))
    r = operator_auditor.client.get(
        "/api/v1/audit/events", params={"org": party.vendor.id, "target_id": tid, "limit": 200}
    )
    assert {e["action"] for e in r.json()["items"]} >= {"transfer.created", "transfer.approved", "transfer.revoked"}
