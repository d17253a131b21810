"""Security headers on pages, API answers, errors and static files; HSTS only over TLS; no inline
script or style in any template; production mode refuses insecure settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.components import Components
from gateway.config import ConfigurationRefused, Settings, check_production


def _check(r, *, cached_ok=False):
    h = r.headers
    csp = h["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'none'" in csp
    assert h["x-content-type-options"] == "nosniff"
    assert h["referrer-policy"] == "no-referrer"
    assert h["x-frame-options"] == "DENY"
    if not cached_ok:
        assert h["cache-control"] == "no-store"


def test_headers_on_pages_api_and_errors(client, factory, login):
    user = factory.user("practice_staff")
    answers = [
        client.get("/login"),
        client.get("/home", follow_redirects=False),
        client.get("/api/v1/auth/me"),
        client.get("/healthz"),
        client.get("/api/openapi.json"),
        client.get("/no/such/page"),
        client.get("/api/v1/no/such/route"),
        client.post("/api/v1/auth/login", content=b"{", headers={"content-type": "application/json"}),
        client.delete("/healthz"),
    ]
    login(client, user)
    answers += [client.get("/home"), client.get("/api/v1/auth/me"), client.get("/account")]
    for r in answers:
        _check(r)
        assert "strict-transport-security" not in r.headers
    assert answers[5].status_code == 404 and "Traceback" not in answers[5].text
    assert answers[6].json()["error"]["code"] == "not_found"
    assert answers[8].status_code == 405


def test_static_files_have_headers_and_may_be_cached(client):
    r = client.get("/static/style.css")
    assert r.status_code == 200
    _check(r, cached_ok=True)
    assert "no-store" not in r.headers.get("cache-control", "")
    assert client.get("/static/../gateway/config.py").status_code == 404


def test_headers_on_unhandled_errors_without_a_stack_trace(app):
    def boom():
        raise RuntimeError("internal detail that must not leak")

    app.add_api_route("/api/v1/test-boom", boom)
    app.add_api_route("/test-boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/v1/test-boom")
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "internal detail" not in r.text
        _check(r)
        r = c.get("/test-boom")
        assert r.status_code == 500 and "internal_error" in r.text
        assert "internal detail" not in r.text and "Traceback" not in r.text
        _check(r)


def test_hsts_only_over_tls(app, settings):
    with TestClient(app, base_url="https://testserver") as c:
        r = c.get("/login")
        assert r.headers["strict-transport-security"].startswith("max-age=")
        _check(r)
    with TestClient(app) as c:
        # A forged X-Forwarded-Proto from an untrusted peer changes nothing.
        assert "strict-transport-security" not in c.get("/login", headers={"X-Forwarded-Proto": "https"}).headers


def test_hsts_behind_a_trusted_tls_proxy(settings):
    s = settings.model_copy(update={"trusted_proxies": ("10.0.0.0/8",)})
    comps = Components(s)
    try:
        app = create_app(s, comps)
        with TestClient(app, client=("10.1.2.3", 443)) as c:
            assert "strict-transport-security" in c.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers
            assert "strict-transport-security" not in c.get("/healthz", headers={"X-Forwarded-Proto": "http"}).headers
        with TestClient(app, client=("192.0.2.9", 443)) as c:
            assert "strict-transport-security" not in c.get("/healthz", headers={"X-Forwarded-Proto": "https"}).headers
    finally:
        comps.close()


def test_templates_have_no_inline_script_style_or_handlers():
    templates = Path(__file__).resolve().parents[2] / "gateway" / "templates"
    for path in templates.glob("*.html"):
        html = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path.name
        assert "<style" not in html, path.name
        assert not re.search(r"\sstyle=", html), path.name
        assert not re.search(r"\son[a-z]+=", html), path.name
        assert "javascript:" not in html, path.name


# -- production mode ----------------------------------------------------------------


def _prod(tmp_path, **kw):
    kw.setdefault("public_url", "https://gateway.example")
    return Settings(_env_file=None, env="production", data_dir=tmp_path, **kw)


def test_production_refuses_plain_http_cookies(tmp_path):
    with pytest.raises(ConfigurationRefused, match="PHIGATE_COOKIE_SECURE=false"):
        create_app(_prod(tmp_path, cookie_secure=False, allow_local_keyring=True))


def test_production_refuses_the_local_keyring_unless_allowed(tmp_path):
    with pytest.raises(ConfigurationRefused, match="local keyring"):
        check_production(_prod(tmp_path))
    check_production(_prod(tmp_path, allow_local_keyring=True))
    check_production(_prod(tmp_path, key_provider_url="awskms://arn:aws:kms:us-east-1:111122223333:key/abc"))


def test_production_defaults_to_secure_cookies(tmp_path):
    s = _prod(tmp_path, allow_local_keyring=True)
    assert s.effective_cookie_secure is True and s.session_cookie_name == "__Host-phigate_session"


def test_production_refuses_all_interfaces_without_a_proxy(tmp_path):
    with pytest.raises(ConfigurationRefused, match="all interfaces"):
        check_production(_prod(tmp_path, allow_local_keyring=True, host="0.0.0.0"))
    check_production(_prod(tmp_path, allow_local_keyring=True, host="0.0.0.0", trusted_proxies=("10.0.0.0/8",)))


def test_production_refuses_a_missing_or_plain_http_public_url(tmp_path):
    for url in (None, "http://gateway.example"):
        with pytest.raises(ConfigurationRefused, match="PHIGATE_PUBLIC_URL"):
            check_production(_prod(tmp_path, allow_local_keyring=True, public_url=url))


def test_relying_party_comes_from_the_public_url_only(tmp_path):
    s = Settings(_env_file=None, data_dir=tmp_path, public_url="https://files.example.org:8443/")
    assert (s.webauthn_origin, s.webauthn_rp_id) == ("https://files.example.org:8443", "files.example.org")
    # Development default: localhost (a secure context; an IP address cannot be a relying party id).
    s = Settings(_env_file=None, data_dir=tmp_path, port=8123)
    assert (s.webauthn_origin, s.webauthn_rp_id) == ("http://localhost:8123", "localhost")
    assert any("PHIGATE_PUBLIC_URL" in w for w in s.warnings())
    for bad in ("ftp://gateway.example", "gateway.example", "https://user@gateway.example", "https://g.example/?a=1"):
        with pytest.raises(ValueError):
            Settings(_env_file=None, data_dir=tmp_path, public_url=bad)


def test_production_refuses_a_data_dir_holding_the_demo(tmp_path):
    check_production(_prod(tmp_path, allow_local_keyring=True))
    (tmp_path / "demo-credentials.json").write_text("{}")
    with pytest.raises(ConfigurationRefused, match="demo"):
        check_production(_prod(tmp_path, allow_local_keyring=True))


def test_development_lists_its_unsafe_defaults(tmp_path):
    warnings = Settings(_env_file=None, data_dir=tmp_path).warnings()
    assert any("plain HTTP" in w for w in warnings) and any("SQLite" in w for w in warnings)
