"""docs/api.md against the real API: every operation of the live schema is documented, nothing documented is
missing from it, and the error table lists exactly the (status, code) pairs the gateway can answer."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.error_codes import HANDLER_CODES, ROOT, api_error_codes

API_MD = ROOT / "docs" / "api.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
# `METHOD /path` in backticks; a query (`?...`) or optional part (`[...]`) may follow the path.
OPERATION = re.compile(rf"`({'|'.join(METHODS)}) (/[^`\s?\[]*)")
# A bare API path in backticks, e.g. `/api/v1/partners`.
BARE_PATH = re.compile(r"`(/api/v1/[^`\s?\[]*)")
ERROR_ROW = re.compile(r"^\| (\d{3}) \| `([a-z0-9_]+)` \|", re.M)
# Served outside the schema by design (gateway/api_docs.py: behind sign-in, not an operation of the API).
NOT_IN_SCHEMA = {("GET", "/api/openapi.json"), ("GET", "/api/docs")}


def _normalise(path: str) -> str:
    """Paths in api.md are relative to /api/v1 unless they name another root; parameter names do not matter."""
    if not path.startswith(("/api/", "/healthz", "/readyz")):
        path = "/api/v1" + path
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def documented_operations(text: str) -> set[tuple[str, str]]:
    return {(method, _normalise(path)) for method, path in OPERATION.findall(text)}


def schema_operations(schema: dict) -> set[tuple[str, str]]:
    return {(method.upper(), _normalise(path)) for path, ops in schema["paths"].items() for method in ops}


def test_api_md_and_the_live_schema_name_the_same_operations(client, factory, login):
    login(client, factory.user("auditor"))
    r = client.get("/api/openapi.json")
    assert r.status_code == 200, r.text
    in_schema = schema_operations(r.json())
    text = API_MD.read_text(encoding="utf-8")
    documented = documented_operations(text)
    assert len(in_schema) > 60  # the parse found the schema, not an empty one
    assert sorted(in_schema - documented) == [], "operations of /api/openapi.json that docs/api.md never mentions"
    assert sorted(documented - in_schema - NOT_IN_SCHEMA) == [], "operations in docs/api.md the API does not have"
    paths = {path for _, path in in_schema}
    bare = {_normalise(p) for p in BARE_PATH.findall(text)}
    assert sorted(bare - paths - {path for _, path in NOT_IN_SCHEMA}) == [], "paths in docs/api.md not in the schema"
    # The two routes kept out of the schema exist, and answer only a signed-in caller (as api.md says).
    for method, path in NOT_IN_SCHEMA:
        assert client.request(method, path).status_code == 200, path
    client.cookies.clear()
    for method, path in NOT_IN_SCHEMA:
        assert client.request(method, path, follow_redirects=False).status_code in (303, 401), path


def test_the_checks_parse_what_api_md_writes():
    """The parsers read the shapes api.md uses: a relative path, a parameter, a query, an optional part."""
    text = "`GET /transfers[?status=&limit=]` `POST /transfers/{id}/approve` `GET /api/v1/audit/export.csv?org=X` `GET /healthz`"
    assert documented_operations(text) == {
        ("GET", "/api/v1/transfers"),
        ("POST", "/api/v1/transfers/{}/approve"),
        ("GET", "/api/v1/audit/export.csv"),
        ("GET", "/healthz"),
    }
    assert schema_operations({"paths": {"/api/v1/transfers/{transfer_id}/approve": {"post": {}}}}) == {
        ("POST", "/api/v1/transfers/{}/approve")
    }


def error_table(text: str) -> str:
    """The table after "**Error codes.**" (the tus section has a table of its own subset)."""
    after = text[text.index("**Error codes.**") :]
    start = after.index("\n| status | code | meaning |")
    end = after.find("\n\n", start + 1)
    return after[start : end if end != -1 else None]


def test_the_error_table_lists_every_code_the_gateway_answers():
    rows = ERROR_ROW.findall(error_table(API_MD.read_text(encoding="utf-8")))
    table = {(code, int(status)) for status, code in rows}
    assert len(rows) == len(table), "a (status, code) row is listed twice"
    raised = api_error_codes()
    assert sorted(raised - table) == [], "error codes the gateway answers that docs/api.md's table lacks"
    assert sorted(table - raised) == [], "error codes in docs/api.md's table that nothing raises"


def test_the_handler_codes_are_still_answered_by_app_py():
    """HANDLER_CODES is a hand-kept list: each code and its status still appear in gateway/app.py."""
    source = Path(ROOT / "gateway" / "app.py").read_text(encoding="utf-8")
    for code, status in HANDLER_CODES:
        assert f'"{code}"' in source and str(status) in source, code
