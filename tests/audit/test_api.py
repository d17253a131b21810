"""The auditor API and pages, through HTTP as a user (or an attacker) would use them."""

from __future__ import annotations

import json
import re

import pytest

from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_event
from translog import merkle, note


@pytest.fixture
def world(components, factory):
    """Two practices with an auditor each, an operator auditor, a vendor biller, and events about each."""
    practice_a, practice_b = factory.org("practice"), factory.org("practice")
    vendor = factory.org("vendor")
    operator = factory.org("operator")
    w = {
        "a": practice_a,
        "b": practice_b,
        "vendor": vendor,
        "auditor_a": factory.user("auditor", practice_a),
        "auditor_b": factory.user("auditor", practice_b),
        "auditor_op": factory.user("auditor", operator),
        "staff_a": factory.user("practice_staff", practice_a),
        "biller": factory.user("biller", vendor),
    }
    with components.db.transaction() as db:
        biller = Actor(user_id=w["biller"].id, org_id=vendor.id, ip="198.51.100.9", user_agent="browser")
        for org, tid in ((practice_a, "transfer-a"), (practice_b, "transfer-b")):
            record_event(
                db,
                Action.TRANSFER_DOWNLOAD_COMPLETED,
                actor=biller,
                target_type="transfer",
                target_id=tid,
                target_org_id=org.id,
                details={"file_id": f"file-{tid}", "bytes": 10},
            )
        record_event(
            db,
            Action.TRANSFER_DOWNLOAD_DENIED,
            actor=biller,
            target_type="transfer",
            target_id="transfer-b",
            target_org_id=practice_b.id,
            outcome="denied",
            details={"reason": "expired"},
        )
    return w


def _get(client, url, **kw):
    return client.get(url, **kw)


def test_practice_auditor_sees_only_events_about_their_practice(client, login, world, components):
    login(client, world["auditor_a"])
    r = client.get("/api/v1/audit/events", params={"action": "transfer.*"})
    assert r.status_code == 200
    items = r.json()["items"]
    assert {i["target_id"] for i in items} == {"transfer-a"}
    assert all(world["b"].id not in (i["actor_org_id"], i["target_org_id"]) for i in items)
    # Direct lookups of the other practice's events look exactly like missing ones.
    other = client.get("/api/v1/audit/timeline/transfer-b").json()["items"]
    assert other == []
    with_seq = _seq_of(components, "transfer-b")
    assert client.get(f"/api/v1/audit/events/{with_seq}").status_code == 404
    assert client.get("/api/v1/audit/proofs/inclusion", params={"seq": with_seq}).status_code == 404


def _seq_of(components, target):
    from sqlalchemy import select

    from gateway.audit.models import AuditEvent

    with components.db.sessions() as db:
        return db.scalar(select(AuditEvent.seq).where(AuditEvent.target_id == target).limit(1))


def test_operator_auditor_sees_every_organisation(client, login, world):
    login(client, world["auditor_op"])
    items = client.get("/api/v1/audit/events", params={"action": "transfer.*"}).json()["items"]
    assert {i["target_id"] for i in items} == {"transfer-a", "transfer-b"}
    denied = client.get("/api/v1/audit/events", params={"outcome": "denied"}).json()["items"]
    assert [i["action"] for i in denied] == ["transfer.download.denied"]
    by_user = client.get("/api/v1/audit/events", params={"user": world["biller"].username}).json()["items"]
    assert len(by_user) == 3 and all(i["actor_user_id"] == world["biller"].id for i in by_user)


def test_paging_walks_every_event_once(client, login, world, components):
    with components.db.transaction() as db:
        for i in range(7):
            record_event(db, Action.KEYS_ROTATED, actor=Actor(org_id=world["a"].id), details={"i": i})
    login(client, world["auditor_a"])
    seen, before = [], None
    while True:
        params = {"action": "keys.rotated", "limit": 3, **({"before": before} if before else {})}
        body = client.get("/api/v1/audit/events", params=params).json()
        seen += [i["details"]["i"] for i in body["items"]]
        before = body["next_before"]
        if before is None:
            break
    assert seen == [6, 5, 4, 3, 2, 1, 0]


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday", "until": "2026-01-01"},
        {"since": "2026-13-40", "until": "2026-12-31"},
        {"since": "2026-01-01T25:00", "until": "2026-01-02"},
        {"since": "1900-01-01", "until": "1900-01-02"},
        {"since": "2020-01-01", "until": "2026-01-01"},  # a huge range
        {"since": "2026-02-01", "until": "2026-01-01"},  # backwards
        {"outcome": "maybe"},
        {"action": "auth'; DROP TABLE users;--"},
    ],
)
def test_bad_filters_get_a_clear_invalid_input_error(client, login, world, params):
    login(client, world["auditor_op"])
    r = client.get("/api/v1/audit/events", params=params)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_input"
    page = client.get("/audit/events", params=params)
    assert page.status_code == 422
    assert 'class="error"' in page.text


def test_activity_on_a_day_and_a_malformed_day(client, login, world, fake_clock):
    login(client, world["auditor_op"])
    day = fake_clock.current.date().isoformat()
    r = client.get("/api/v1/audit/activity", params={"user": world["biller"].id, "day": day})
    assert r.status_code == 200
    assert [i["action"] for i in r.json()["items"]] == [
        "transfer.download.completed",
        "transfer.download.completed",
        "transfer.download.denied",
    ]
    assert (
        client.get("/api/v1/audit/activity", params={"user": world["biller"].id, "day": "30/11/2026"}).json()["error"][
            "code"
        ]
        == "invalid_input"
    )
    page = client.get("/audit/activity", params={"user": world["biller"].username, "day": day})
    assert page.status_code == 200 and page.text.count("<td>transfer.download.") == 3


def test_auditor_is_refused_admin_pages_and_file_downloads(client, login, world, app):
    login(client, world["auditor_op"])
    for url in ("/admin/users", "/admin/orgs", "/api/v1/users", "/api/v1/orgs"):
        r = client.get(url)
        assert r.status_code == 403, url
    # Every route that serves file contents refuses auditors (deny by default).
    r = client.get("/api/v1/transfers/some-transfer/files/some-file/content")
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "forbidden"


def test_non_auditors_cannot_read_the_log(client, login, world, fake_clock):
    for who in ("staff_a", "biller"):
        client.cookies.clear()
        login(client, world[who], fake_clock)
        assert client.get("/api/v1/audit/events").status_code == 403
        assert client.get("/api/v1/audit/export.jsonl").status_code == 403
        assert client.get("/audit").status_code == 403


def test_exports_verify_offline_are_events_and_neutralise_formulas(client, login, world, components, tmp_path):
    from translog.export import verify_export

    with components.db.transaction() as db:
        record_event(
            db,
            Action.AUTH_LOGIN_FAILED,
            outcome="failure",
            actor=Actor(org_id=world["a"].id, ip="203.0.113.5", user_agent='=HYPERLINK("http://x")'),
            target_org_id=world["a"].id,
            details={"reason": "bad_password"},
        )
    login(client, world["auditor_a"])
    key = client.get("/api/v1/audit/public-key").json()
    csv_r = client.get("/api/v1/audit/export.csv")
    jsonl_r = client.get("/api/v1/audit/export.jsonl", params={"action": "transfer.*"})
    assert csv_r.status_code == 200 and jsonl_r.status_code == 200
    assert "attachment" in csv_r.headers["content-disposition"]
    (tmp_path / "e.csv").write_bytes(csv_r.content)
    (tmp_path / "e.jsonl").write_bytes(jsonl_r.content)
    for name in ("e.csv", "e.jsonl"):
        report = verify_export(str(tmp_path / name), key["public_key_pem"])
        assert report.ok, report.problem
    assert "'=HYPERLINK" in csv_r.text and "\n=HYPERLINK" not in csv_r.text and ",=HYPERLINK" not in csv_r.text
    lines = [json.loads(x) for x in jsonl_r.text.splitlines()]
    events = [x for x in lines if x["type"] == "event"]
    assert [e["target_id"] for e in events] == ["transfer-a"]
    assert lines[-1] == {"type": "end", "events": 1}
    # Each export is itself on record, with its format and filters.
    exports = client.get("/api/v1/audit/events", params={"action": "audit.export.created"}).json()["items"]
    assert [(e["details"]["format"], e["details"].get("filter_action")) for e in exports] == [
        ("jsonl", "transfer.*"),
        ("csv", None),
    ]


def test_a_tampered_export_names_the_altered_event(client, login, world, tmp_path):
    from typer.testing import CliRunner

    from gateway.auditor.cli import audit_app

    login(client, world["auditor_op"])
    key = client.get("/api/v1/audit/public-key").json()
    body = client.get("/api/v1/audit/export.jsonl").text
    lines = body.splitlines()
    target = next(i for i, line in enumerate(lines) if '"transfer.download.denied"' in line)
    seq = json.loads(lines[target])["seq"]
    lines[target] = lines[target].replace('"reason": "expired"', '"reason": "ok"')
    assert lines[target] != body.splitlines()[target]
    (tmp_path / "bad.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "good.jsonl").write_text(body)
    (tmp_path / "cut.jsonl").write_text("\n".join(body.splitlines()[:-2]) + "\n")
    runner = CliRunner()
    good = runner.invoke(
        audit_app, ["verify-export", str(tmp_path / "good.jsonl"), "--public-key", key["verifier_key"]]
    )
    assert good.exit_code == 0, good.output
    bad = runner.invoke(audit_app, ["verify-export", str(tmp_path / "bad.jsonl"), "--public-key", key["verifier_key"]])
    assert bad.exit_code == 1 and f"at event {seq}" in bad.output
    cut = runner.invoke(audit_app, ["verify-export", str(tmp_path / "cut.jsonl"), "--public-key", key["verifier_key"]])
    assert cut.exit_code == 1 and "truncated" in cut.output


def test_proof_api_and_checkpoint_endpoints(client, login, world, components):
    login(client, world["auditor_op"])
    csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    first = client.post("/api/v1/audit/checkpoints", headers={"X-CSRF-Token": csrf}).json()
    with components.db.transaction() as db:
        record_event(db, Action.KEYS_REWRAPPED, actor=Actor.system())
    second = client.post("/api/v1/audit/checkpoints", headers={"X-CSRF-Token": csrf}).json()
    assert second["tree_size"] == first["tree_size"] + 1
    pem = client.get("/api/v1/audit/public-key").json()["public_key_pem"]
    latest = client.get("/api/v1/audit/checkpoints/latest")
    assert latest.headers["content-type"].startswith("text/plain")
    cp = note.verify(latest.text, pem)
    assert cp.tree_size == second["tree_size"]
    proof = client.get("/api/v1/audit/proofs/inclusion", params={"seq": 1}).json()
    assert merkle.verify_inclusion(
        0,
        cp.tree_size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        cp.root_hash,
    )
    cons = client.get("/api/v1/audit/proofs/consistency", params={"first": first["tree_size"]}).json()
    old = note.verify(cons["first_checkpoint"], pem)
    assert merkle.verify_consistency(
        old.tree_size, cp.tree_size, old.root_hash, cp.root_hash, [bytes.fromhex(h) for h in cons["consistency_path"]]
    )
    status = client.get("/api/v1/audit/status").json()
    assert status["latest_checkpoint"]["tree_size"] == cp.tree_size
    assert status["latest_checkpoint"]["signature_ok"] is True


def test_auditor_pages_render(client, login, world, fake_clock):
    login(client, world["auditor_op"])
    dash = client.get("/audit")
    assert dash.status_code == 200 and "Verification status" in dash.text
    assert 'href="/audit"' in client.get("/home").text
    events = client.get("/audit/events", params={"target_id": "transfer-b"})
    assert events.status_code == 200 and events.text.count("<td>transfer.download.") == 2
    assert "/api/v1/audit/export.csv?target_id=transfer-b" in events.text
    timeline = client.get("/audit/timeline", params={"target_id": "transfer-a"})
    assert timeline.status_code == 200 and "transfer.download.completed" in timeline.text
    review = client.get("/audit/access-review", params={"vendor_id": world["vendor"].id})
    assert review.status_code == 200 and world["biller"].username in review.text
    # The CSP forbids inline code: scripts only from the gateway's own files.
    assert not re.search(r"<script(?![^>]*\bsrc=\"/static/)", dash.text) and "style=" not in dash.text


def test_page_filters_with_bad_dates_show_an_error(client, login, world):
    login(client, world["auditor_op"])
    r = client.get("/audit/events", params={"since": "not-a-date", "until": "2026-01-01"})
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text


def test_dashboard_form_signs_a_checkpoint_and_shows_it(client, login, world, components):
    login(client, world["auditor_op"])
    csrf = client.get("/api/v1/auth/me").json()["csrf_token"]
    refused = client.post("/audit/checkpoint", data={"csrf_token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 403
    r = client.post("/audit/checkpoint", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/audit"
    page = client.get("/audit")
    from gateway.audit.checkpoint import latest_checkpoint

    with components.db.sessions() as db:
        size = latest_checkpoint(db).tree_size
    assert f'<strong id="checkpoint-size">{size}</strong>' in page.text and "signature valid" in page.text


def test_a_file_timeline_includes_events_that_name_the_file_in_details(client, login, world, components):
    with components.db.transaction() as db:
        record_event(
            db,
            Action.TRANSFER_DESTROYED,
            actor=Actor.system(),
            target_type="file",
            target_id="file-transfer-a",
            target_org_id=world["a"].id,
            details={"method": "crypto-shred"},
        )
    login(client, world["auditor_a"])
    items = client.get("/api/v1/audit/timeline/file-transfer-a").json()["items"]
    assert [i["action"] for i in items] == ["transfer.download.completed", "transfer.destroyed"]
    page = client.get("/audit/timeline", params={"target_id": "file-transfer-a"})
    assert page.text.count("<td>transfer.") == 2
