"""Fixtures for retention tests: the transfer fixtures, seeding, a CLI subprocess, an S3 endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.s3server import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, S3Server
from tests.transfers.conftest import Party, events, party, record_baa, session_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def seeded(components, party):
    """seeded(n, **kw) -> transfer ids sent by the party's practice to its vendor."""
    from tests.retention.seed import seed

    def make(n: int = 3, **kw):
        return seed(components, party.practice.id, party.vendor.id, party.staff.id, n, **kw)

    return make


def env_for(settings, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
    env.update(
        {
            "PHIGATE_DATABASE_URL": settings.effective_database_url,
            "PHIGATE_STORAGE_URL": settings.effective_storage_url,
            "PHIGATE_KEY_PROVIDER_URL": settings.effective_key_provider_url,
            "PHIGATE_DATA_DIR": str(settings.data_dir),
            "PHIGATE_INSTANCE_ID": settings.instance_id,
            "PHIGATE_COOKIE_SECURE": "false",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


@pytest.fixture
def phigate(settings):
    """Run the real CLI in a subprocess: phigate(*args, env={...}) -> CompletedProcess."""

    def run(*args: str, env: dict | None = None, **kw):
        # The crash points (PHIGATE_TEST_KILL_AFTER) exist only in tests: installed in the child before the CLI runs.
        code = "import tests.support.crash as crash; crash.install(); from gateway.cli import main; main()"
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=env_for(settings, **(env or {})),
            capture_output=True,
            text=True,
            cwd=ROOT,
            **kw,
        )

    return run


@pytest.fixture(scope="session")
def s3_endpoint():
    with S3Server() as server:
        yield server


@pytest.fixture
def aws_env(monkeypatch, tmp_path_factory):
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    empty.touch()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    values = {
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY,
        "AWS_DEFAULT_REGION": TEST_REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return values


def make_bucket(server: S3Server, *, object_lock: bool = False) -> str:
    name = f"phg-ret-{uuid.uuid4().hex[:12]}"
    raw = server.client()
    if object_lock:
        raw.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        raw.create_bucket(Bucket=name)
        raw.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


def s3_url(server: S3Server, bucket: str) -> str:
    return f"s3://{bucket}?region={TEST_REGION}&endpoint_url={server.endpoint_url}&endpoint_onshore=true&max_attempts=2"
