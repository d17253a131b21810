"""Metrics, request ids and logs, seen from outside: through HTTP, the metrics port and the log lines.

One transfer's life (upload, a denied download, approval, download) is driven
through the API; the metrics port must then show it, refuse anyone without the
token, every response and audit event must carry the request id, and no log
line may hold the file's name, purpose or note.
"""

from __future__ import annotations

import io
import json
import logging
import re

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway import logs
from tests.transfers.conftest import PDF, events

NAME, PURPOSE, NOTE = "Zyxwv-Patient-Appeal.pdf", "APPEAL-QQ-7731", "note-about-Zyxwv-history"
TOKEN = "metrics-token-for-tests"


def scrape(port: int, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"http://127.0.0.1:{port}/metrics", headers=headers, timeout=10)


def value(text: str, name: str, **labels) -> float:
    """One sample of the Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}{re.escape('{' + want + '}') if want else ''} (\S+)$", re.M)
    found = pattern.findall(text)
    return float(found[0]) if found else 0.0


def changed(settings, **changes):
    """The same settings with some changed, validated again."""
    return type(settings)(_env_file=None, **{**settings.model_dump(), **changes})


@pytest.fixture
def served(settings, components):
    """The app with its lifespan running: metrics on an ephemeral loopback port, behind a token."""
    from gateway.app import create_app

    app = create_app(changed(settings, metrics_port=0, metrics_token=TOKEN), components)
    with TestClient(app) as client:
        yield app, client, app.state.metrics_server.port


@pytest.fixture
def json_log():
    """Everything logged during the test, as the JSON lines `phigate serve` writes."""
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)
    logging.getLogger("uvicorn.access").disabled = False


def test_metrics_port_refuses_without_the_token_and_reveals_nothing(served):
    _, _, port = served
    for token in (None, "wrong-token", "metrics-token-for-test"):
        r = scrape(port, token)
        assert r.status_code == 401 and "phigate_" not in r.text
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=10).status_code == 404
    assert scrape(port).status_code == 200


def test_labels_stay_bounded_whatever_a_caller_sends(served):
    _, client, port = served
    client.get("/static/no-such-dir/Zyxwv-typed-by-a-caller.css")
    client.request("FROBNICATE", "/healthz")
    client.get("/api/v1/transfers/Zyxwv-not-an-id")
    text = scrape(port).text
    assert "Zyxwv" not in text and "FROBNICATE" not in text and "no-such-dir" not in text
    assert (
        value(text, "phigate_http_request_duration_seconds_count", method="OTHER", route="/healthz", status="405") >= 1
    )


def test_metrics_are_not_on_the_public_port(served):
    _, client, _ = served
    assert client.get("/metrics").status_code == 404


def test_a_transfers_life_shows_in_the_metrics_and_the_request_ids(served, party, session_for, components, json_log):
    _app, _, port = served
    before = scrape(port).text
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)

    up = staff.upload(party.vendor.id, name=NAME, purpose=PURPOSE, **{"X-Note": NOTE})
    assert up.status_code == 201, up.text
    tid = up.json()["id"]
    upload_request = up.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", upload_request)

    fid = staff.client.get(f"/api/v1/transfers/{tid}").json()["files"][0]["id"]
    denied = biller.download(tid, fid)  # not approved yet
    assert denied.status_code in (403, 404)
    approved = approver.approve(tid, days=1)
    assert approved.status_code == 200, approved.text
    got = biller.download(tid, fid)
    assert got.status_code == 200 and got.content == PDF

    after = scrape(port).text
    assert value(after, "phigate_transfer_bytes_total", direction="upload") - value(
        before, "phigate_transfer_bytes_total", direction="upload"
    ) == len(PDF)
    assert value(after, "phigate_transfer_bytes_total", direction="download") - value(
        before, "phigate_transfer_bytes_total", direction="download"
    ) == len(PDF)
    assert (
        value(after, "phigate_transfer_decisions_total", decision="approved")
        - value(before, "phigate_transfer_decisions_total", decision="approved")
        == 1
    )
    assert value(after, "phigate_downloads_denied_total") - value(before, "phigate_downloads_denied_total") == 1
    assert (
        value(after, "phigate_audit_events_appended_total", action="transfer.created")
        - value(before, "phigate_audit_events_appended_total", action="transfer.created")
        == 1
    )
    assert value(after, "phigate_transfers_in_flight", direction="upload") == 0
    assert value(after, "phigate_transfers_in_flight", direction="download") == 0
    # Latency by route template and status: the template, never the transfer's id.
    assert (
        value(
            after, "phigate_http_request_duration_seconds_count", method="POST", route="/api/v1/transfers", status="201"
        )
        >= 1
    )
    assert (
        value(
            after,
            "phigate_http_request_duration_seconds_count",
            method="GET",
            route="/api/v1/transfers/{transfer_id}/files/{file_id}/content",
            status="200",
        )
        >= 1
    )
    assert tid not in after and fid not in after
    assert "phigate_scheduler_leader " in after and "phigate_audit_checkpoint_age_seconds" in after
    assert "phigate_audit_queue_oldest_seconds " in after

    # The upload's audit events carry the id its response header named.
    with components.db.snapshot() as db:
        created = events(db, "transfer.created", target_id=tid)[-1].details
        denial = events(db, "transfer.download.denied", target_id=tid)[-1].details
    assert created["request_id"] == upload_request
    assert denial["request_id"] == denied.headers["x-request-id"] != upload_request

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    access = [line for line in lines if line["logger"] == "phigate.access"]
    assert {
        "request_id": upload_request,
        "route": "/api/v1/transfers",
        "status": 201,
        "method": "POST",
    }.items() <= next(line for line in access if line.get("request_id") == upload_request).items()
    text = json_log.getvalue()
    for secret in (NAME, "Zyxwv", PURPOSE, NOTE):
        assert secret not in text  # never a file name, purpose or note in a log line


def test_a_request_id_is_taken_from_the_trusted_proxy_only(settings, components):
    from gateway.app import create_app

    proxied = create_app(changed(settings, trusted_proxies=("127.0.0.0/8",)), components)
    offered = "0123456789abcdef0123456789abcdef"
    with TestClient(proxied, client=("127.0.0.1", 50000)) as client:
        assert client.get("/healthz", headers={"X-Request-Id": offered}).headers["x-request-id"] == offered
        # Malformed ids (header injection, oversize) are replaced, not echoed.
        bad = client.get("/healthz", headers={"X-Request-Id": "x" * 300}).headers["x-request-id"]
        assert bad != "x" * 300 and re.fullmatch(r"[0-9a-f]{32}", bad)
    direct = create_app(settings, components)
    with TestClient(direct, client=("203.0.113.9", 50000)) as client:
        mine = client.get("/healthz", headers={"X-Request-Id": offered}).headers["x-request-id"]
        assert mine != offered and re.fullmatch(r"[0-9a-f]{32}", mine)


def test_metrics_with_several_workers_are_refused(settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="one worker per container"):
        type(settings)(_env_file=None, metrics_port=9100, workers=2)


def test_production_refuses_an_open_metrics_port_without_a_token(settings):
    open_port = type(settings)(
        _env_file=None,
        env="production",
        allow_local_keyring=True,
        metrics_port=9100,
        metrics_host="0.0.0.0",
        data_dir=settings.data_dir,
    )
    assert any("PHIGATE_METRICS_TOKEN" in p for p in open_port.production_problems())
    closed = changed(open_port, metrics_token="a-token")
    assert not any("PHIGATE_METRICS_TOKEN" in p for p in closed.production_problems())


def test_a_worker_process_of_serve_sets_up_its_own_json_log(settings, monkeypatch, capsys):
    """PHIGATE_WORKERS > 1: uvicorn imports the app factory in a fresh process, which has no log set-up of its own."""
    from gateway.app import create_worker_app

    for name, value in {
        "ENV": "development",
        "DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.database_url,
        "STORAGE_URL": settings.storage_url,
        "KEY_PROVIDER_URL": settings.key_provider_url,
        "COOKIE_SECURE": "false",
        "INSTANCE_ID": "test",
        "LOG_FORMAT": "json",
    }.items():
        monkeypatch.setenv(f"PHIGATE_{name}", value)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers[:] = []  # as in a freshly spawned process
    try:
        with TestClient(create_worker_app()) as client:
            assert client.get("/healthz").status_code == 200
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)
        logging.getLogger("uvicorn.access").disabled = False
    assert any(rec.get("route") == "/healthz" and rec.get("status") == 200 for rec in lines), lines
