"""Shared fixtures: the database lanes, a controllable clock, the app, factories.

Every test that touches the gateway's database runs once per lane: SQLite and
PostgreSQL.  The PostgreSQL lane skips, and says so, on a machine without a
server; under CI=true it fails instead, because no lane may silently skip.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.lanes import LANES, lane_unavailable
from tests.support.pgdb import create_database

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


# -- the server log under hostile input ----------------------------------------------

# The suite's hostile-input cases (anonymous and forged requests on every route, bad
# uploads, clients hanging up, bad sign-ins and filters): the server must answer each
# with a clean refusal, and its log must show no unhandled error and no traceback.
# Tests elsewhere opt in with @pytest.mark.hostile_input.
HOSTILE_INPUT_MODULES = (
    "tests/gateway/test_route_sweep.py",
    "tests/gateway/test_auth_login.py",
    "tests/gateway/test_auth_tokens.py",
    "tests/transfers/test_disconnects.py",
    "tests/transfers/test_upload.py",
    "tests/audit/test_api.py",
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.split("::", 1)[0] in HOSTILE_INPUT_MODULES:
            item.add_marker(pytest.mark.hostile_input)


class ServerLog(logging.Handler):
    """Every record of the gateway and of uvicorn while a test runs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def loud(self) -> list[str]:
        """Records that an operator would read as a crash: unhandled errors and tracebacks."""
        return [
            f"{r.name} {r.levelname}: {r.getMessage()[:200]}"
            for r in self.records
            if r.exc_info
            or r.stack_info
            or "unhandled error" in r.getMessage()
            or "Exception in ASGI application" in r.getMessage()
        ]


@pytest.fixture(autouse=True)
def quiet_server_log(request):
    """Hostile-input tests fail when the server log shows an unhandled error or a traceback."""
    if request.node.get_closest_marker("hostile_input") is None:
        yield None
        return
    handler = ServerLog()
    # uvicorn's loggers do not propagate to the root: listen to them as well.
    loggers = [logging.getLogger(), logging.getLogger("uvicorn"), logging.getLogger("uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    loud = handler.loud()
    assert not loud, "the server log shows unhandled errors under hostile input:\n" + "\n".join(loud)


# -- lanes ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def node() -> str:
    """The Node.js executable for the docs' JavaScript recipes (a lane: skipped with its reason, failed under CI)."""
    from tests.lanes import NODE

    reason = lane_unavailable("node")
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"node lane unavailable under CI=true: {reason}")
        pytest.skip(f"node lane SKIPPED: {reason}")
    return shutil.which(NODE)


@pytest.fixture(scope="session")
def shell() -> str:
    """bash, with curl, jq and sha256sum, for the docs' shell scripts (a lane: skipped with its reason, failed under CI)."""
    reason = lane_unavailable("shell")
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shell lane unavailable under CI=true: {reason}")
        pytest.skip(f"shell lane SKIPPED: {reason}")
    return shutil.which("bash") or "bash"


@pytest.fixture(scope="session")
def keyring_url(tmp_path_factory) -> str:
    from crypto import init_keyring

    path = tmp_path_factory.mktemp("keys") / "keyring"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_keyring(str(path))
    return f"local://{path}"


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
        url, drop = create_database()
    upgrade(url)
    yield name, url
    if drop:
        drop()


@pytest.fixture
def settings(lane, keyring_url, tmp_path):
    from gateway.config import Settings

    return Settings(
        _env_file=None,
        env="development",
        data_dir=tmp_path / "data",
        database_url=lane[1],
        storage_url=f"file://{tmp_path / 'objects'}",
        key_provider_url=keyring_url,
        cookie_secure=False,
        instance_id="test",
    )


@pytest.fixture
def components(settings):
    from gateway.auditor import alerts
    from gateway.components import Components
    from gateway.keys import GATEWAY_SECRETS_KEY
    from gateway.notifications import service as notifications

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(settings)
        alerts.install(c)
        notifications.install(c)
        c.keys.ensure_key(GATEWAY_SECRETS_KEY)
    yield c
    _truncate(c)
    c.close()


def _truncate(c) -> None:
    from gateway.models import Base

    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with c.db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # The audit tables refuse TRUNCATE (migrations 0002, 0007); the test superuser lets
            # this one transaction run without triggers to reset the database between tests.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
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


@pytest.fixture
def listening():
    """A socket bound to a free 127.0.0.1 port before the app exists, so that its settings can name the port."""
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue here until uvicorn accepts them
    yield sock
    sock.close()


@pytest.fixture
def live_server(app, listening):
    """Base URL of the app served by uvicorn in a thread: one event loop, as in production.

    The socket is listening before the thread starts, so no test waits for the server to come up.
    """
    import threading

    import uvicorn

    config = uvicorn.Config(app, log_level="warning", lifespan="off", proxy_headers=False, server_header=False)
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listening.getsockname()[1]}"
    srv.should_exit = True
    thread.join()


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

    def user(
        self,
        role: str = "practice_staff",
        org=None,
        *,
        enrolled: bool = True,
        must_change_password: bool = False,
        username: str | None = None,
    ) -> TestUser:
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
            user, _ = create_user(
                db,
                org,
                username,
                f"Test User {self.n}",
                f"{username}@example.invalid",
                role_,
                Actor.system(),
                password=password,
            )
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
    r = client.post("/api/v1/auth/mfa", json={"code": user.code()}, headers={"X-CSRF-Token": r.json()["csrf_token"]})
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
        terminalreporter.write_line("test lanes: sqlite, postgresql, browser, scale, node and shell all ran")
