"""Shared fixtures: the database lanes, a controllable clock, the app, factories.

Every test that touches the gateway's database runs once per lane: SQLite and
PostgreSQL.  The PostgreSQL lane skips, and says so, on a machine without a
server; under CI=true it fails instead, because no lane may silently skip.
"""

from __future__ import annotations

import os
import secrets
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.lanes import LANES, lane_unavailable

PG_ADMIN_URL = os.environ.get("PHIGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# -- clock ------------------------------------------------------------------------

class FakeClock:
    """A clock the test moves by hand; TOTP codes and timeouts follow it."""

    def __init__(self, start: datetime):
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta) -> None:
        self.current += timedelta(**delta)


@pytest.fixture(autouse=True)
def fake_clock():
    from gateway import clock

    # Start mid-step so a test that advances 30 s always lands in the next TOTP step.
    start = datetime.now(UTC).replace(microsecond=0)
    start -= timedelta(seconds=start.second % 30 - 10)
    fc = FakeClock(start)
    clock.set_source(fc)
    yield fc
    clock.set_source(None)


@pytest.fixture(autouse=True, scope="session")
def fast_password_hashing():
    """argon2id at minimal cost in tests: same algorithm and format, a fraction of the time.

    The production parameters are asserted separately (tests/gateway/test_passwords.py).
    """
    from argon2 import PasswordHasher

    from gateway.auth import passwords

    real = passwords._hasher, passwords._DUMMY_HASH
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords._DUMMY_HASH = passwords._hasher.hash("dummy-password-for-timing")
    yield
    passwords._hasher, passwords._DUMMY_HASH = real


# -- lanes ------------------------------------------------------------------------

@pytest.fixture(scope="session")
def keyring_url(tmp_path_factory) -> str:
    from crypto import init_keyring

    path = tmp_path_factory.mktemp("keys") / "keyring"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_keyring(str(path))
    return f"local://{path}"


def _create_pg_database() -> tuple[str, callable]:
    import psycopg

    name = f"phigate_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}", drop


@pytest.fixture(scope="session", params=LANES)
def lane(request, tmp_path_factory):
    """(lane name, migrated database URL), once per test session and lane."""
    from gateway.migrate import upgrade

    name = request.param
    reason = lane_unavailable(name)
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} lane unavailable under CI=true: {reason}")
        pytest.skip(f"{name} lane SKIPPED: {reason}")
    if name == "sqlite":
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('db') / 'phigate.db'}", None
    else:
        url, drop = _create_pg_database()
    upgrade(url)
    yield name, url
    if drop:
        drop()


@pytest.fixture
def settings(lane, keyring_url, tmp_path):
    from gateway.config import Settings

    return Settings(
        _env_file=None, env="development", data_dir=tmp_path / "data", database_url=lane[1],
        storage_url=f"file://{tmp_path / 'objects'}", key_provider_url=keyring_url, cookie_secure=False,
        instance_id="test",
    )


@pytest.fixture
def components(settings):
    from gateway.components import Components
    from gateway.keys import GATEWAY_SECRETS_KEY

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(settings)
        c.keys.ensure_key(GATEWAY_SECRETS_KEY)
    yield c
    _truncate(c)
    c.close()


def _truncate(c) -> None:
    from gateway.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with c.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for t in tables:
                conn.execute(text(f"DELETE FROM {t}"))


@pytest.fixture
def db(components):
    with components.db.sessions() as session:
        yield session


@pytest.fixture
def app(components):
    from gateway.app import create_app

    return create_app(components.settings, components)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c


# -- factories --------------------------------------------------------------------

@dataclass
class TestUser:
    id: str
    username: str
    password: str
    totp_secret: str | None
    org_id: str
    role: str
    clock: FakeClock

    def code(self) -> str:
        from gateway.auth import totp

        return totp.code_at(self.totp_secret, self.clock.current)


class Factory:
    """Builds organisations and users straight through the services (not through HTTP)."""

    def __init__(self, components, clock: FakeClock):
        self.c = components
        self.clock = clock
        self.n = 0

    def org(self, kind: str = "practice", name: str | None = None):
        from gateway.audit.service import Actor
        from gateway.orgs.models import OrgKind
        from gateway.orgs.service import create_org

        self.n += 1
        with self.c.db.transaction() as db:
            return create_org(db, name or f"Test {kind} {self.n}", OrgKind(kind), Actor.system())

    def user(self, role: str = "practice_staff", org=None, *, enrolled: bool = True,
             must_change_password: bool = False, username: str | None = None) -> TestUser:
        from gateway import clock
        from gateway.audit.service import Actor
        from gateway.auth import totp
        from gateway.keys import seal_totp_secret
        from gateway.users.models import ROLE_ORG_KINDS, Role
        from gateway.users.service import create_user

        role_ = Role(role)
        if org is None:
            org = self.org(sorted(k.value for k in ROLE_ORG_KINDS[role_])[-1] if role_ != Role.auditor else "practice")
        self.n += 1
        username = username or f"user{self.n}-{role.replace('_', '-')}"
        password = f"correct horse battery {secrets.token_hex(4)}"
        secret = totp.new_secret() if enrolled else None
        with self.c.db.transaction() as db:
            user, _ = create_user(db, org, username, f"Test User {self.n}", f"{username}@example.invalid", role_,
                                  Actor.system(), password=password)
            user.must_change_password = must_change_password
            if secret:
                user.totp_secret_sealed = seal_totp_secret(self.c.keys, user.id, secret)
                user.totp_enrolled_at = clock.now()
            return TestUser(user.id, username, password, secret, org.id, role, self.clock)


@pytest.fixture
def factory(components, fake_clock) -> Factory:
    return Factory(components, fake_clock)


def api_login(client, user: TestUser, clock: FakeClock | None = None) -> str:
    """Sign in through the API (password, then TOTP); returns the session's CSRF token."""
    r = client.post("/api/v1/auth/login", json={"username": user.username, "password": user.password})
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "mfa"
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()},
                    headers={"X-CSRF-Token": r.json()["csrf_token"]})
    assert r.status_code == 200, r.text
    if clock is not None:
        clock.advance(seconds=30)  # the next code is a fresh step
    return r.json()["csrf_token"]


@pytest.fixture
def login():
    return api_login


def pytest_terminal_summary(terminalreporter):
    """Say plainly which lanes ran and which were skipped on this machine."""
    reasons = set()
    for rep in terminalreporter.stats.get("skipped", []):
        longrepr = rep.longrepr
        message = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        if "lane SKIPPED" in message:
            reasons.add(message.removeprefix("Skipped: "))
    if reasons:
        terminalreporter.write_sep("!", "TEST LANES SKIPPED ON THIS MACHINE")
        for reason in sorted(reasons):
            terminalreporter.write_line(reason)
    else:
        terminalreporter.write_line("test lanes: sqlite, postgresql, browser and scale all ran")
