"""The server log stays quiet under hostile input: concurrent duplicates get a clean 409, and the guard that
the suite's hostile-input tests run under (tests/conftest.py) does see a traceback when there is one."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ServerLog


@pytest.mark.hostile_input
def test_racing_duplicate_creations_get_one_success_and_clean_conflicts(app, factory, login, components):
    """Eight administrators' requests create the same organisation at once, five times over.

    Whichever way the race falls (the service's existence check, or the unique constraint
    when two requests pass the check together on PostgreSQL), each loser gets 409 and the
    log shows no unhandled error.
    """
    from sqlalchemy import func, select

    from gateway.orgs.models import Organisation

    admin = factory.user("admin", factory.org("operator"))
    with TestClient(app) as first:
        csrf = login(first, admin)
        cookies = dict(first.cookies)
    for round_ in range(5):
        name = f"Racing Clinic {round_}"
        barrier = threading.Barrier(8)
        statuses: list[int] = []

        def create():
            with TestClient(app, cookies=cookies) as c:
                barrier.wait(timeout=60)
                r = c.post("/api/v1/orgs", json={"name": name, "kind": "practice"}, headers={"X-CSRF-Token": csrf})
                statuses.append(r.status_code)
                if r.status_code == 409:
                    assert r.json()["error"]["code"] in ("org_exists", "conflict")

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(statuses) == [201] + [409] * 7, statuses
        with components.db.snapshot() as db:
            assert db.scalar(select(func.count()).select_from(Organisation).where(Organisation.name == name)) == 1


def test_an_integrity_conflict_is_a_409_without_a_trace(app, factory, login, components, monkeypatch):
    """The constraint path itself, made certain: the service's own check is made to miss, as in a lost race."""
    from gateway.orgs import service

    admin = factory.user("admin", factory.org("operator"))
    handler = ServerLog()
    logging.getLogger().addHandler(handler)
    try:
        with TestClient(app) as c:
            csrf = login(c, admin)
            assert (
                c.post(
                    "/api/v1/orgs", json={"name": "Hillside", "kind": "practice"}, headers={"X-CSRF-Token": csrf}
                ).status_code
                == 201
            )
            real = service.select

            def blind(*columns):  # the existence check sees nothing, as a racing request would
                query = real(*columns)
                return query.where(False) if columns and columns[0] is service.Organisation.id else query

            monkeypatch.setattr(service, "select", blind)
            r = c.post("/api/v1/orgs", json={"name": "Hillside", "kind": "practice"}, headers={"X-CSRF-Token": csrf})
    finally:
        logging.getLogger().removeHandler(handler)
    assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
    assert "Hillside" not in r.text  # the database's message quotes values: never echoed
    assert handler.loud() == []
    assert any("constraint" in rec.getMessage() and "Hillside" not in rec.getMessage() for rec in handler.records)
    from tests.gateway.authkit import last_event

    refused = last_event(components, "request.refused")
    assert refused.details["reason"] == "conflict" and refused.actor_user_id == admin.id


def test_the_log_guard_sees_tracebacks_and_unhandled_errors():
    handler = ServerLog()
    log = logging.getLogger("phigate.test-guard")
    log.addHandler(handler)
    try:
        log.warning("storage slow: %s", "Timeout")
        assert handler.loud() == []
        try:
            raise ValueError("boom")
        except ValueError:
            log.error("something failed", exc_info=sys.exc_info())
        log.error("unhandled error on GET /x")
    finally:
        log.removeHandler(handler)
    assert len(handler.loud()) == 2
