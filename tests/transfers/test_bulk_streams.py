"""Uploads and downloads take turns for the process's bulk places; reads never wait behind them (gateway/bulk.py).

Against the real server (uvicorn on a loopback port), with one place: a download whose client stops reading
holds it, an upload waits for it without a thread, and lists, the inbox and health answer meanwhile.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.bulk import BulkStreams
from tests.transfers.conftest import PDF, events
from tests.transfers.test_disconnects import BIG, live, signed_in  # noqa: F401 - `live` is a fixture


def _until(condition, what: str) -> None:
    for _ in range(600):  # bounded: the server's other thread gets there in a moment
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _response(sock: socket.socket) -> bytes:
    """One whole HTTP response (its head and its Content-Length of body), or what came before the server closed."""
    sock.settimeout(30)
    data = b""
    while True:
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(b":") for h in head.split(b"\r\n"))
                    if k.lower() == b"content-length"
                ),
                0,
            )
            if len(body) >= length:
                return data
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


@dataclass
class _Stage:
    """One bulk place, a transfer ready for the biller to download, and the staff member's session."""

    staff: Any
    tid: str
    fid: str
    biller_cookie: str
    staff_cookie: str
    staff_csrf: str


def _one_place(app, components, party, session_for) -> _Stage:
    components.bulk = BulkStreams(1)  # before the server's first request: its loop sizes its places from this
    staff, approver = session_for(party.staff), session_for(party.approver)
    tid = staff.upload(party.vendor.id, data=BIG, name="big.pdf").json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    biller_cookie, _ = signed_in(app, party.biller, approver.clock)
    staff_cookie, staff_csrf = signed_in(app, party.staff, approver.clock)
    return _Stage(staff, tid, fid, biller_cookie, staff_cookie, staff_csrf)


def _stalled_download(live, tid: str, fid: str, cookie: str) -> socket.socket:
    """A download whose client reads nothing more after the first bytes: it holds its bulk place until closed."""
    download = socket.socket()
    download.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    download.connect(live)
    try:
        download.sendall(
            f"GET /api/v1/transfers/{tid}/files/{fid}/content HTTP/1.1\r\nHost: x\r\n"
            f"Cookie: phigate_session={cookie}\r\n\r\n".encode()
        )
        assert download.recv(4096).startswith(b"HTTP/1.1 200")
    except BaseException:
        download.close()
        raise
    return download


def test_reads_answer_while_an_upload_waits_behind_a_stalled_download(
    live, app, components, party, session_for, db, fake_clock
):
    stage = _one_place(app, components, party, session_for)
    tid, biller_cookie, staff_cookie, staff_csrf = stage.tid, stage.biller_cookie, stage.staff_cookie, stage.staff_csrf
    base = f"http://{live[0]}:{live[1]}"

    download = _stalled_download(live, tid, stage.fid, biller_cookie)
    upload = socket.create_connection(live)
    try:
        upload.sendall(
            (
                f"POST /api/v1/transfers?partner_id={party.vendor.id} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {len(PDF)}\r\nX-Purpose: APPEAL-7\r\n"
                f"Content-Disposition: attachment; filename=second.pdf\r\n"
                f"Cookie: phigate_session={staff_cookie}\r\nX-CSRF-Token: {staff_csrf}\r\n\r\n"
            ).encode()
            + PDF
        )
        _until(lambda: components.bulk.waiting == 1, "the upload waits for the download's place")

        with httpx.Client(base_url=base, timeout=30, cookies={"phigate_session": staff_cookie}) as reader:
            listed = reader.get("/api/v1/transfers")
            assert listed.status_code == 200 and [t["id"] for t in listed.json()] == [tid]
            assert reader.get("/healthz").status_code == 200
        with httpx.Client(base_url=base, timeout=30, cookies={"phigate_session": biller_cookie}) as biller:
            assert [t["id"] for t in biller.get("/api/v1/transfers/inbox").json()] == [tid]
        # The reads were answered while the upload still waited: nothing of it was stored.
        assert components.bulk.waiting == 1
        assert len(events(db, "transfer.created")) == 1
    finally:
        download.close()  # the place is free: the upload goes on

    try:
        answer = _response(upload)
    finally:
        upload.close()
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    assert len(events(db, "transfer.created")) == 2
    assert components.bulk.waiting == 0


def test_a_resumable_patch_waits_for_a_place_like_a_direct_upload(
    live, app, components, party, session_for, fake_clock
):
    from tests.uploads.conftest import Tus

    stage = _one_place(app, components, party, session_for)
    staff_cookie, staff_csrf = stage.staff_cookie, stage.staff_csrf
    created = Tus(stage.staff).create(len(PDF), partner_id=party.vendor.id)
    assert created.status_code == 201, created.text
    url = created.headers["Location"]

    download = _stalled_download(live, stage.tid, stage.fid, stage.biller_cookie)
    patch = socket.create_connection(live)
    try:
        patch.sendall(
            (
                f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(PDF)}\r\n"
                f"Cookie: phigate_session={staff_cookie}\r\nX-CSRF-Token: {staff_csrf}\r\n\r\n"
            ).encode()
            + PDF
        )
        _until(lambda: components.bulk.waiting == 1, "the PATCH waits for the download's place")
        with httpx.Client(base_url=f"http://{live[0]}:{live[1]}", timeout=30) as reader:
            where = reader.head(url, headers={"Tus-Resumable": "1.0.0", "Cookie": f"phigate_session={staff_cookie}"})
        assert where.status_code == 200 and where.headers["Upload-Offset"] == "0"  # nothing taken while it waits
    finally:
        download.close()  # the place is free: the PATCH goes on

    try:
        answer = _response(patch)
    finally:
        patch.close()
    assert answer.startswith(b"HTTP/1.1 204"), answer[:300]
    assert f"upload-offset: {len(PDF)}".encode() in answer.lower()
    assert components.bulk.waiting == 0
