"""Clients that vanish mid-transfer, against the real server (uvicorn on a loopback port)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from tests.conftest import api_login
from tests.transfers.conftest import events
from tests.transfers.test_upload import assert_nothing_kept

BIG = b"%PDF-1.7\n" + b"\x5a" * (6 * 1024 * 1024)


@pytest.fixture
def live(app):
    """The app served by uvicorn in a thread, on a socket bound before it starts."""
    import uvicorn

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    yield sock.getsockname()
    server.should_exit = True
    thread.join()
    sock.close()


def signed_in(app, user, clock) -> tuple[str, str]:
    """A session cookie and its CSRF token, obtained through the API."""
    with TestClient(app) as c:
        csrf = api_login(c, user, clock)
        return c.cookies.get("phigate_session"), csrf


def wait_for(db, action: str, **where):
    """The server finishes its clean-up after the socket closed; look until it has (bounded)."""
    for _ in range(600):
        found = events(db, action, **where)
        if found:
            return found[-1]
        time.sleep(0.05)
    raise AssertionError(f"no {action} event")


def test_client_disconnects_mid_upload(live, app, party, db, settings, fake_clock):
    cookie, csrf = signed_in(app, party.staff, fake_clock)
    head = (
        f"POST /api/v1/transfers?partner_id={party.vendor.id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(BIG)}\r\nX-Purpose: APPEAL-9\r\n"
        f"Content-Disposition: attachment; filename=big.pdf\r\nCookie: phigate_session={cookie}\r\n"
        f"X-CSRF-Token: {csrf}\r\n\r\n"
    ).encode()
    with socket.create_connection(live) as s:
        s.sendall(head + BIG[: 3 * 1024 * 1024])  # half the body, then the client is gone
    failed = wait_for(db, "transfer.upload.failed")
    assert failed.details["reason"] == "client_disconnected"
    assert_nothing_kept(db, settings)


def test_client_disconnects_mid_download(live, app, party, session_for, db):
    staff, approver = session_for(party.staff), session_for(party.approver)
    r = staff.upload(party.vendor.id, data=BIG, name="big.pdf")
    tid = r.json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    cookie, _ = signed_in(app, party.biller, approver.clock)
    with socket.create_connection(live) as s:
        s.sendall(
            f"GET /api/v1/transfers/{tid}/files/{fid}/content HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Cookie: phigate_session={cookie}\r\n\r\n".encode()
        )
        received = s.recv(256 * 1024)
        assert received.startswith(b"HTTP/1.1 200")
    aborted = wait_for(db, "transfer.download.aborted", target_id=tid)
    assert 0 < aborted.details["bytes_sent"] < len(BIG)
    assert not events(db, "transfer.download.completed", target_id=tid)
