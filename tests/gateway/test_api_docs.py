"""The API schema and its docs page: only for fully signed-in users, served from the gateway's own files."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.security_headers import CSP
from tests.gateway.authkit import assert_error, password_stage, session_count

VENDOR = Path(__file__).resolve().parents[2] / "gateway" / "static" / "vendor"
ROLES = ("practice_staff", "practice_approver", "biller", "auditor", "admin")


def test_anonymous_callers_get_no_schema_and_are_sent_to_sign_in(app, components):
    with TestClient(app, follow_redirects=False) as anon:
        for headers in (
            {},
            {"Cookie": f"phigate_session={secrets.token_urlsafe(32)}"},
            {"Authorization": "Bearer phg_" + secrets.token_urlsafe(32)},
        ):
            r = anon.get("/api/openapi.json", headers=headers)
            error = assert_error(r, 401, "invalid_token" if "Authorization" in headers else "not_authenticated")
            assert set(r.json()) == {"error"} and "/api/v1/" not in r.text, error
            page = anon.get("/api/docs", headers=headers)
            assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fapi%2Fdocs"
            assert "swagger" not in page.text.lower()
    assert session_count(components) == 0


def test_half_signed_in_gets_no_schema(client, factory):
    user = factory.user("biller")
    password_stage(client, user)
    r = client.get("/api/openapi.json")
    assert_error(r, 401, "mfa_required")
    assert "paths" not in r.json()
    page = client.get("/api/docs", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/mfa?next=%2Fapi%2Fdocs"


@pytest.mark.parametrize("role", ROLES)
def test_every_signed_in_role_gets_the_schema_and_the_page(client, factory, login, role):
    user = factory.user(role)
    login(client, user)
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200 and schema.headers["content-type"] == "application/json"
    assert "/api/v1/transfers" in schema.json()["paths"] and "/api/v1/partners" in schema.json()["paths"]
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # The strict CSP, unchanged: the page needs no exception to it.
    assert page.headers["content-security-policy"] == CSP
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page.text, flags=re.S)
    assert [attrs.split('src="')[1].split('"')[0] for attrs, _ in scripts] == [
        "/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/static/api-docs.js",
    ]
    assert all(body.strip() == "" for _, body in scripts), "no inline script"
    assert "http://" not in page.text and "https://" not in page.text, "nothing from another site"
    assert 'href="/static/vendor/swagger-ui/swagger-ui.css"' in page.text


def test_an_api_token_reads_the_schema(client, factory, login, fake_clock):
    user = factory.user("practice_staff")
    csrf = login(client, user, fake_clock)
    r = client.post(
        "/api/v1/auth/tokens", json={"name": "generator", "code": user.code()}, headers={"X-CSRF-Token": csrf}
    )
    assert r.status_code == 201, r.text
    client.cookies.clear()
    schema = client.get("/api/openapi.json", headers={"Authorization": f"Bearer {r.json()['token']}"})
    assert schema.status_code == 200 and "/api/v1/partners" in schema.json()["paths"]


def test_swagger_ui_matches_its_record_and_is_served_by_the_gateway(client):
    record = json.loads((VENDOR / "swagger-ui.json").read_text())
    assert record["package"] == "swagger-ui-dist" and record["license"] == "Apache-2.0"
    assert set(record["files"]) == {"swagger-ui-bundle.js", "swagger-ui.css"}
    assert "Apache License" in (VENDOR / "swagger-ui" / "LICENSE").read_text()
    for name, digest in record["files"].items():
        assert hashlib.sha256((VENDOR / "swagger-ui" / name).read_bytes()).hexdigest() == digest
        served = client.get(f"/static/vendor/swagger-ui/{name}")
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == digest
    own = client.get("/static/api-docs.js")
    assert own.status_code == 200 and "SwaggerUIBundle" in own.text
