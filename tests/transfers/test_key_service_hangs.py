"""A key service that accepts connections and never answers fails uploads and downloads promptly (finding 9).

The KMS endpoint is a loopback socket that reads requests and never replies.  With
the timeouts from configuration (PHIGATE_KMS_READ_TIMEOUT and friends) the gateway
gives up on its own and answers 503 `key_provider_unavailable`; the endpoint
records that the client closed each connection while it was still waiting, which
proves the timeout, not the endpoint, ended the call.  Nothing is asserted about
wall-clock time.
"""

from __future__ import annotations

import socket
import threading
import warnings
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from tests.retention.conftest import aws_env  # noqa: F401 - fake credentials, no AWS config read
from tests.support.s3server import S3Server
from tests.transfers.conftest import PDF, events
from tests.transfers.test_disconnects import signed_in
from tests.transfers.test_upload import assert_nothing_kept

ARN = "arn:aws:kms:us-east-1:111122223333:alias/phigate-test"


@dataclass
class Hang:
    port: int = 0
    accepted: int = 0
    closed_by_client: int = 0
    stop: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def hanging_kms():
    """Accepts, reads, never answers; gives every connection up after at most 60 s itself (bounded)."""
    hang = Hang()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    hang.port = server.getsockname()[1]

    def hold(conn: socket.socket) -> None:
        conn.settimeout(0.2)
        with conn:
            for _ in range(300):
                if hang.stop.is_set():
                    return
                try:
                    if not conn.recv(65536):
                        hang.closed_by_client += 1
                        return
                except TimeoutError:
                    continue
                except OSError:
                    hang.closed_by_client += 1
                    return

    def serve() -> None:
        while not hang.stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            hang.accepted += 1
            threading.Thread(target=hold, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield hang
    hang.stop.set()
    thread.join()
    server.close()


def gateway_with_kms(settings, endpoint: str):
    """A second app on the same database whose key provider is KMS at `endpoint`, with short timeouts."""
    from gateway.app import create_app
    from gateway.components import Components

    s = settings.model_copy(
        update={
            "key_provider_url": f"awskms://{ARN}?endpoint_url={endpoint}",
            "kms_connect_timeout": 1.0,
            "kms_read_timeout": 1.0,
            "kms_max_attempts": 1,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(s)
    return c, create_app(s, c)


def client_as(app, cookie: str, csrf: str = "") -> TestClient:
    client = TestClient(app)
    client.cookies.set("phigate_session", cookie)
    if csrf:
        client.headers["X-CSRF-Token"] = csrf
    return client


def upload(client, vendor_id):
    return client.post(
        "/api/v1/transfers",
        params={"partner_id": vendor_id},
        content=PDF,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Purpose": "APPEAL-KMS",
            "Content-Disposition": "attachment; filename=claim.pdf",
        },
    )


def test_upload_fails_promptly_when_the_key_service_hangs(app, party, settings, db, fake_clock, hanging_kms, aws_env):
    cookie, csrf = signed_in(app, party.staff, fake_clock)  # signed in where keys answer
    c, hanging_app = gateway_with_kms(settings, f"http://127.0.0.1:{hanging_kms.port}")
    with client_as(hanging_app, cookie, csrf) as client:
        r = upload(client, party.vendor.id)
    c.close()
    assert r.status_code == 503 and r.json()["error"]["code"] == "key_provider_unavailable"
    assert hanging_kms.accepted >= 1 and hanging_kms.closed_by_client == hanging_kms.accepted
    failed = events(db, "transfer.upload.failed")[-1]
    assert failed.details["reason"] == "key_provider_unavailable" and failed.severity.value == "warning"
    assert_nothing_kept(db, settings)


def test_download_fails_promptly_when_the_key_service_hangs(
    app, party, session_for, settings, db, fake_clock, hanging_kms, aws_env
):
    approver = session_for(party.approver)
    cookie, csrf = signed_in(app, party.staff, fake_clock)
    with S3Server() as kms:  # moto: a KMS that answers, for sealing the file
        c, kms_app = gateway_with_kms(settings, kms.endpoint_url)
        with client_as(kms_app, cookie, csrf) as client:
            r = upload(client, party.vendor.id)
        c.close()
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    biller_cookie, _ = signed_in(app, party.biller, fake_clock)

    c, hanging_app = gateway_with_kms(settings, f"http://127.0.0.1:{hanging_kms.port}")
    with client_as(hanging_app, biller_cookie) as client:
        r = client.get(f"/api/v1/transfers/{tid}/files/{fid}/content")
    c.close()
    assert r.status_code == 503 and r.json()["error"]["code"] == "key_provider_unavailable"
    assert hanging_kms.accepted >= 1 and hanging_kms.closed_by_client == hanging_kms.accepted
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.details["reason"] == "key_provider_unavailable" and failed.details["released"] is True
