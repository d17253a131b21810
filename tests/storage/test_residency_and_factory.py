"""Residency refusal, URL parsing and the factory."""

from __future__ import annotations

import socket

import pytest

from storage import (
    DEFAULT_ONSHORE_REGIONS,
    ConfigurationError,
    LocalObjectStore,
    ResidencyError,
    S3ObjectStore,
    StorageUnavailable,
    open_object_store,
)
from storage.factory import parse_size

from .conftest import PART, _session

# -- AWS (no endpoint_url): the bucket's own region decides -------------------------------


@pytest.mark.parametrize("region", ["eu-west-1", "ap-south-1"])
def test_offshore_bucket_is_refused(aws_target, region: str) -> None:
    bucket = aws_target.new_bucket(region=region)
    with pytest.raises(ResidencyError) as excinfo:
        open_object_store(f"s3://{bucket}?region={region}", session=_session())
    assert region in str(excinfo.value)


def test_offshore_bucket_cannot_pass_as_onshore_by_configuration(aws_target) -> None:
    bucket = aws_target.new_bucket(region="eu-west-1")
    # Claiming an onshore region does not help: GetBucketLocation is authoritative.
    with pytest.raises(ResidencyError):
        open_object_store(f"s3://{bucket}?region=us-east-1", session=_session())
    with pytest.raises(ResidencyError):
        open_object_store(f"s3://{bucket}", session=_session())


def test_onshore_regions_is_a_factory_argument(aws_target) -> None:
    bucket = aws_target.new_bucket(region="eu-west-1")
    store = open_object_store(f"s3://{bucket}?region=eu-west-1", onshore_regions=("eu-west-1",), session=_session())
    assert store.location_id == f"s3://{bucket}@eu-west-1"
    with pytest.raises(ResidencyError):
        open_object_store(
            f"s3://{aws_target.bucket}?region=us-east-1", onshore_regions=("eu-west-1",), session=_session()
        )


def test_default_onshore_regions_are_us_regions() -> None:
    assert set(DEFAULT_ONSHORE_REGIONS) == {
        "us-east-1",
        "us-east-2",
        "us-west-1",
        "us-west-2",
        "us-gov-east-1",
        "us-gov-west-1",
    }


def test_region_is_taken_from_the_bucket_when_not_configured(aws_target) -> None:
    bucket = aws_target.new_bucket(region="us-west-2")
    store = open_object_store(f"s3://{bucket}", session=_session())
    assert isinstance(store, S3ObjectStore)
    assert store.region == "us-west-2"
    assert store.location_id == f"s3://{bucket}@us-west-2"
    store.check()


def test_configured_region_must_match_an_onshore_bucket(aws_target) -> None:
    bucket = aws_target.new_bucket(region="us-west-2")
    with pytest.raises(ConfigurationError):
        open_object_store(f"s3://{bucket}?region=us-east-1", session=_session())


def test_missing_bucket_is_unavailable(aws_target) -> None:
    with pytest.raises(StorageUnavailable):
        open_object_store("s3://phg-no-such-bucket?region=us-east-1", session=_session())


# -- custom endpoints: declared onshore, configured region onshore -------------------------


def test_custom_endpoint_refused_unless_declared_onshore(http_target) -> None:
    url = http_target.s3_url(http_target.bucket)
    with pytest.raises(ResidencyError) as excinfo:
        open_object_store(url, session=_session())
    assert "not declared onshore" in str(excinfo.value)


def test_custom_endpoint_declared_by_factory_argument(http_target) -> None:
    url = http_target.s3_url(http_target.bucket)
    # Declared with a trailing slash and upper case: endpoints are compared normalized.
    declared = http_target.endpoint_url.upper().replace("HTTP://", "http://") + "/"
    store = open_object_store(url, onshore_endpoints=(declared,), session=_session())
    store.check()
    assert store.location_id.startswith(f"s3://{http_target.bucket}@us-east-1+")


def test_custom_endpoint_declared_by_url_flag(http_target) -> None:
    url = http_target.s3_url(http_target.bucket, endpoint_onshore="true")
    store = open_object_store(url, session=_session())
    store.check()
    assert store.location_id.startswith(f"s3://{http_target.bucket}@us-east-1+")


def test_declared_endpoint_with_offshore_region_is_refused(http_target) -> None:
    bucket = http_target.new_bucket(region="eu-west-1")
    with pytest.raises(ResidencyError):
        open_object_store(http_target.s3_url(bucket, region="eu-west-1", endpoint_onshore="true"), session=_session())
    # Configuring an onshore region for it does not help: the endpoint says eu-west-1.
    with pytest.raises(ResidencyError):
        open_object_store(http_target.s3_url(bucket, region="us-east-1", endpoint_onshore="true"), session=_session())


def test_custom_endpoint_needs_an_explicit_region(http_target) -> None:
    with pytest.raises(ConfigurationError):
        open_object_store(
            f"s3://{http_target.bucket}?endpoint_url={http_target.endpoint_url}&endpoint_onshore=true",
            session=_session(),
        )


def test_unreachable_endpoint_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(StorageUnavailable):
            open_object_store(
                f"s3://phg-bucket?region=us-east-1&endpoint_url=http://127.0.0.1:{port}"
                "&endpoint_onshore=true&max_attempts=2&connect_timeout=2",
                session=_session(),
            )


# -- URL parsing -----------------------------------------------------------------------


def test_file_url_opens_a_local_store(tmp_path) -> None:
    store = open_object_store(f"file://{tmp_path}/objects")
    assert isinstance(store, LocalObjectStore)
    assert store.location_id.startswith("file://")
    assert open_object_store(f"file://localhost{tmp_path}/objects").location_id == store.location_id


@pytest.mark.parametrize(
    "url",
    [
        "file://relative/path",
        "file:///tmp/x?unknown=1",
        "ftp://example/x",
        "objects",
        "s3://phg-bucket/prefix?region=us-east-1",
        "s3://phg-bucket?region=us-east-1&sse_kms_keyid=typo",
        "s3://phg-bucket?region=us-east-1&region=us-east-2",
        "s3://phg-bucket?region=us-east-1&part_size=1MiB",
        "s3://phg-bucket?region=us-east-1&part_size=6GiB",
        "s3://phg-bucket?region=us-east-1&part_size=lots",
        "s3://phg-bucket?region=us-east-1&sse=DES",
        "s3://phg-bucket?region=us-east-1&sse_kms_key_id=k",
        "s3://phg-bucket?region=us-east-1&retry_mode=yolo",
        "s3://phg-bucket?region=us-east-1&max_attempts=many",
        "s3://phg-bucket?region=us-east-1&endpoint_onshore=maybe",
        "s3://phg-bucket?region=us-east-1&endpoint_url=ftp://x",
        "s3://Bad_Bucket?region=us-east-1",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_object_store(url, session=_session())


def test_parse_size() -> None:
    assert parse_size("5MiB") == PART
    assert parse_size("5242880") == PART
    assert parse_size("1GiB") == 1024**3
    with pytest.raises(ConfigurationError):
        parse_size("5MB")


def test_url_options_reach_the_backend(aws_target) -> None:
    store = open_object_store(
        f"s3://{aws_target.bucket}?region=us-east-1&part_size=16MiB&retry_mode=adaptive&max_attempts=4",
        session=_session(),
    )
    assert store.part_size == 16 * 1024 * 1024
    retries = store.client.meta.config.retries
    assert retries["mode"] == "adaptive" and retries["total_max_attempts"] == 4


def test_s3_server_helper_binds_loopback_and_resets() -> None:
    from tests.support.s3server import S3Server

    with S3Server() as server:
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        client = server.client()
        client.create_bucket(Bucket="phg-helper")
        assert [b["Name"] for b in client.list_buckets()["Buckets"]] == ["phg-helper"]
        server.reset()
        assert client.list_buckets()["Buckets"] == []
    assert server.endpoint_url is None
