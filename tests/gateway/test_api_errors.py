"""The schema declares the error answers the API really sends: one body for all, per operation the statuses
its route can answer (gateway/api_errors.py); the answers themselves have that shape."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gateway import api_errors
from retention.models import RetentionPolicy
from tests.gateway.authkit import assert_error, event_count

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture
def schema(app):
    return app.openapi()


def _operations(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield method.upper(), path, op


def test_every_error_answer_has_the_error_body_and_never_fastapis_shape(schema):
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    assert "ValidationError" not in schema["components"]["schemas"]
    body = schema["components"]["schemas"]["ErrorBody"]
    assert body["required"] == ["error"]
    assert schema["components"]["schemas"]["ErrorDetail"]["required"] == ["code", "message"]
    checked = 0
    for method, path, op in _operations(schema):
        for status, answer in op["responses"].items():
            if int(status) >= 400:
                [(media, declared)] = answer["content"].items()
                assert media == "application/json" and declared["schema"] == ERROR_REF, (method, path, status)
                assert set(declared["example"]["error"]) == {"code", "message"}, (method, path, status)
                assert answer["description"], (method, path, status)
                checked += 1
    assert checked > 300


def test_statuses_follow_from_each_route(schema):
    ops = {(method, path): set(op["responses"]) for method, path, op in _operations(schema)}
    for (method, path), statuses in ops.items():
        if path.startswith("/api/v1/") and path != "/api/v1/auth/login":
            # Every API operation but signing in checks the caller.
            assert {"401", "403", "429"} <= statuses, (method, path)
        if "{" in path:
            assert "404" in statuses, (method, path)
    assert {"400", "401", "403", "422", "429"} <= ops[("POST", "/api/v1/auth/login")]
    assert {"404", "416", "410", "502", "503"} <= ops[
        ("GET", "/api/v1/transfers/{transfer_id}/files/{file_id}/content")
    ]
    assert {"400", "413", "415"} <= ops[("POST", "/api/v1/transfers")]
    assert "422" not in ops[("GET", "/api/v1/auth/me")], "nothing to validate, nothing declared"
    assert ops[("GET", "/healthz")] == {"200"}
    assert "503" in ops[("GET", "/readyz")]
    retry_after = schema["paths"]["/api/v1/auth/me"]["get"]["responses"]["429"]["headers"]
    assert set(retry_after) == {"Retry-After"}


def test_the_domain_table_names_only_real_operations(app, schema):
    declared = {f"{method} {path}" for method, path, _ in _operations(schema)}
    assert set(api_errors.DOMAIN) <= declared, set(api_errors.DOMAIN) - declared
    for key, statuses in api_errors.DOMAIN.items():
        assert all(status in api_errors.MEANING and status in api_errors.EXAMPLE for status in statuses), key


def test_the_answers_have_the_declared_shape(client, factory, login):
    # 422 for bad values, 400 for a body that cannot be parsed: the declared body, not FastAPI's `detail`.
    r = client.post("/api/v1/auth/login", json={"username": 7})
    error = assert_error(r, 422, "invalid_input")
    assert set(r.json()) == {"error"} and set(error) == {"code", "message"}
    r = client.post("/api/v1/auth/login", content=b'{"username": ', headers={"Content-Type": "application/json"})
    assert_error(r, 400, "malformed_json")
    login(client, factory.user("auditor"))
    r = client.get("/api/v1/transfers/nothing-here")
    assert_error(r, 404, "transfer_not_found")


def test_huge_numbers_are_bad_input_not_a_database_error(client, factory, login):
    """Sequence numbers beyond the 64-bit columns (and alert ids beyond 32 bits) are refused before any query."""
    csrf = login(client, factory.user("auditor"))
    huge = str(2**63)
    for url in (
        f"/api/v1/audit/events/{huge}",
        f"/api/v1/audit/events?before={huge}",
        f"/api/v1/audit/proofs/inclusion?seq={huge}",
        f"/api/v1/audit/proofs/consistency?first=1&second={huge}",
        f"/api/v1/audit/timeline/x?after={huge}",
    ):
        assert_error(client.get(url), 422, "invalid_input")
    r = client.post(f"/api/v1/audit/alerts/{2**31}/acknowledge", headers={"X-CSRF-Token": csrf})
    assert_error(r, 422, "invalid_input")
    # At the edge: a valid number that names nothing.
    assert_error(client.get(f"/api/v1/audit/events/{2**63 - 1}"), 404, "event_not_found")


def test_a_value_the_database_cannot_hold_is_bad_input(client, factory, login, lane, components):
    """PostgreSQL holds no NUL in text: a NUL in an id is refused as bad input (SQLite stores it, and finds
    nothing), never a server error; nothing is written either way."""
    csrf = login(client, factory.user("admin"))
    before = event_count(components)
    r = client.put(
        "/api/v1/retention/policies",
        json={"practice_id": "org\x00x", "keep_days": 30},
        headers={"X-CSRF-Token": csrf},
    )
    by_path = client.post("/api/v1/users/usr%00x/disable", headers={"X-CSRF-Token": csrf})
    for answer in (r, by_path):
        if lane[0] == "postgresql":
            assert_error(answer, 422, "invalid_input")
        else:
            assert answer.status_code == 404 and set(answer.json()) == {"error"}, answer.text
    with components.db.snapshot() as db:
        assert db.scalar(select(func.count()).select_from(RetentionPolicy)) == 0
    # The refusals are recorded (request.refused), nothing else.
    assert event_count(components) - before <= 2


def test_declared_content_types_of_the_exports_and_certificates(schema):
    def content(path):
        return set(schema["paths"][path]["get"]["responses"]["200"]["content"])

    assert content("/api/v1/audit/export.csv") == {"text/csv"}
    assert content("/api/v1/audit/export.jsonl") == {"application/x-ndjson"}
    assert content("/api/v1/certificates/{cert_id}/pdf") == {"application/pdf"}


def test_anonymous_error_answers_match_the_schema(app, schema):
    with TestClient(app) as anon:
        r = anon.get("/api/v1/transfers")
    assert r.status_code == 401 and "401" in schema["paths"]["/api/v1/transfers"]["get"]["responses"]
    assert set(r.json()) == {"error"}
