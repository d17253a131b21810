"""Many people at once on one server, on both database lanes.

Wave 1 deadlocked here on its embedded default (SQLite): the event loop blocked on
`BEGIN IMMEDIATE` inside an async dependency while a finished request kept the write
lock until its session was closed, which needed the blocked loop; only the 30 s busy
timeout broke the knot. These tests drive a real uvicorn server (one event loop, as
in production) from parallel threads, and would time out or answer 500 on that code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import text

from gateway.audit.service import Actor
from gateway.auth import service as auth
from gateway.auth import totp
from gateway.users.models import User

# Far below the 30 s busy timeout that used to be the only way out of a deadlock.
TIMEOUT = 10.0


def _token(components, user) -> str:
    with components.db.transaction() as db:
        _, raw = auth.create_api_token(db, components.settings, db.get(User, user.id), "load", 1, Actor.system())
    return raw


def _parallel(n: int, fn) -> list:
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, range(n)))


def test_two_loops_of_lists_with_one_token(live_server, factory, components):
    staff = factory.user("practice_staff")
    headers = {"Authorization": f"Bearer {_token(components, staff)}"}

    def loop(_):
        with httpx.Client(base_url=live_server, timeout=TIMEOUT, headers=headers) as client:
            return [client.get("/api/v1/transfers").status_code for _ in range(25)]

    assert _parallel(2, loop) == [[200] * 25] * 2


def test_parallel_sign_ins_and_health(live_server, factory):
    users = [factory.user("biller") for _ in range(5)]

    def sign_in(i):
        with httpx.Client(base_url=live_server, timeout=TIMEOUT) as client:
            r = client.post("/api/v1/auth/login", json={"username": users[i].username, "password": users[i].password})
            assert r.status_code == 200, r.text
            r = client.post(
                "/api/v1/auth/mfa", json={"code": users[i].code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]}
            )
            return r.status_code, r.json().get("stage"), client.get("/healthz").status_code

    assert _parallel(5, sign_in) == [(200, "full", 200)] * 5


def test_parallel_enrolments(live_server, factory, components):
    users = [factory.user("practice_staff", enrolled=False) for _ in range(4)]

    def enrol(i):
        with httpx.Client(base_url=live_server, timeout=TIMEOUT) as client:
            r = client.post("/api/v1/auth/login", json={"username": users[i].username, "password": users[i].password})
            assert r.status_code == 200 and r.json()["stage"] == "enrol", r.text
            csrf = {"X-CSRF-Token": r.json()["csrf_token"]}
            r = client.post("/api/v1/auth/mfa/enrol", headers=csrf)
            assert r.status_code == 200, r.text
            code = totp.code_at(r.json()["secret"], factory.clock.current)
            r = client.post("/api/v1/auth/mfa/enrol/confirm", json={"code": code}, headers=csrf)
            return r.status_code, len(r.json().get("recovery_codes", []))

    assert _parallel(4, enrol) == [(200, 10)] * 4


def test_a_reader_never_waits_for_a_writer(live_server, factory, components, lane):
    """While another transaction holds the write lock, signed-in reads still answer at once.

    SQLite: a connection in `BEGIN IMMEDIATE` holds the database's one write lock. PostgreSQL:
    a transaction holds EXCLUSIVE locks on the tables a read touches (they admit only readers).
    """
    staff = factory.user("practice_staff")
    headers = {"Authorization": f"Bearer {_token(components, staff)}"}
    with httpx.Client(base_url=live_server, timeout=TIMEOUT, headers=headers) as client:
        assert client.get("/api/v1/transfers").status_code == 200  # records the token's first use
        with components.db.engine.connect() as held:
            if lane[0] == "sqlite":
                held.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: this connection now holds the write lock
            else:
                held.execute(text("LOCK TABLE transfers, api_tokens, users, organisations IN EXCLUSIVE MODE"))
            for path in ("/api/v1/transfers", "/api/v1/auth/me", "/api/v1/auth/tokens", "/healthz", "/readyz"):
                assert client.get(path).status_code == 200, path
            held.rollback()
