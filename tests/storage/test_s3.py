"""S3-only behaviour: versions, Object Lock, failures mid-upload, retries, checksums, SSE."""

from __future__ import annotations

import base64
import hashlib
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError, ResponseStreamingError

from storage import (
    DeletionBlocked,
    IntegrityError,
    ObjectNotFound,
    StorageUnavailable,
)
from storage.checksums import crc32c_hex

from .conftest import PART, _session
from .test_contract import chunked, data_of, read


class _RawBody(io.BytesIO):
    def stream(self, **_: Any):
        while chunk := self.read(65536):
            yield chunk


def s3_error(status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>injected</Message></Error>".encode()
    return AWSResponse("http://injected", status, {"Content-Type": "application/xml"}, _RawBody(body))


def inject(store, event: str, handler) -> None:
    # register_first: run before moto's in-process stubber, like a real network fault.
    store.client.meta.events.register_first(event, handler)


# -- destruction on a versioned bucket ----------------------------------------------


def test_destroy_removes_every_version_and_delete_marker(s3_target, s3_store) -> None:
    raw, bucket = s3_target.raw, s3_target.bucket
    for i in range(3):
        s3_store.put("obj-v", [f"version {i}".encode()])
    raw.delete_object(Bucket=bucket, Key="obj-v")  # a plain delete only adds a marker
    s3_store.put("obj-v", [b"version 3"])
    raw.delete_object(Bucket=bucket, Key="obj-v")
    s3_store.put("obj-v2", [b"other key, same prefix"])
    assert len(s3_target.stored_versions("obj-v")) == 6

    report = s3_store.destroy("obj-v")

    assert len(report.versions_deleted) == 4
    assert len(report.delete_markers_deleted) == 2
    assert report.blocked == () and report.verified
    assert s3_target.stored_versions("obj-v") == []
    assert report.proof.absent and any("ListObjectVersions" in c for c in report.proof.checks)
    assert read(s3_store, "obj-v2") == b"other key, same prefix"


def test_destroy_on_an_unversioned_bucket(s3_target) -> None:
    bucket = s3_target.new_bucket(versioned=False)
    store = s3_target.open_bucket(bucket)
    store.put("obj-u", [b"one"])
    store.put("obj-u", [b"two"])
    report = store.destroy("obj-u")
    assert report.versions_deleted == ("null",) and report.verified
    assert store.verify_absent("obj-u").absent


def test_destroy_aborts_an_upload_in_progress_for_the_key(s3_target, s3_store) -> None:
    raw, bucket = s3_target.raw, s3_target.bucket
    upload = raw.create_multipart_upload(Bucket=bucket, Key="obj-up")
    raw.upload_part(Bucket=bucket, Key="obj-up", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 10)
    proof = s3_store.verify_absent("obj-up")
    assert not proof.absent  # orphan parts hold ciphertext too
    report = s3_store.destroy("obj-up")
    assert report.uploads_aborted == 1 and report.verified
    assert s3_target.leftovers() == []


# -- Object Lock ----------------------------------------------------------------------


def test_legal_hold_blocks_destruction_and_nothing_is_claimed(s3_target) -> None:
    raw = s3_target.raw
    bucket = s3_target.new_bucket(ObjectLockEnabledForBucket=True)
    store = s3_target.open_bucket(bucket)
    held = store.put("obj-lock", [b"held"]).version_id
    free = store.put("obj-lock", [b"free"]).version_id
    raw.put_object_legal_hold(Bucket=bucket, Key="obj-lock", VersionId=held, LegalHold={"Status": "ON"})

    with pytest.raises(DeletionBlocked) as excinfo:
        store.destroy("obj-lock")

    report = excinfo.value.report
    assert report.versions_deleted == (free,)  # what could go, went
    assert [b.version_id for b in report.blocked] == [held]
    assert "legal hold" in report.blocked[0].reason
    assert report.verified is False and not report.complete
    assert report.proof is not None and report.proof.absent is False
    assert held in str(excinfo.value)
    assert read(store, "obj-lock") == b"held"  # really still there

    raw.put_object_legal_hold(Bucket=bucket, Key="obj-lock", VersionId=held, LegalHold={"Status": "OFF"})
    assert store.destroy("obj-lock").complete


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_retention_blocks_destruction(s3_target, mode: str) -> None:
    raw = s3_target.raw
    bucket = s3_target.new_bucket(ObjectLockEnabledForBucket=True)
    store = s3_target.open_bucket(bucket)
    version = store.put("obj-ret", [b"retained"]).version_id
    until = datetime.now(UTC) + timedelta(days=1)
    raw.put_object_retention(
        Bucket=bucket, Key="obj-ret", VersionId=version, Retention={"Mode": mode, "RetainUntilDate": until}
    )

    with pytest.raises(DeletionBlocked) as excinfo:
        store.destroy("obj-ret")

    (blocked,) = excinfo.value.report.blocked
    assert blocked.version_id == version
    assert f"{mode} retention until" in blocked.reason
    assert blocked.retain_until is not None
    assert excinfo.value.report.versions_deleted == ()
    assert not store.verify_absent("obj-ret").absent


# -- failures during a multipart upload --------------------------------------------------


def test_connection_failure_after_n_parts_aborts_the_upload(s3_target, s3_store) -> None:
    calls = {"n": 0}

    def fail_from_third_part(request, **_):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise EndpointConnectionError(endpoint_url="http://injected")

    inject(s3_store, "before-send.s3.UploadPart", fail_from_third_part)
    with pytest.raises(StorageUnavailable) as excinfo:
        s3_store.put("obj-cut", chunked(data_of(4 * PART)))

    assert isinstance(excinfo.value.__cause__, EndpointConnectionError)  # cause kept: it helps
    assert calls["n"] > 3  # botocore retried, then the store retried the part
    assert s3_target.raw.list_multipart_uploads(Bucket=s3_target.bucket).get("Uploads", []) == []
    assert s3_target.stored_versions("obj-cut") == []
    with pytest.raises(ObjectNotFound):
        s3_store.head("obj-cut")


def test_failure_on_complete_leaves_no_upload_and_no_object(s3_target, s3_store) -> None:
    """The client sees Complete fail. In-process moto still completes it (the injected
    response only replaces what the client sees), like a real timeout after S3 finished:
    the store must find and remove that object, not just abort the upload."""
    inject(s3_store, "before-send.s3.CompleteMultipartUpload", lambda **_: s3_error(400, "InvalidPart"))
    with pytest.raises(Exception) as excinfo:
        s3_store.put("obj-nocomplete", chunked(data_of(PART + 10)))
    assert excinfo.value.__class__.__module__ == "storage.errors"
    assert s3_target.leftovers() == []
    assert s3_target.stored_versions("obj-nocomplete") == []


def test_throttling_and_5xx_are_retried(s3_target, s3_store) -> None:
    seen = {"UploadPart": 0, "PutObject": 0}

    def throttle_twice(request, **_):
        seen["UploadPart"] += 1
        if seen["UploadPart"] <= 2:
            return s3_error(503, "SlowDown")
        return None

    def fail_once(request, **_):
        seen["PutObject"] += 1
        return s3_error(500, "InternalError") if seen["PutObject"] == 1 else None

    inject(s3_store, "before-send.s3.UploadPart", throttle_twice)
    inject(s3_store, "before-send.s3.PutObject", fail_once)
    data = data_of(PART + 100)
    assert s3_store.put("obj-slow", chunked(data)).parts == 2
    assert s3_store.put("obj-small", [b"tiny"]).parts == 1
    assert read(s3_store, "obj-slow") == data
    assert read(s3_store, "obj-small") == b"tiny"
    assert seen == {"UploadPart": 4, "PutObject": 2}


def test_persistent_throttling_gives_up_cleanly(s3_target) -> None:
    store = s3_target.open(max_attempts=2, part_retries=1)
    inject(store, "before-send.s3.UploadPart", lambda **_: s3_error(503, "SlowDown"))
    with pytest.raises(StorageUnavailable):
        store.put("obj-throttled", chunked(data_of(PART + 1)))
    assert s3_target.leftovers() == []
    assert s3_target.stored_versions("obj-throttled") == []


# -- checksums -------------------------------------------------------------------------


def test_checksums_are_sent_on_every_part_and_object(s3_target, s3_store) -> None:
    sent: list[tuple[str | None, str | None, bytes]] = []

    def record(request, **_):
        def header(name: str) -> str | None:
            value = request.headers.get(name)
            return value.decode() if isinstance(value, bytes) else value

        assert header("x-amz-checksum-sha256") is None  # CRC32C only: no SHA-256 of the ciphertext
        sent.append((header("x-amz-sdk-checksum-algorithm"), header("x-amz-checksum-crc32c"), request.body))

    for op in ("PutObject", "UploadPart"):
        inject(s3_store, f"before-send.s3.{op}", record)
    small, big = data_of(100), data_of(2 * PART + 1)
    s3_store.put("obj-small", [small])
    stored = s3_store.put("obj-big", chunked(big))
    assert len(sent) == 1 + 3
    for algorithm, value, body in sent:
        data = body if isinstance(body, bytes) else body.getvalue() if hasattr(body, "getvalue") else None
        assert algorithm == "CRC32C" and value
        if data is not None:
            assert base64.b64decode(value).hex() == crc32c_hex(data)  # what S3 verifies is the body's own
    head = s3_store.head("obj-small")
    assert head.checksum == "crc32c:" + crc32c_hex(small)
    assert stored.checksum == "crc32c:" + crc32c_hex(big)
    assert s3_store.head("obj-big").checksum.startswith("crc32c-composite:")


def test_a_whole_object_read_is_checked_against_its_crc32c(s3_target, s3_store) -> None:
    """S3 stored bytes that do not match the CRC32C it holds (bit rot, a faulty proxy): the read fails."""
    data = data_of(300_000)
    wrong = base64.b64encode(bytes.fromhex(crc32c_hex(data + b"x"))).decode()
    # moto keeps whatever checksum it is sent (real S3 would refuse it with BadDigest): a stored mismatch.
    s3_target.raw.put_object(
        Bucket=s3_target.bucket, Key="obj-rot", Body=data, ChecksumAlgorithm="CRC32C", ChecksumCRC32C=wrong
    )
    with pytest.raises(IntegrityError):
        read(s3_store, "obj-rot")
    assert read(s3_store, "obj-rot", 0, 1000) == data[:1000]  # ranges carry no checksum; AEAD checks them
    s3_store.put("obj-fine", [data])
    assert read(s3_store, "obj-fine") == data


def test_the_store_refusing_a_checksum_is_an_integrity_error(s3_store) -> None:
    def refuse(request, **_):
        return s3_error(400, "BadDigest")

    inject(s3_store, "before-send.s3.PutObject", refuse)
    with pytest.raises(IntegrityError):
        s3_store.put("obj-refused", [b"small object"])


def test_objects_written_with_sha256_before_stay_readable_and_checked(s3_target, s3_store) -> None:
    data = data_of(200_000)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    s3_target.raw.put_object(
        Bucket=s3_target.bucket, Key="obj-old", Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=digest
    )
    assert s3_store.head("obj-old").checksum == "sha256:" + hashlib.sha256(data).hexdigest()
    assert read(s3_store, "obj-old") == data
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    s3_target.raw.put_object(
        Bucket=s3_target.bucket, Key="obj-old-rot", Body=data, ChecksumAlgorithm="SHA256", ChecksumSHA256=wrong
    )
    with pytest.raises(IntegrityError):
        read(s3_store, "obj-old-rot")  # botocore checks SHA-256 on the way down


def test_an_assembly_begun_with_sha256_goes_on_with_it(s3_target, s3_store) -> None:
    """A resumable upload begun by a release before CRC32C: its parts keep the upload's algorithm."""
    upload = s3_target.raw.create_multipart_upload(Bucket=s3_target.bucket, Key="asm-old", ChecksumAlgorithm="SHA256")
    token = upload["UploadId"]
    blocks = [data_of(PART, seed=1), data_of(1234, seed=2)]
    sent: list[str | None] = []
    inject(
        s3_store,
        "before-send.s3.UploadPart",
        lambda request, **_: sent.append(request.headers.get("x-amz-checksum-sha256")),
    )
    parts, offset = [], 0
    for number, block in enumerate(blocks, start=1):
        parts.append(s3_store.put_assembly_part("asm-old", token, number, offset, [block]))
        offset += len(block)
    assert all(sent) and len(sent) == 2
    assert [p.checksum for p in parts] == [f"sha256:{hashlib.sha256(b).hexdigest()}" for b in blocks]
    done = s3_store.complete_assembly("asm-old", token, parts)
    assert done.checksum.startswith("sha256-composite:") and done.size == offset
    assert read(s3_store, "asm-old") == b"".join(blocks)


def test_a_part_acknowledged_with_another_checksum_is_an_integrity_error(s3_target, s3_store) -> None:
    def corrupt(parsed, **_):
        parsed["ChecksumCRC32C"] = "AAAAAA=="

    s3_store.client.meta.events.register("after-call.s3.UploadPart", corrupt)
    with pytest.raises(IntegrityError):
        s3_store.put("obj-corrupt", chunked(data_of(PART + 1)))
    assert s3_target.leftovers() == []
    assert s3_target.stored_versions("obj-corrupt") == []


# -- downloads -------------------------------------------------------------------------


class _FlakyBody:
    """Yields one chunk, then fails like a reset connection."""

    def __init__(self, body) -> None:
        self._body = body

    def iter_chunks(self, chunk_size: int):
        it = self._body.iter_chunks(chunk_size)
        yield next(it)
        raise ResponseStreamingError(error=ConnectionResetError("injected reset"))

    def close(self) -> None:
        self._body.close()


@pytest.mark.parametrize("start,end", [(0, None), (1000, 2_500_000)], ids=["whole", "range"])
def test_a_broken_download_resumes_where_it_stopped(s3_target, start, end) -> None:
    store = s3_target.open(read_chunk_size=256 * 1024)
    data = data_of(3 * 1024 * 1024)
    store.put("obj-resume", [data])
    ranges: list[str | None] = []
    broken: list[bool] = []

    def flaky_once(parsed, **_):
        if not broken:
            broken.append(True)
            parsed["Body"] = _FlakyBody(parsed["Body"])

    def record(params, **_):
        ranges.append(params.get("Range"))

    store.client.meta.events.register("before-parameter-build.s3.GetObject", record)
    store.client.meta.events.register("after-call.s3.GetObject", flaky_once)
    assert read(store, "obj-resume", start, end) == data[start:end]
    assert len(ranges) == 2
    assert ranges[1] == f"bytes={start + 256 * 1024}-{(end or len(data)) - 1}"


# -- server-side encryption ---------------------------------------------------------------


def test_sse_s3_is_requested_and_reported(s3_target) -> None:
    from storage import open_object_store

    extra = {"onshore_endpoints": (s3_target.endpoint_url,)} if s3_target.endpoint_url else {}
    url = s3_target.s3_url(s3_target.bucket, sse="AES256", part_size="5MiB")
    store = open_object_store(url, session=_session(), **extra)
    store.put("obj-sse", [b"x"])
    store.put("obj-sse-mp", chunked(data_of(PART + 1)))
    assert store.head("obj-sse").encryption == "AES256"
    assert store.head("obj-sse-mp").encryption == "AES256"


def test_sse_kms_with_a_key_id(s3_target) -> None:
    from storage import open_object_store

    key_id = s3_target.client_for("us-east-1", "kms").create_key()["KeyMetadata"]["KeyId"]
    extra = {"onshore_endpoints": (s3_target.endpoint_url,)} if s3_target.endpoint_url else {}
    url = s3_target.s3_url(s3_target.bucket, sse="aws:kms", sse_kms_key_id=key_id)
    store = open_object_store(url, session=_session(), **extra)
    store.put("obj-kms", [b"x"])
    head = store.client.head_object(Bucket=s3_target.bucket, Key="obj-kms")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head.get("SSEKMSKeyId", key_id)


# -- maintenance -------------------------------------------------------------------------


def test_sweep_temp_aborts_stale_uploads(s3_target, s3_store) -> None:
    s3_target.raw.create_multipart_upload(Bucket=s3_target.bucket, Key="obj-stale")
    # moto reports every upload as initiated in 2010, so "young" means 100 years here.
    assert s3_store.sweep_temp(older_than=100 * 365 * 86400) == 0  # may still be in progress
    assert len(s3_target.leftovers()) == 1
    assert s3_store.sweep_temp(older_than=0) == 1
    assert s3_target.leftovers() == []


def test_check_reports_a_missing_bucket(s3_target, s3_store) -> None:
    s3_store.check()
    for version in s3_target.raw.list_object_versions(Bucket=s3_target.bucket).get("Versions", []):
        s3_target.raw.delete_object(Bucket=s3_target.bucket, Key=version["Key"], VersionId=version["VersionId"])
    s3_target.raw.delete_bucket(Bucket=s3_target.bucket)
    with pytest.raises(StorageUnavailable):
        s3_store.check()


def test_an_object_acknowledged_with_another_checksum_is_removed(s3_target, s3_store) -> None:
    def corrupt(parsed, **_):
        parsed["ChecksumCRC32C"] = "AAAAAA=="

    s3_store.client.meta.events.register("after-call.s3.PutObject", corrupt)
    with pytest.raises(IntegrityError):
        s3_store.put("obj-bad-ack", [b"small object"])
    assert s3_target.stored_versions("obj-bad-ack") == []


def test_a_resumed_download_never_splices_a_newer_object(s3_target) -> None:
    bucket = s3_target.new_bucket(versioned=False)  # no version id: the ETag pins it
    store = s3_target.open_bucket(bucket, read_chunk_size=256 * 1024)
    store.put("obj-splice", [data_of(1024 * 1024)])
    broken: list[bool] = []

    def break_and_overwrite(parsed, **_):
        if not broken:
            broken.append(True)
            parsed["Body"] = _FlakyBody(parsed["Body"])
            s3_target.raw.put_object(Bucket=bucket, Key="obj-splice", Body=data_of(1024 * 1024, seed=99))

    store.client.meta.events.register("after-call.s3.GetObject", break_and_overwrite)
    with pytest.raises(IntegrityError):
        read(store, "obj-splice")
