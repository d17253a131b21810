"""Liveness and readiness: readyz names the failing component (never a secret or a path)."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.components import Components


def test_healthz_and_readyz_when_all_is_well(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "storage": "ok", "key_provider": "ok"}}


def test_readyz_503_when_the_storage_directory_is_unusable(client, settings, tmp_path):
    assert client.get("/readyz").status_code == 200
    objects = settings.effective_storage_url.removeprefix("file://")
    shutil.rmtree(objects, ignore_errors=True)
    with open(objects, "w") as fh:  # a file where the directory was
        fh.write("not a directory")
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {
        "status": "not_ready",
        "checks": {"database": "ok", "storage": "unreachable", "key_provider": "ok"},
    }
    assert objects not in r.text
    assert client.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_503_when_the_database_is_unreachable(settings, tmp_path):
    s = settings.model_copy(update={"database_url": "postgresql+psycopg://phigate:hunter2secret@127.0.0.1:1/none"})
    comps = Components(s)
    try:
        with TestClient(create_app(s, comps)) as c:
            r = c.get("/readyz")
            assert r.status_code == 503
            assert r.json()["checks"]["database"] == "unreachable"
            assert r.json()["checks"]["storage"] == "ok"
            assert "hunter2secret" not in r.text
    finally:
        comps.close()


def test_readyz_503_when_the_keyring_is_gone(settings, tmp_path):
    s = settings.model_copy(update={"key_provider_url": f"local://{tmp_path / 'missing-keyring'}"})
    comps = Components(s)
    try:
        with TestClient(create_app(s, comps)) as c:
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["checks"]["key_provider"] == "unreachable"
    finally:
        comps.close()
