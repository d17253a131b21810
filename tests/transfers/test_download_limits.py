"""Download limits count what was delivered, hold under concurrency, and no range walks around them.

Finding 3 of issue 11: a failed download counted towards the limit; with limit 1 and
16 parallel downloads PostgreSQL let two through; and after the limit was reached,
`Range: bytes=1-` answered 206 with the whole file but its first byte, any number of
times.
"""

from __future__ import annotations

import http.client
import threading

import pytest
from sqlalchemy import select

from gateway.transfers.models import Download
from tests.transfers.conftest import events, sealed_of
from tests.transfers.test_disconnects import live, signed_in  # noqa: F401 - the uvicorn fixture
from tests.transfers.test_gates import BIG, approved, denial


def test_a_range_cannot_walk_around_a_reached_limit(party, session_for, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=1, upload={"data": BIG})
    assert biller.download(tid, fid).content == BIG
    for header in ("bytes=1-", "bytes=1-", "bytes=0-", "bytes=-1", f"bytes={len(BIG) - 1}-"):
        r = biller.download(tid, fid, Range=header)
        assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
        assert BIG[1:100] not in r.content
    assert denial(db, tid) == "limit_reached"


def test_a_failed_download_gives_its_place_back(party, session_for, components, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=1, upload={"data": BIG})
    object_key = sealed_of(db, fid).object_key
    ciphertext = b"".join(components.store.get(object_key))
    components.store.destroy(object_key)  # storage lost it (a restore is under way)

    r = biller.download(tid, fid)
    assert r.status_code == 503 and r.json()["error"]["code"] == "storage_unavailable"
    failed = events(db, "transfer.download.failed", target_id=tid)[-1]
    assert failed.details["reason"] == "object_missing" and failed.details["released"] is True
    assert failed.severity.value == "warning" and failed.details["alert"] is False

    components.store.put(object_key, iter([ciphertext]))  # restored
    r = biller.download(tid, fid)
    assert r.status_code == 200 and r.content == BIG
    r = biller.download(tid, fid)
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
    outcomes = sorted(d.outcome for d in db.scalars(select(Download).where(Download.file_id == fid)))
    db.commit()
    assert outcomes == ["completed", "failed"]


def test_a_paused_download_resumes_from_what_was_delivered_only(party, session_for, components, db):
    from gateway.audit.service import Actor
    from gateway.auth.service import Principal
    from gateway.transfers import download
    from gateway.users.models import User

    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid, fid = approved(staff, approver, party, download_limit=1, upload={"data": BIG})
    user = db.get(User, party.biller.id)
    principal = Principal(user, None, None, Actor(user.id, user.org_id, "127.0.0.1", "test"))
    prepared = download.prepare(components, db, principal, tid, fid, None)
    got = b""
    for _ in range(64):  # a little over two segments' worth, then the connection drops
        got += next(prepared.body)
        if len(got) > 2 * 1024 * 1024:
            break
    prepared.body.close()
    db.commit()
    delivered = len(got)
    assert 2 * 1024 * 1024 < delivered < len(BIG)

    # The place is held: another biller cannot start a download, and neither can this one from the start.
    other = session_for(party.biller2)
    assert other.download(tid, fid).json()["error"]["code"] == "download_limit_reached"
    for header in (None, "bytes=0-", "bytes=100-"):
        r = biller.download(tid, fid, **({"Range": header} if header else {}))
        assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
    # Bytes beyond what was delivered are not a resumption either (they would leave twice later).
    r = biller.download(tid, fid, Range=f"bytes={delivered + 5}-")
    assert r.status_code == 403
    # Resuming from what was delivered completes the download...
    r = biller.download(tid, fid, Range=f"bytes={delivered}-")
    assert r.status_code == 206 and got + r.content == BIG
    # ... and after that nothing of the file leaves again.
    r = biller.download(tid, fid, Range=f"bytes={delivered}-")
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
    [d] = db.scalars(select(Download).where(Download.file_id == fid)).all()
    db.commit()
    assert (d.outcome, d.delivered_to, d.resumptions) == ("completed", len(BIG), 1)


def test_a_limit_of_one_lets_exactly_one_of_sixteen_parallel_downloads_through(
    live, app, party, session_for, fake_clock, db
):
    """Twenty rounds of sixteen simultaneous downloads against the real server (uvicorn, loopback)."""
    staff, approver = session_for(party.staff), session_for(party.approver)
    cookies = [signed_in(app, user, fake_clock)[0] for user in (party.biller, party.biller2)]
    data = BIG[: 256 * 1024]
    for _ in range(20):
        tid, fid = approved(staff, approver, party, download_limit=1, upload={"data": data})
        results: list[tuple[int, bytes]] = []
        start = threading.Barrier(16)

        def fetch(i: int) -> None:
            conn = http.client.HTTPConnection(*live, timeout=60)
            try:
                start.wait(timeout=60)
                conn.request(
                    "GET",
                    f"/api/v1/transfers/{tid}/files/{fid}/content",
                    headers={"Cookie": f"phigate_session={cookies[i % 2]}"},
                )
                resp = conn.getresponse()
                results.append((resp.status, resp.read()))
            finally:
                conn.close()

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(results) == 16
        assert sorted(status for status, _ in results) == [200] + [403] * 15
        assert [body for status, body in results if status == 200] == [data]
        completed = list(db.scalars(select(Download).where(Download.file_id == fid)))
        db.commit()
        assert [d.outcome for d in completed] == ["completed"]
        assert len(events(db, "transfer.download.completed", target_id=tid)) == 1


@pytest.fixture(autouse=True)
def _quiet_access_log():
    """uvicorn's access log would print 320 lines per lane."""
    import logging

    logger = logging.getLogger("uvicorn.access")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
