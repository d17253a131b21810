"""Every route of the application, every declared method, without a session: refused, except
for the routes listed here as public on purpose."""

from __future__ import annotations

import secrets

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from gateway.web import with_next

# (method, path) reachable without signing in, and why.
PUBLIC = {
    ("GET", "/"): "redirects to /home, which asks to sign in",
    ("GET", "/login"): "the sign-in form",
    ("GET", "/favicon.ico"): "redirects to the icon among the static files",
    ("POST", "/login"): "sign in (double-submit CSRF token)",
    ("POST", "/api/v1/auth/login"): "sign in through the API",
    ("GET", "/healthz"): "liveness probe",
    ("GET", "/readyz"): "readiness probe (component states only)",
}
# Pages that live under /api/ (answered like every other page: a redirect to sign in).
API_PAGES = {"/api/docs"}
PUBLIC_MOUNTS = {"/static"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def settings(settings):
    """The sweep sends hundreds of anonymous requests from one address: lift the address limit,
    which would answer 429 from the 51st on (tests/gateway/test_refusal_ledger.py covers it)."""
    return settings.model_copy(update={"ip_failure_limit": 1_000_000})


def all_routes(routes, prefix=""):
    """(methods, full path) of every route, through FastAPI's included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            ctx = route.include_context
            yield from all_routes(included.routes, prefix + (ctx.prefix or ""))
        elif isinstance(route, Mount):
            yield {"MOUNT"}, prefix + route.path
        elif isinstance(route, Route) or hasattr(route, "methods"):
            yield set(route.methods or ()), prefix + route.path


def _api(path: str) -> bool:
    return path.startswith("/api/") and path not in API_PAGES


def _fill(path: str) -> str:
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + secrets.token_hex(8) + out[end + 1 :]
    return out


def test_route_inventory_is_complete(app):
    routes = list(all_routes(app.routes))
    paths = {p for _, p in routes}
    # The walk must see the included routers, or the sweep below would prove nothing.
    assert {"/api/v1/auth/me", "/api/v1/users/{user_id}/disable", "/admin/users", "/home"} <= paths
    assert len(routes) > 30


def test_every_route_refuses_an_anonymous_caller(app, components):
    from tests.gateway.authkit import session_count

    checked = []
    by_path: dict[str, set[str]] = {}
    for methods, path in all_routes(app.routes):
        by_path.setdefault(path, set()).update(methods)
    with TestClient(app, follow_redirects=False) as anon:
        for path, methods in sorted(by_path.items()):
            if "MOUNT" in methods:
                assert path in PUBLIC_MOUNTS, f"unexpected mount {path}"
                continue
            url = _fill(path)
            for method in METHODS:
                if method not in methods:
                    r = anon.request(method, url)
                    if method == "GET" and not _api(path) and r.status_code == 303:
                        # A form's address opened as a page leads to its page, which asks to sign in.
                        page = r.headers["location"]
                        assert page == "/home" or url.startswith(page), (path, page)
                        assert anon.get(page).headers.get("location") == with_next("/login", page), (path, page)
                        continue
                    assert r.status_code in (401, 403, 404, 405), (method, path, r.status_code)
                    continue
                if (method, path) in PUBLIC:
                    continue
                r = anon.request(method, url, json={})
                checked.append((method, path))
                if _api(path):
                    assert r.status_code == 401, (method, path, r.status_code, r.text)
                    assert r.json()["error"]["code"] == "not_authenticated", (method, path)
                elif method == "GET":
                    assert r.status_code == 303 and r.headers["location"] == with_next("/login", url), (
                        method,
                        path,
                        r.status_code,
                    )
                else:
                    assert r.status_code in (401, 403), (method, path, r.status_code)
                    assert "text/html" in r.headers["content-type"]
                # Same with a forged session cookie and a forged token.
                r = anon.request(method, url, headers={"Cookie": f"phigate_session={secrets.token_urlsafe(32)}"})
                assert r.status_code in (303, 401, 403), (method, path, r.status_code)
                r = anon.request(method, url, headers={"Authorization": "Bearer phg_" + secrets.token_urlsafe(32)})
                expected = (401,) if _api(path) else (303, 401, 403)
                assert r.status_code in expected, (method, path, r.status_code)
    assert len(checked) > 25
    assert session_count(components) == 0


def test_public_routes_give_nothing_away(app):
    with TestClient(app, follow_redirects=False) as anon:
        assert anon.get("/").headers["location"] == "/home"
        assert anon.get("/home").headers["location"] == "/login"
        assert anon.get("/login").status_code == 200
        assert anon.post("/login", data={"username": "a", "password": "b"}).status_code == 403  # no CSRF pair
        assert anon.post("/api/v1/auth/login", json={}).status_code == 422
        assert anon.get("/healthz").json() == {"status": "alive"}
        assert set(anon.get("/readyz").json()["checks"]) == {"database", "storage", "key_provider"}
        # The schema and its page are for signed-in users (tests/gateway/test_api_docs.py).
        assert anon.get("/api/openapi.json").status_code == 401
        assert anon.get("/api/docs").headers["location"] == "/login?next=%2Fapi%2Fdocs"


def test_signed_in_schema_lists_only_the_api(client, factory, login):
    login(client, factory.user("practice_staff"))
    schema = client.get("/api/openapi.json").json()
    # Pages stay out of the API schema; every API path is under /api/v1.
    assert all(p.startswith("/api/v1/") for p in set(schema["paths"]) - {"/healthz", "/readyz"})
    assert "/api/v1/auth/me" in schema["paths"]
