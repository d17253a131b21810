"""Fixtures: one ``target`` per backend, so the contract suite runs unchanged on all three.

* ``file``          LocalObjectStore under tmp_path
* ``s3_inprocess``  S3ObjectStore against moto's in-process mock (``mock_aws``)
* ``s3_http``       S3ObjectStore against moto's ThreadedMotoServer on 127.0.0.1:<free port>

S3 buckets are versioned and each test gets its own bucket; the part size is the S3
minimum (5 MiB) so multipart paths stay fast; retries are kept short.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from storage import open_object_store
from tests.support.s3server import TEST_ACCESS_KEY, TEST_REGION, TEST_SECRET_KEY, S3Server

PART = 5 * 1024 * 1024
TARGETS = ("file", "s3_inprocess", "s3_http")
S3_TARGETS = ("s3_inprocess", "s3_http")
FAST_RETRIES = {"max_attempts": 3, "part_retries": 1, "retry_base_delay": 0.01}


@pytest.fixture(autouse=True)
def _no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never pick up a developer's real AWS credentials or config."""
    empty = tmp_path_factory.getbasetemp() / "no-aws-config"
    empty.touch()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@functools.lru_cache(maxsize=1)
def _session() -> boto3.session.Session:
    """One session for the whole run: its loader caches the S3 service model, which
    makes each client ~10x cheaper. Created after moto is imported, so moto's
    in-process hook is among its handlers (it only acts inside mock_aws)."""
    return boto3.session.Session(
        aws_access_key_id=TEST_ACCESS_KEY,
        aws_secret_access_key=TEST_SECRET_KEY,
        region_name=TEST_REGION,
    )


@dataclass
class Target:
    """A backend under test plus the raw tools to inspect it behind the store's back."""

    kind: str
    url: str
    open: Callable[..., Any]
    root: str | None = None  # file target
    raw: Any = None  # boto3 S3 client (S3 targets)
    bucket: str | None = None
    endpoint_url: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_s3(self) -> bool:
        return self.kind in S3_TARGETS

    def new_bucket(self, *, versioned: bool = True, region: str = TEST_REGION, **create: Any) -> str:
        """Create a fresh bucket on this target and return its name."""
        assert self.is_s3
        name = f"phg-{uuid.uuid4().hex[:16]}"
        client = self.raw if region == TEST_REGION else self.client_for(region)
        if region != "us-east-1":
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        client.create_bucket(Bucket=name, **create)
        if versioned and not create.get("ObjectLockEnabledForBucket"):
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def client_for(self, region: str, service: str = "s3") -> Any:
        return _session().client(service, region_name=region, endpoint_url=self.endpoint_url)

    def s3_url(self, bucket: str, region: str = TEST_REGION, **params: str) -> str:
        query = f"region={region}"
        if self.endpoint_url:
            query += f"&endpoint_url={self.endpoint_url}"
        for name, value in params.items():
            query += f"&{name}={value}"
        return f"s3://{bucket}?{query}"

    def open_bucket(self, bucket: str, **overrides: Any) -> Any:
        kwargs: dict[str, Any] = {"part_size": PART, **FAST_RETRIES}
        if self.endpoint_url:
            kwargs["onshore_endpoints"] = (self.endpoint_url,)
        kwargs.update(overrides)
        return open_object_store(self.s3_url(bucket), session=_session(), **kwargs)

    def leftovers(self, key: str | None = None) -> list[str]:
        """Anything an interrupted put could leave behind: temp files / multipart uploads."""
        if self.is_s3:
            uploads = self.raw.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
            return [u["UploadId"] for u in uploads if key is None or u["Key"] == key]
        found = []
        for dirpath, _, files in os.walk(self.root):
            found += [os.path.join(dirpath, f) for f in files if f.startswith(".tmp-")]
        return found

    def stored_versions(self, key: str) -> list[str]:
        """Every version/delete marker of ``key`` as S3 sees it (file: the file itself)."""
        if self.is_s3:
            resp = self.raw.list_object_versions(Bucket=self.bucket, Prefix=key)
            return [v["VersionId"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []) if v["Key"] == key]
        found = []
        for _dirpath, _, files in os.walk(self.root):
            found += [f for f in files if f == key.replace("/", "~")]
        return found


def _file_target(tmp_path: Any) -> Target:
    root = str(tmp_path / "objects")
    url = f"file://{root}"
    return Target(kind="file", url=url, open=lambda **kw: open_object_store(url, **kw), root=root)


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    yield from _make_target(request, request.param, tmp_path)


@pytest.fixture(params=S3_TARGETS)
def s3_target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    yield from _make_target(request, request.param, tmp_path)


@pytest.fixture
def file_target(tmp_path: Any) -> Target:
    return _file_target(tmp_path)


def _make_target(request: pytest.FixtureRequest, kind: str, tmp_path: Any) -> Iterator[Target]:
    if kind == "file":
        yield _file_target(tmp_path)
        return
    if kind == "s3_inprocess":
        with mock_aws():
            yield _s3_target(kind, None)
        return
    server: S3Server = request.getfixturevalue("s3_server")
    yield _s3_target(kind, server.endpoint_url)


def _s3_target(kind: str, endpoint_url: str | None) -> Target:
    raw = _session().client("s3", region_name=TEST_REGION, endpoint_url=endpoint_url)
    t = Target(kind=kind, url="", open=lambda **kw: None, raw=raw, endpoint_url=endpoint_url)
    t.bucket = t.new_bucket(versioned=True)
    t.url = t.s3_url(t.bucket)
    t.open = lambda **kw: t.open_bucket(t.bucket, **kw)
    return t


@pytest.fixture
def store(target: Target) -> Any:
    return target.open()


@pytest.fixture
def s3_store(s3_target: Target) -> Any:
    return s3_target.open()


@pytest.fixture
def aws_target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    """moto in-process, standing in for AWS itself (no endpoint_url)."""
    yield from _make_target(request, "s3_inprocess", tmp_path)


@pytest.fixture
def http_target(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Target]:
    """moto over HTTP, standing in for a custom S3-compatible endpoint (MinIO, Ceph)."""
    yield from _make_target(request, "s3_http", tmp_path)
