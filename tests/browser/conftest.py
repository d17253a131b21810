"""Browser lane: the real gateway under uvicorn on a loopback port, driven by Debian's chromium.

The server runs in a thread of this process against its own SQLite database, on the
real clock (a browser cannot follow the fake one), and listens on a socket bound
before the thread starts, so no test has to wait for it to come up.
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import UTC, datetime
from urllib.parse import quote

import pyotp
import pytest

from tests.lanes import CHROMIUM, lane_unavailable

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The public URL is http://localhost:PORT (WebAuthn needs a secure context and a host name):
    # pin the name to the IPv4 loopback the server listens on.
    "--host-resolver-rules=MAP localhost 127.0.0.1",
]


def _require_browser_lane() -> None:
    reason = lane_unavailable("browser")
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"browser lane unavailable under CI=true: {reason}")
        pytest.skip(f"browser lane SKIPPED: {reason}")


class RealClock:
    """Stands in for the fake clock: TOTP codes follow the time the browser and server live in."""

    @property
    def current(self) -> datetime:
        return datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **_):
        raise RuntimeError("the browser lane runs on the real clock")


@pytest.fixture(autouse=True)
def fake_clock():
    """Overrides the suite's fake clock: the server thread must see real time."""
    from gateway import clock

    clock.set_source(None)
    yield RealClock()
    clock.set_source(None)


@pytest.fixture(scope="session")
def browser_database(tmp_path_factory) -> str:
    _require_browser_lane()
    from gateway.migrate import upgrade

    url = f"sqlite:///{tmp_path_factory.mktemp('browser-db') / 'phigate.db'}"
    upgrade(url)
    return url


@pytest.fixture
def settings(browser_database, keyring_url, tmp_path, listening):
    """SQLite only: the browser lane tests pages, the database lanes are covered elsewhere."""
    from gateway.config import Settings

    return Settings(
        _env_file=None,
        env="development",
        data_dir=tmp_path / "data",
        database_url=browser_database,
        storage_url=f"file://{tmp_path / 'objects'}",
        key_provider_url=keyring_url,
        cookie_secure=False,
        instance_id="browser-test",
        public_url=f"http://localhost:{listening.getsockname()[1]}",
    )


@pytest.fixture
def server(live_server):
    """Base URL of the gateway served by uvicorn on its 127.0.0.1 port (tests/conftest.py)."""
    return live_server


@pytest.fixture
def public_server(server, settings):
    """The same server at its public URL (http://localhost:PORT), where passkeys work."""
    return settings.public_url


@pytest.fixture
def browser():
    _require_browser_lane()
    from playwright.sync_api import sync_playwright

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield b
            b.close()


@pytest.fixture
def page(browser):
    """A fresh page that collects console messages, for the CSP check."""
    context = browser.new_context()
    pg = context.new_page()
    pg.console_messages_seen = []
    pg.on("console", lambda msg: pg.console_messages_seen.append((msg.type, msg.text)))
    yield pg
    context.close()


def enter_password(page, user) -> None:
    """The first step of signing in, on the sign-in form `page` shows: username and password."""
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")


def enter_code(page, base, user, *, step_offset: int = 0, landing: str | None = None) -> None:
    """The second step, the authenticator's code (`step_offset` steps ahead, as a code is taken only once); then
    the home page, or `landing`, the page a signed-out visitor asked for (carried as `?next=`)."""
    asked = f"?next={quote(landing, safe='')}" if landing else ""
    page.wait_for_url(f"{base}/mfa{asked}")
    page.fill("#code-login input[name=code]", pyotp.TOTP(user.totp_secret).at(time.time() + 30 * step_offset))
    page.click("#code-login button[type=submit]")
    page.wait_for_url(f"{base}{landing or '/home'}")


def sign_in(page, base, user, *, step_offset: int = 0) -> None:
    """Sign in at /login with password and authenticator code."""
    page.goto(f"{base}/login")
    enter_password(page, user)
    enter_code(page, base, user, step_offset=step_offset)


def send_through_api(app, sender, partner, *purposes: str) -> list[str]:
    """One transfer (a PDF) per purpose, sent through the API under one sign-in (one TOTP step); their ids."""
    from fastapi.testclient import TestClient

    from tests.conftest import api_login
    from tests.transfers.conftest import PDF

    ids = []
    with TestClient(app) as client:
        client.headers["X-CSRF-Token"] = api_login(client, sender)
        for n, purpose in enumerate(purposes, 1):
            r = client.post(
                "/api/v1/transfers",
                params={"partner_id": partner.id},
                content=PDF,
                headers={
                    "Content-Type": "application/octet-stream",
                    "X-Purpose": purpose,
                    "Content-Disposition": f"attachment; filename=appeal-{n}.pdf",
                },
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
    return ids


def csp_violations(page) -> list[str]:
    return [
        text for kind, text in page.console_messages_seen if "Content Security Policy" in text or "Refused to" in text
    ]
