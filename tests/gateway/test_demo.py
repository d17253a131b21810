"""`phigate demo` shows what the database holds: a new database is seeded afresh, credentials the database does
not honour are never printed, a disabled account is never shown as usable, and `--reset` starts over."""

from __future__ import annotations

import json
import warnings

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway import clock
from gateway.auth import totp
from tests.gateway.authkit import events
from tests.gateway.test_cli import cli  # noqa: F401 - fixture


def _demo(cli, env=None):
    r = cli("demo", "--json", env=env)
    assert r.exit_code == 0, r.output
    return {u["username"]: u for u in json.loads(r.stdout)["users"]}


def _signs_in(app, user: dict) -> bool:
    """Password, then the TOTP code of now, through the API."""
    with TestClient(app) as c:
        r = c.post("/api/v1/auth/login", json={"username": user["username"], "password": user["password"]})
        if r.status_code != 200:
            return False
        r = c.post(
            "/api/v1/auth/mfa",
            json={"code": totp.code_at(user["totp_secret"], clock.now())},
            headers={"X-CSRF-Token": r.json()["csrf_token"]},
        )
        return r.status_code == 200


@pytest.fixture
def other_database(lane, tmp_path):
    """A second, empty database of the lane's kind (not even migrated), as after pointing
    PHIGATE_DATABASE_URL somewhere new."""
    from tests.support.pgdb import create_database

    if lane[0] == "sqlite":
        yield f"sqlite:///{tmp_path / 'elsewhere' / 'phigate.db'}"
        return
    url, drop = create_database()
    yield url
    drop()


def _app_on(settings, url):
    from gateway.app import create_app
    from gateway.components import Components

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(settings.model_copy(update={"database_url": url}))
    return c, create_app(c.settings, c)


def test_a_new_database_is_seeded_afresh_and_each_keeps_its_credentials(cli, settings, other_database, app):
    first = _demo(cli)
    assert _signs_in(app, first["demo-biller"])

    # The same data directory, a new and empty database: the demo's file holds credentials of
    # accounts that do not exist there, so the demo seeds that database instead of printing them.
    second = _demo(cli, env={"PHIGATE_DATABASE_URL": other_database})
    assert all(u["status"] == "ready" for u in second.values())
    assert {u["user_id"] for u in second.values()}.isdisjoint(u["user_id"] for u in first.values())
    other, other_app = _app_on(settings, other_database)
    try:
        assert _signs_in(other_app, second["demo-biller"])
        assert not _signs_in(other_app, first["demo-biller"])  # what the old file said does not work there
    finally:
        other.close()

    # Back on the first database: its own accounts, with their own credentials.
    again = _demo(cli)
    assert {n: (u["user_id"], u["password"]) for n, u in again.items()} == {
        n: (u["user_id"], u["password"]) for n, u in first.items()
    }


def test_a_disabled_biller_is_never_shown_as_usable(cli, components, app):
    from gateway.baas.models import Baa, BaaStatus

    creds = _demo(cli)
    r = cli("offboard", "Demo Billing Services", "--reason", "contract ended")
    assert r.exit_code == 0, r.output
    after = _demo(cli)
    biller = after["demo-biller"]
    assert biller["status"].startswith("disabled") and "password" not in biller and "totp_secret" not in biller
    assert all(u["status"] == "ready" for n, u in after.items() if n != "demo-biller")
    text = cli("demo").output
    assert creds["demo-biller"]["password"] not in text and creds["demo-biller"]["totp_secret"] not in text
    assert "Not usable" in text and "demo-biller" in text.split("Not usable")[1]
    assert not _signs_in(app, creds["demo-biller"])
    # The demo does not undo the offboarding: no new BAA with the vendor.
    with components.db.snapshot() as db:
        assert db.scalar(select(func.count()).select_from(Baa).where(Baa.status == BaaStatus.active)) == 0


def test_credentials_the_database_does_not_honour_are_not_printed(cli, app):
    creds = _demo(cli)
    assert cli("user", "reset-password", "demo-staff").exit_code == 0
    after = _demo(cli)
    assert after["demo-staff"]["status"].startswith("password changed") and "password" not in after["demo-staff"]
    assert after["demo-approver"]["status"] == "ready" and _signs_in(app, after["demo-approver"])

    # The file is lost: nothing is printed as usable, and nobody is created twice.
    (cli.data / "demo-credentials.json").unlink()
    lost = _demo(cli)
    assert {u["status"] for u in lost.values()} == {"credentials unknown (not in demo-credentials.json)"}
    assert all("password" not in u for u in lost.values())
    assert {u["user_id"] for u in lost.values()} == {u["user_id"] for u in creds.values()}
    assert "--reset" in cli("demo").output


def test_reset_starts_the_demo_over(cli, components, app):
    old = _demo(cli)
    assert cli("org", "create", "Scratch Clinic", "--kind", "practice").exit_code == 0
    # Asked first; a no changes nothing.
    r = cli("demo", "--reset", input="n\n")
    assert r.exit_code == 1 and "Scratch Clinic" in cli("org", "list").output

    r = cli("demo", "--reset", "--yes", "--json")
    assert r.exit_code == 0, r.output
    new = {u["username"]: u for u in json.loads(r.stdout)["users"]}
    assert all(u["status"] == "ready" for u in new.values())
    assert {u["user_id"] for u in new.values()}.isdisjoint(u["user_id"] for u in old.values())
    assert "Scratch Clinic" not in cli("org", "list").output
    assert _signs_in(app, new["demo-admin"]) and not _signs_in(app, old["demo-admin"])
    # The audit log started over with the database: its first events are the new demo's.
    assert events(components)[0].action == "admin.org.created"


def test_reset_is_refused_in_production(cli, components):
    assert cli("org", "create", "Real Clinic", "--kind", "practice").exit_code == 0
    prod = {
        "PHIGATE_ENV": "production",
        "PHIGATE_ALLOW_LOCAL_KEYRING": "true",
        "PHIGATE_COOKIE_SECURE": "true",
        "PHIGATE_PUBLIC_URL": "https://gateway.example",
    }
    before = len(events(components))
    r = cli("demo", "--reset", "--yes", env=prod)
    assert r.exit_code == 2 and "demo data is refused in production" in r.output
    assert len(events(components)) == before and "Real Clinic" in cli("org", "list").output
    assert not (cli.data / "demo-credentials.json").exists()
