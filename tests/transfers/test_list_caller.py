"""The transfer lists find their caller in the handler's own worker thread (deps.Caller): one thread hop for the
whole request, and every check of `require(...)` still made, in its order, before anything is read."""

from __future__ import annotations

import anyio.to_thread
from fastapi.testclient import TestClient

from gateway.users.models import User

LISTS = ("/api/v1/transfers", "/api/v1/transfers/inbox", "/api/v1/transfers/approvals")


def test_a_list_takes_one_worker_thread_hop(party, session_for, monkeypatch):
    staff = session_for(party.staff)
    assert staff.upload(party.vendor.id).status_code == 201
    hops = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func, *args, **kwargs):
        hops.append(getattr(func, "__name__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    r = staff.client.get("/api/v1/transfers")

    assert r.status_code == 200 and len(r.json()) == 1
    # The caller's lookup, the page, its encoding and the session's close: all in the handler's one hop
    # (a `def` dependency would add one, and each waits for the interpreter lock under load).
    assert len(hops) == 1, hops


def test_the_lists_refuse_whom_they_refused(app, party, session_for, components):
    with TestClient(app) as anon:
        for path in LISTS:
            r = anon.get(path)
            assert (r.status_code, r.json()["error"]["code"]) == (401, "not_authenticated"), path
            r = anon.get(path, headers={"Authorization": "Bearer phg_made_up"})
            assert (r.status_code, r.json()["error"]["code"]) == (401, "invalid_token"), path
    staff, biller, approver, auditor = (
        session_for(u) for u in (party.staff, party.biller, party.approver, party.auditor)
    )
    allowed = {
        "/api/v1/transfers": (staff, biller, approver, auditor),
        "/api/v1/transfers/inbox": (biller,),
        "/api/v1/transfers/approvals": (approver,),
    }
    for path, callers in allowed.items():
        for who in (staff, biller, approver, auditor):
            r = who.client.get(path)
            if who in callers:
                assert r.status_code == 200, (path, who.user.role, r.text)
            else:
                assert (r.status_code, r.json()["error"]["code"]) == (403, "forbidden"), (path, who.user.role)
    with components.db.transaction() as db:
        db.get_one(User, party.auditor.id).must_change_password = True
    r = auditor.client.get("/api/v1/transfers")
    assert (r.status_code, r.json()["error"]["code"]) == (403, "password_change_required")
