"""The operator's CLI: organisations, users, redacted configuration, the demo and its refusal in
production. Runs in-process (typer's CliRunner) against the lane's database."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from gateway import clock
from gateway.auth import totp
from tests.gateway.authkit import assert_error, events, last_event, user_row


@pytest.fixture
def cli(monkeypatch, settings, components, tmp_path):
    """Run `phigate ...` with PHIGATE_* pointing at this test's data dir and lane database."""
    from gateway.cli import app

    for key in list(os.environ):
        if key.startswith("PHIGATE_"):
            monkeypatch.delenv(key)
    data = tmp_path / "cli-data"
    monkeypatch.setenv("PHIGATE_DATA_DIR", str(data))
    monkeypatch.setenv("PHIGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PHIGATE_KEY_PROVIDER_URL", settings.key_provider_url)
    monkeypatch.setenv("PHIGATE_STORAGE_URL", settings.storage_url)
    runner = CliRunner()

    def run(*args, env=None, input=None):
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    run.data = data
    return run


def _user_id(components, username):
    from sqlalchemy import select

    from gateway.users.models import User

    with components.db.sessions() as s:
        uid = s.scalar(select(User.id).where(User.username == username))
        s.rollback()
        return uid


def test_org_and_user_lifecycle(cli, components, client):
    r = cli("org", "create", "Hillside Clinic", "--kind", "practice")
    assert r.exit_code == 0, r.output
    org_id = r.output.split()[0]
    ev = last_event(components, "admin.org.created")
    assert ev.target_id == org_id and ev.user_agent.startswith("phigate-cli")
    assert cli("org", "create", "Bad", "--kind", "hospital").exit_code == 2
    r = cli("org", "create", "Hillside Clinic", "--kind", "vendor")
    assert r.exit_code == 1 and "org_exists" in r.output
    assert "Hillside Clinic" in cli("org", "list").output
    r = cli("org", "create", "Hudson Billing", "--kind", "vendor", "--timezone", "America/NewYork")
    assert r.exit_code == 1 and "invalid_timezone" in r.output and "Hudson Billing" not in cli("org", "list").output
    r = cli("org", "create", "Hudson Billing", "--kind", "vendor", "--timezone", "America/New_York", "--hours", "7-19")
    assert r.exit_code == 1 and "invalid_hours" in r.output
    r = cli("org", "create", "Hudson Billing", "--kind", "vendor", "--timezone", "America/New_York", "--hours", "07-19")
    assert r.exit_code == 0, r.output
    ev = last_event(components, "admin.org.created")
    assert ev.details == {"kind": "vendor", "timezone": "America/New_York", "signin_hours": "07-19"}

    r = cli(
        "user",
        "create",
        "dana",
        "--org",
        "Hillside Clinic",
        "--role",
        "practice_staff",
        "--name",
        "Dana Example",
        "--email",
        "dana@example.invalid",
    )
    assert r.exit_code == 0, r.output
    otp = r.output.split("one-time password: ")[1].strip()
    uid = _user_id(components, "dana")
    assert last_event(components, "admin.user.created").target_id == uid
    r = cli(
        "user",
        "create",
        "bo.biller",
        "--org",
        org_id,
        "--role",
        "biller",
        "--name",
        "Bo",
        "--email",
        "b@example.invalid",
    )
    assert r.exit_code == 1 and "role_org_mismatch" in r.output
    assert _user_id(components, "bo.biller") is None
    assert (
        cli(
            "user", "create", "x1", "--org", org_id, "--role", "root", "--name", "X", "--email", "x@example.invalid"
        ).exit_code
        == 2
    )

    # The one-time password leads to enrolment.
    r = client.post("/api/v1/auth/login", json={"username": "dana", "password": otp})
    assert r.status_code == 200 and r.json()["stage"] == "enrol"

    listing = cli("user", "list", "--org", "Hillside Clinic").output
    assert "dana" in listing and "mfa=no" in listing and "active" in listing
    assert cli("user", "disable", "dana").exit_code == 0
    assert user_row(components, uid).active is False
    assert last_event(components, "admin.user.disabled").target_id == uid
    # The disable killed the half-authenticated session too.
    assert_error(
        client.post("/api/v1/auth/mfa/enrol", headers={"X-CSRF-Token": r.json()["csrf_token"]}),
        401,
        "not_authenticated",
    )
    assert "disabled" in cli("user", "list").output
    assert cli("user", "enable", "dana").exit_code == 0
    assert user_row(components, uid).active is True
    assert cli("user", "set-role", "dana", "practice_approver").exit_code == 0
    assert user_row(components, uid).role.value == "practice_approver"
    r = cli("user", "set-role", "dana", "biller")
    assert r.exit_code == 1 and "role_org_mismatch" in r.output
    r = cli("user", "disable", "nobody")
    assert r.exit_code == 1 and "user_not_found" in r.output
    assert [e.action for e in events(components) if e.target_id == uid][-2:] == [
        "admin.user.enabled",
        "admin.user.role_changed",
    ]


def test_config_show_redacts_secrets(cli):
    env = {
        "PHIGATE_DATABASE_URL": "postgresql+psycopg://phigate:hunter2secret@db.internal:5432/phigate",
        "PHIGATE_STORAGE_URL": "s3://bucket?region=us-east-1&secret_key=topsecretvalue",
    }
    r = cli("config", "show", env=env)
    assert r.exit_code == 0
    assert "hunter2secret" not in r.output and "topsecretvalue" not in r.output
    assert "PHIGATE_DATABASE_URL=postgresql+psycopg://phigate:**********@db.internal:5432/phigate" in r.output
    assert "region=us-east-1" in r.output
    assert "PHIGATE_COOKIE_SECURE=" in r.output


def test_demo_json_credentials_file_and_sign_in(cli, client, components):
    r = cli("demo", "--json")
    assert r.exit_code == 0, r.output
    creds = json.loads(r.output)
    assert {u["role"] for u in creds["users"]} == {"practice_staff", "practice_approver", "biller", "auditor", "admin"}
    assert {u["status"] for u in creds["users"]} == {"ready"}
    path = cli.data / "demo-credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = {
        u["username"]: (u["user_id"], u["password"], u["totp_secret"]) for u in json.loads(path.read_text())["users"]
    }
    assert stored == {u["username"]: (u["user_id"], u["password"], u["totp_secret"]) for u in creds["users"]}
    # Every use prints the same credentials; nothing is seeded twice.
    again = cli("demo", "--json")
    assert json.loads(again.output) == creds
    assert len(events(components, "admin.org.created")) == 3
    text = cli("demo").output
    assert "demo-admin" in text and creds["users"][0]["totp_secret"] in text

    biller = next(u for u in creds["users"] if u["role"] == "biller")
    r = client.post("/api/v1/auth/login", json={"username": biller["username"], "password": biller["password"]})
    assert r.status_code == 200 and r.json()["stage"] == "mfa"
    r = client.post(
        "/api/v1/auth/mfa",
        json={"code": totp.code_at(biller["totp_secret"], clock.now())},
        headers={"X-CSRF-Token": r.json()["csrf_token"]},
    )
    assert r.status_code == 200
    me = client.get("/api/v1/auth/me").json()
    assert me["role"] == "biller" and me["org_kind"] == "vendor" and me["must_change_password"] is False


def test_demo_is_refused_in_production(cli, components):
    prod = {
        "PHIGATE_ENV": "production",
        "PHIGATE_ALLOW_LOCAL_KEYRING": "true",
        "PHIGATE_COOKIE_SECURE": "true",
        "PHIGATE_PUBLIC_URL": "https://gateway.example",
    }
    r = cli("demo", "--json", env=prod)
    assert r.exit_code == 2 and "refused in production" in r.output
    assert not (cli.data / "demo-credentials.json").exists()
    assert events(components, "admin.org.created") == []


def test_production_refusals_reach_every_command(cli):
    r = cli("org", "list", env={"PHIGATE_ENV": "production", "PHIGATE_COOKIE_SECURE": "false"})
    assert r.exit_code == 2
    assert "PHIGATE_COOKIE_SECURE=false" in r.output and "local keyring" in r.output
    r = cli("config", "show", env={"PHIGATE_ENV": "production"})
    assert r.exit_code == 0 and "refused in production" in r.output
