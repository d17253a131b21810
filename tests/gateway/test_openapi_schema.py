"""The schema against the routes: nothing the API serves, reads or answers is left out of /api/openapi.json.

The routes are found on their own (every `gateway/*/routes.py` router), not through the helper
that builds the schema, and the headers read by hand are found by reading the adapters' source.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute

from gateway.api_docs import CSRF, CSRF_HEADER, SESSION

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
API = "/api/v1"
SAFE = {"get", "head", "options"}

# Operations anyone may call: signing in, and the probes (they reveal component state only).
PUBLIC = {("post", f"{API}/auth/login"), ("get", "/healthz"), ("get", "/readyz")}

# Headers an adapter reads by hand that are not header parameters, and where the schema says them instead.
NOT_PARAMETERS = {
    "content-type": "the request body's media type (requestBody.content)",
    "content-length": "the request body's length, set by the HTTP client",
    "authorization": "the apiToken security scheme",
    CSRF_HEADER.lower(): "a header parameter of every operation whose security has the csrfToken scheme (checked below)",
    "origin": "set by browsers (CSRF defence beside SameSite): a client does not choose it",
    "sec-fetch-site": "set by browsers (fetch metadata): a client does not choose it",
    "host": "set by every HTTP client",
    "user-agent": "set by every HTTP client; recorded, never required",
    "x-forwarded-for": "set by the trusted reverse proxy, not by the client",
}
# The adapters that serve the API: every domain's routes, and the request machinery they share.
SCANNED = sorted(GATEWAY.glob("*/routes.py")) + [GATEWAY / name for name in ("deps.py", "app.py", "web.py")]


def api_routes() -> list[tuple[str, str, APIRoute]]:
    """(method, path, route) of every route of every API router, as mounted under /api/v1 (gateway/app.py)."""
    found = []
    for path in sorted(GATEWAY.glob("*/routes.py")):
        module = importlib.import_module(f"gateway.{path.parent.name}.routes")
        for router in [v for v in vars(module).values() if isinstance(v, APIRouter)]:
            for route in router.routes:
                assert isinstance(route, APIRoute), route
                found += [(method.lower(), API + route.path_format, route) for method in route.methods]
    return found


def header_reads(path: Path) -> set[str]:
    """Header names read by hand in a module: `x.headers.get("name")` and `x.headers["name"]`."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            if isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "headers" and node.args:
                target = node.args[0]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "headers"
        ):
            target = node.slice
        if target is not None:
            assert isinstance(target, ast.Constant) and isinstance(target.value, str), (
                f"{path.name}:{node.lineno}: a header read by a computed name cannot be checked against the schema"
            )
            names.add(target.value.lower())
    return names


def header_params(route: APIRoute) -> set[str]:
    """The header parameters a route's dependency tree declares (FastAPI reads them for the handler)."""
    names, pending = set(), [route.dependant]
    while pending:
        dependant = pending.pop()
        names |= {(p.alias or p.name).lower() for p in dependant.header_params}
        pending += dependant.dependencies
    return names


@pytest.fixture
def schema(app) -> dict:
    return app.openapi()


def operation(schema: dict, method: str, path: str) -> dict:
    assert path in schema["paths"], f"{method.upper()} {path} is not in the schema"
    assert method in schema["paths"][path], f"{method.upper()} {path} is not in the schema"
    return schema["paths"][path][method]


def test_every_api_route_is_in_the_schema_and_nothing_else(schema, app):
    routes = api_routes()
    assert len(routes) > 60
    for method, path, route in routes:
        assert route.include_in_schema, f"{method.upper()} {path} is hidden from the schema"
        operation(schema, method, path)
    documented = {(m, p) for p, ops in schema["paths"].items() for m in ops if p.startswith(API)}
    assert documented == {(m, p) for m, p, _ in routes}
    ids = [op["operationId"] for ops in schema["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operation ids (a generated client's function names) must be unique"


def test_every_operation_declares_what_it_answers(schema):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            success = {status: r for status, r in op["responses"].items() if status.startswith("2")}
            assert success, f"{where} declares no success response"
            for status, response in success.items():
                content = response.get("content")
                if content is None:
                    # No body: a 204, or an answer that is all headers (tus), each header declared.
                    assert status == "204" or response.get("headers"), (
                        f"{where} {status} declares no body and no headers"
                    )
                    continue
                for media_type, media in content.items():
                    assert media.get("schema"), f"{where} {status} {media_type} has no schema"


def test_files_and_exports_have_their_real_media_types(schema):
    def media(method: str, path: str, status: str = "200") -> set[str]:
        return set(operation(schema, method, path)["responses"][status]["content"])

    assert media("get", f"{API}/audit/export.csv") == {"text/csv"}
    assert media("get", f"{API}/audit/export.jsonl") == {"application/x-ndjson"}
    assert media("get", f"{API}/audit/checkpoints/latest") == {"text/plain"}
    assert media("get", f"{API}/certificates/{{cert_id}}/pdf") == {"application/pdf"}
    assert media("get", f"{API}/baas/{{baa_id}}/signed-copy") == {"application/pdf"}
    download = f"{API}/transfers/{{transfer_id}}/files/{{file_id}}/content"
    assert media("get", download) == media("get", download, "206") == {"application/octet-stream"}
    bodies = {
        ("put", f"{API}/baas/{{baa_id}}/signed-copy"): {"application/pdf"},
        ("post", f"{API}/transfers"): {"application/octet-stream", "multipart/form-data"},
        ("patch", f"{API}/uploads/{{upload_id}}"): {"application/offset+octet-stream"},
    }
    for (method, path), types in bodies.items():
        body = operation(schema, method, path)["requestBody"]
        assert body["required"] is True and set(body["content"]) == types, (method, path)
        assert all(m["schema"] for m in body["content"].values())


def test_the_header_scan_sees_what_the_adapters_read():
    """The scan below is not vacuous: it finds the reads we know of."""
    assert {"authorization", "x-csrf-token", "origin"} <= header_reads(GATEWAY / "deps.py")
    assert "content-type" in header_reads(GATEWAY / "transfers" / "routes.py")


def test_every_header_an_adapter_reads_is_declared(schema):
    for path in SCANNED:
        unknown = header_reads(path) - set(NOT_PARAMETERS)
        assert not unknown, (
            f"{path.relative_to(GATEWAY.parent)} reads {sorted(unknown)} by hand: declare each as a Header() "
            "parameter of the route (or, if the client does not choose it, say why in NOT_PARAMETERS)"
        )
    for method, path, route in api_routes():
        declared = {
            p["name"].lower() for p in operation(schema, method, path).get("parameters", []) if p["in"] == "header"
        }
        missing = header_params(route) - declared
        assert not missing, f"{method.upper()} {path} reads {sorted(missing)}, which its schema does not declare"


def test_known_headers_are_declared_where_they_are_read(schema):
    def headers(method: str, path: str) -> set[str]:
        return {p["name"] for p in operation(schema, method, path)["parameters"] if p["in"] == "header"}

    assert {"X-Purpose", "X-Note", "Content-Disposition", CSRF_HEADER} <= headers("post", f"{API}/transfers")
    assert "Range" in headers("get", f"{API}/transfers/{{transfer_id}}/files/{{file_id}}/content")
    assert {"Tus-Resumable", "Upload-Length", "Upload-Metadata", "Upload-Checksum"} <= headers("post", f"{API}/uploads")
    assert {"Tus-Resumable", "Upload-Offset", "Upload-Checksum"} <= headers("patch", f"{API}/uploads/{{upload_id}}")


def test_security_is_declared_on_every_operation_but_signing_in(schema, settings):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["apiToken"] == {**schemes["apiToken"], "type": "http", "scheme": "bearer"}
    assert schemes[SESSION]["in"] == "cookie" and schemes[SESSION]["name"] == settings.session_cookie_name
    assert schemes[CSRF]["in"] == "header" and schemes[CSRF]["name"] == CSRF_HEADER
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            if (method, path) in PUBLIC:
                assert op["security"] == [], where
                continue
            assert op["security"], f"{where} declares no security"
            for requirement in op["security"]:
                assert set(requirement) <= set(schemes), where
                # A session cookie that changes state comes with the session's CSRF token, and the header is declared.
                if SESSION in requirement and method not in SAFE:
                    assert CSRF in requirement, where
                    assert any(p["name"] == CSRF_HEADER for p in op["parameters"]), where
                if method in SAFE:
                    assert CSRF not in requirement, where


def test_an_operation_declared_for_tokens_takes_one_and_sign_in_steps_do_not(schema):
    """What the schema says of two operations, as the dependencies enforce it (tests/gateway/test_auth_*.py)."""
    me = operation(schema, "get", f"{API}/auth/me")["security"]
    assert {"apiToken"} in [set(r) for r in me]
    mfa = operation(schema, "post", f"{API}/auth/mfa")["security"]
    assert mfa == [{SESSION: [], CSRF: []}], "the second factor belongs to a cookie session"
