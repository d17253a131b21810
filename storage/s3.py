"""S3 backend (AWS S3 or any S3-compatible endpoint: MinIO, Ceph RGW) over boto3.

Design notes (details in docs/storage.md):

* put streams: it buffers at most one part. An object that fits in one part goes
  with a single PutObject; otherwise a multipart upload. Part size is configurable
  (5 MiB .. 5 GiB) and doubles every 1,000 parts so an object of unknown length
  never runs into the 10,000-part limit (the buffer grows with it).
* Integrity: every PutObject/UploadPart carries ``x-amz-checksum-crc32c`` computed
  here in hardware (S3 verifies it and rejects a mismatch with BadDigest); the
  checksum S3 echoes is compared; after CompleteMultipartUpload the composite CRC32C
  and the size are compared with what was sent. A whole-object read of a single-part
  object is checked against its CRC32C here (botocore checks CRC32C only with awscrt),
  and one written before with SHA-256 is checked by botocore. The whole-object CRC32C
  is returned in ``StoredObject.checksum``. A multipart upload keeps the algorithm it
  was created with (an assembly begun before CRC32C goes on with SHA-256).
* Any failure during a multipart upload aborts it (and confirms the abort), so no
  orphan parts are billed or left holding ciphertext.
* Retries: botocore's standard (or adaptive) retry mode handles throttling, 5xx and
  connection errors per request; on top of that a part upload is retried a few more
  times (its bytes are still in memory), and a broken download stream is resumed
  with a ranged GET pinned to the same ETag/version.
* Residency is checked before the store is usable (see ``_check_residency``).
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from . import checksums
from ._util import ChunkSource, check_range_args, resolve_range, settle, utcnow
from .errors import (
    ConfigurationError,
    IntegrityError,
    InvalidRange,
    ObjectNotFound,
    ResidencyError,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
)
from .keys import validate_key, validate_metadata, validate_prefix
from .types import AbsenceProof, AssemblyPart, BlockedVersion, DestroyReport, ObjectInfo, StoredObject

log = logging.getLogger(__name__)

MiB = 1024 * 1024
GiB = 1024 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
DEFAULT_PART_SIZE = 8 * MiB
PART_SIZE_DOUBLING_EVERY = 1_000

DEFAULT_ONSHORE_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "us-gov-east-1",
    "us-gov-west-1",
)
SSE_MODES = ("AES256", "aws:kms", "aws:kms:dsse")

_AWS_REGION_RE = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d+")
_NOT_FOUND = {"NoSuchKey", "404", "NotFound", "NoSuchVersion"}
_THROTTLE_OR_5XX = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "InternalError",
    "503",
    "500",
}
_INTEGRITY = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
_STREAM_ERRORS = (
    ReadTimeoutError,
    ResponseStreamingError,
    IncompleteReadError,
    ConnectionClosedError,
    BotoConnectionError,
)


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


#: Our algorithm names -> S3's (``ChecksumAlgorithm``) and the response/request field of each.
_S3_NAME = {checksums.CRC32C: "CRC32C", checksums.SHA256: "SHA256"}
_FIELD = {checksums.CRC32C: "ChecksumCRC32C", checksums.SHA256: "ChecksumSHA256"}


def _digest(algorithm: str, data: bytes) -> bytes:
    hasher = checksums.new(algorithm)
    hasher.update(data)
    return hasher.digest()


def _part_algorithm(checksum: str | None) -> str | None:
    """The algorithm an AssemblyPart's ``"<algorithm>:<hex>"`` checksum names, if one we speak."""
    algorithm = (checksum or "").partition(":")[0]
    return algorithm if algorithm in _FIELD else None


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def translate_error(exc: BaseException, key: str | None, op: str) -> StorageError:
    """Map a botocore failure to the storage family (the caller chains the cause)."""
    if isinstance(exc, StorageError):
        return exc
    what = f"{op} {key}" if key else op
    if isinstance(exc, ClientError):
        code, status = _code(exc), _status(exc)
        if code in _NOT_FOUND or (status == 404 and code != "NoSuchBucket"):
            return ObjectNotFound(key or "")
        if code == "NoSuchBucket":
            return StorageUnavailable(f"{what}: bucket does not exist")
        if code in _INTEGRITY:
            return IntegrityError(f"{what}: the store rejected a checksum ({code})")
        if code == "InvalidRange" or status == 416:
            return InvalidRange(f"{what}: range not satisfiable")
        if code in _THROTTLE_OR_5XX or status >= 500 or status == 429:
            return StorageUnavailable(f"{what}: store unavailable after retries ({code or status})")
        if code in ("AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StoragePermissionDenied(f"{what}: access denied ({code})")
        return StorageError(f"{what} failed ({code or status})")
    if isinstance(exc, FlexibleChecksumError):
        return IntegrityError(f"{what}: downloaded bytes do not match the stored checksum")
    if isinstance(exc, EndpointConnectionError | BotoConnectionError | ReadTimeoutError):
        return StorageUnavailable(f"{what}: cannot reach the store")
    if isinstance(exc, BotoCoreError):
        return StorageUnavailable(f"{what}: {type(exc).__name__}")
    return StorageError(f"{what} failed ({type(exc).__name__})")


def _raise(exc: BaseException, key: str | None, op: str) -> NoReturn:
    err = translate_error(exc, key, op)
    if err is exc:
        raise err
    if isinstance(err, ObjectNotFound):
        raise err from None  # the vendor's 404 adds nothing
    raise err from exc


def normalize_endpoint(url: str) -> str:
    """``scheme://host[:port]`` lower-cased, without path or trailing slash."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("endpoint_url must be http(s)://host[:port]")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def part_size_for(part_number: int, base: int) -> int:
    """Size of part ``part_number`` (1-based): doubles every 1,000 parts, capped at 5 GiB."""
    return min(MAX_PART_SIZE, base << ((part_number - 1) // PART_SIZE_DOUBLING_EVERY))


def _take(pending: list[bytes], limit: int) -> tuple[bytes, list[bytes], int]:
    """Split ``limit`` bytes off the front of ``pending`` without copying the rest."""
    taken: list[bytes] = []
    have = 0
    i = 0
    while have < limit:
        chunk = pending[i]
        need = limit - have
        if len(chunk) <= need:
            taken.append(chunk)
            have += len(chunk)
            i += 1
        else:
            taken.append(chunk[:need])
            pending[i] = chunk[need:]
            have += need
    rest = pending[i:]
    return b"".join(taken), rest, sum(len(c) for c in rest)


class S3ObjectStore:
    """Objects in one S3 bucket. Construct through ``open_object_store("s3://...")``."""

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
        onshore_regions: Iterable[str] = DEFAULT_ONSHORE_REGIONS,
        onshore_endpoints: Iterable[str] = (),
        endpoint_onshore: bool = False,
        retry_mode: str = "standard",
        max_attempts: int = 10,
        part_retries: int = 2,
        retry_base_delay: float = 0.5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        read_chunk_size: int = MiB,
        addressing_style: str | None = None,
        session: boto3.session.Session | None = None,
    ) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket or ""):
            raise ConfigurationError("invalid bucket name")
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ConfigurationError("part_size must be between 5 MiB and 5 GiB")
        if sse is not None and sse not in SSE_MODES:
            raise ConfigurationError(f"sse must be one of {', '.join(SSE_MODES)}")
        if sse_kms_key_id and not (sse or "").startswith("aws:kms"):
            raise ConfigurationError("sse_kms_key_id needs sse=aws:kms")
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise ConfigurationError("retry_mode must be standard or adaptive")
        if max_attempts < 1 or part_retries < 0:
            raise ConfigurationError("max_attempts must be >= 1 and part_retries >= 0")
        self._bucket = bucket
        self._endpoint = normalize_endpoint(endpoint_url) if endpoint_url else None
        self._part_size = part_size
        self._sse: dict[str, str] = {}
        if sse:
            self._sse["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._sse["SSEKMSKeyId"] = sse_kms_key_id
        self._onshore_regions = frozenset(onshore_regions)
        self._onshore_endpoints = frozenset(normalize_endpoint(e) for e in onshore_endpoints)
        self._endpoint_onshore = endpoint_onshore
        self._part_retries = part_retries
        self._retry_base_delay = retry_base_delay
        self._read_chunk = read_chunk_size
        # Multipart upload id -> the checksum algorithm it was created with (see _assembly_algorithm).
        self._algorithms: OrderedDict[str, str] = OrderedDict()
        self._algorithms_lock = threading.Lock()
        if self._endpoint and region is None:
            # A custom endpoint has no authoritative region: it must be stated.
            raise ConfigurationError("region is required with a custom endpoint_url")
        config = Config(
            region_name=region,
            signature_version="s3v4",
            retries={"mode": retry_mode, "total_max_attempts": max_attempts},  # incl. the first
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            s3={"addressing_style": addressing_style or ("path" if self._endpoint else "auto")},
        )
        session = session or boto3.session.Session()
        self._client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self._region = self._check_residency(region)

    # -- identity -----------------------------------------------------------------

    @property
    def location_id(self) -> str:
        if self._endpoint is None:
            return f"s3://{self._bucket}@{self._region}"
        endpoint = hashlib.sha256(self._endpoint.encode()).hexdigest()[:12]
        return f"s3://{self._bucket}@{self._region}+{endpoint}"

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def region(self) -> str:
        return self._region

    @property
    def part_size(self) -> int:
        return self._part_size

    @property
    def client(self) -> Any:
        """The boto3 client (for diagnostics and tests; do not bypass the store)."""
        return self._client

    def __repr__(self) -> str:
        return f"S3ObjectStore({self.location_id})"

    # -- residency ----------------------------------------------------------------

    def _bucket_location(self) -> str | None:
        try:
            loc = self._client.get_bucket_location(Bucket=self._bucket).get("LocationConstraint")
        except ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                raise StorageUnavailable(f"bucket {self._bucket} does not exist") from exc
            if self._endpoint is not None and _code(exc) in ("NotImplemented", "AccessDenied"):
                return None
            raise ResidencyError(
                f"cannot determine the region of bucket {self._bucket} ({_code(exc)}); refusing to start"
            ) from exc
        except BotoCoreError as exc:
            raise StorageUnavailable("cannot reach the store to check residency") from exc
        if not loc:
            return "us-east-1"  # S3 reports the original region as an empty constraint
        if loc == "EU":
            return "eu-west-1"  # legacy alias
        return str(loc)

    def _check_residency(self, configured: str | None) -> str:
        """Refuse to start unless the data provably stays onshore.

        AWS: the bucket's own region (GetBucketLocation) must be onshore; nothing the
        caller configures can override it. Custom endpoint: the endpoint must be
        declared onshore (``onshore_endpoints`` or the ``endpoint_onshore`` flag), the
        configured region must be onshore, and if the endpoint reports an AWS-style
        region for the bucket, that must be onshore too.
        """
        location = self._bucket_location()
        if self._endpoint is None:
            region = location or "us-east-1"
        else:
            if not (self._endpoint_onshore or self._endpoint in self._onshore_endpoints):
                raise ResidencyError(
                    f"custom endpoint for bucket {self._bucket} is not declared onshore "
                    "(name it in onshore_endpoints or set endpoint_onshore=true)"
                )
            assert configured is not None  # noqa: S101 - narrows the type; the branch above returned otherwise
            region = configured
            # Ceph/MinIO may answer with a zonegroup name such as "default": only an
            # AWS-style region name is evidence about where the bucket lives.
            if location and _AWS_REGION_RE.fullmatch(location) and location != configured:
                region = location
        if region not in self._onshore_regions:
            raise ResidencyError(
                f"bucket {self._bucket} is in region {region}, which is not an onshore region; refusing to start"
            )
        if self._endpoint is None and configured and configured != region:
            # Checked after residency: an offshore bucket is refused as such.
            raise ConfigurationError(f"bucket {self._bucket} is in {region}, not the configured {configured}")
        return region

    # -- put ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        chunks: Iterable[bytes],
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        key = validate_key(key)
        meta = validate_metadata(metadata)
        source = ChunkSource(chunks)
        full = checksums.new(checksums.CRC32C)
        upload_id: str | None = None
        op = "PutObject"
        try:
            pending: list[bytes] = []
            pending_len = 0
            part_number = 1
            parts: list[dict[str, Any]] = []
            part_digests: list[bytes] = []
            total = 0
            for chunk in source:
                if not chunk:
                    continue
                pending.append(chunk)
                pending_len += len(chunk)
                limit = part_size_for(part_number, self._part_size)
                # Strictly more than one part buffered: only now is multipart certain,
                # so an object of exactly one part still goes as a single PutObject.
                while pending_len > limit:
                    body, pending, pending_len = _take(pending, limit)
                    if upload_id is None:
                        op = "CreateMultipartUpload"
                        upload_id = self._create_upload(key, meta, checksums.CRC32C)
                        op = "UploadPart"
                    if part_number > MAX_PARTS:
                        raise StorageError(f"object {key} exceeds {MAX_PARTS} parts")
                    full.update(body)
                    parts.append(self._upload_part(key, upload_id, part_number, body, part_digests, checksums.CRC32C))
                    total += len(body)
                    del body
                    part_number += 1
                    limit = part_size_for(part_number, self._part_size)
            body = b"".join(pending)
            pending = []
            full.update(body)
            if upload_id is None:
                return self._put_single(key, body, meta, full.digest())
            if part_number > MAX_PARTS:
                raise StorageError(f"object {key} exceeds {MAX_PARTS} parts")
            parts.append(self._upload_part(key, upload_id, part_number, body, part_digests, checksums.CRC32C))
            total += len(body)
            del body
            op = "CompleteMultipartUpload"
            return self._complete(key, upload_id, parts, part_digests, total, checksums.CRC32C, full.hexdigest())
        except BaseException as exc:
            if upload_id is not None:
                self._abort(key, upload_id)
            if op == "CompleteMultipartUpload":
                # The request may have succeeded server-side although we saw a failure
                # (timeout, reset): an object nobody knows about would be an orphan.
                self._remove_if_completed(key, total, part_digests, checksums.CRC32C)
            if exc is source.error or not isinstance(exc, ClientError | BotoCoreError):
                raise  # the caller's own failure, or already one of ours
            _raise(exc, key, op)

    def _put_single(self, key: str, body: bytes, meta: dict[str, str], crc: bytes) -> StoredObject:
        checksum = _b64(crc)
        resp = self._client.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=body,
            ContentLength=len(body),
            ContentType="application/octet-stream",
            Metadata=meta,
            ChecksumAlgorithm="CRC32C",
            ChecksumCRC32C=checksum,
            **self._sse,
        )
        try:
            echoed = resp.get("ChecksumCRC32C")
            if echoed is not None and echoed != checksum:
                raise IntegrityError(f"store acknowledged object {key} with a different CRC32C")
            self._check_sse(key, resp)
        except IntegrityError:
            self._discard(key, resp.get("VersionId"))
            raise
        return StoredObject(
            key=key,
            size=len(body),
            version_id=resp.get("VersionId"),
            checksum=checksums.label(checksums.CRC32C, crc.hex()),
            parts=1,
        )

    def _check_sse(self, key: str, resp: Mapping[str, Any]) -> None:
        wanted = self._sse.get("ServerSideEncryption")
        if wanted and resp.get("ServerSideEncryption") not in (None, wanted):
            raise IntegrityError(f"store applied {resp.get('ServerSideEncryption')} to {key}, not {wanted}")

    def _create_upload(self, key: str, meta: dict[str, str], algorithm: str) -> str:
        resp = self._client.create_multipart_upload(
            Bucket=self._bucket,
            Key=key,
            ContentType="application/octet-stream",
            Metadata=meta,
            ChecksumAlgorithm=_S3_NAME[algorithm],
            **self._sse,
        )
        self._check_sse(key, resp)
        return str(resp["UploadId"])

    def _upload_part(
        self, key: str, upload_id: str, number: int, body: bytes, digests: list[bytes], algorithm: str
    ) -> dict[str, Any]:
        digest = _digest(algorithm, body)
        checksum = _b64(digest)
        field = _FIELD[algorithm]
        attempt = 0
        while True:
            try:
                resp = self._client.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentLength=len(body),
                    ChecksumAlgorithm=_S3_NAME[algorithm],
                    **{field: checksum},
                )
                break
            except (ClientError, BotoCoreError) as exc:
                # botocore already retried this request; the part's bytes are still in
                # memory and the upload id is valid, so a transient outage longer than
                # botocore's budget need not cost the whole upload.
                retryable = isinstance(translate_error(exc, key, "UploadPart"), StorageUnavailable)
                if not retryable or attempt >= self._part_retries:
                    raise
                attempt += 1
                delay = self._retry_base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())  # noqa: S311 - retry jitter, not a secret
                log.warning("retrying part %d of %s in %.2fs (%s)", number, key, delay, type(exc).__name__)
                time.sleep(delay)
        echoed = resp.get(field)
        if echoed is not None and echoed != checksum:
            raise IntegrityError(f"store acknowledged part {number} of {key} with a different {_S3_NAME[algorithm]}")
        digests.append(digest)
        return {"PartNumber": number, "ETag": resp["ETag"], field: checksum}

    def _complete(
        self,
        key: str,
        upload_id: str,
        parts: list[dict[str, Any]],
        digests: list[bytes],
        total: int,
        algorithm: str,
        whole_hex: str | None,
    ) -> StoredObject:
        resp = self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
        )
        version_id = resp.get("VersionId")
        field, name = _FIELD[algorithm], _S3_NAME[algorithm]
        composite = _b64(_digest(algorithm, b"".join(digests)))
        try:
            # Confirm what S3 now holds: the composite checksum of the parts we sent,
            # the total size, and the encryption we asked for.
            echoed = resp.get(field)
            head_args: dict[str, Any] = {"Bucket": self._bucket, "Key": key, "ChecksumMode": "ENABLED"}
            if version_id and version_id != "null":
                head_args["VersionId"] = version_id
            head = self._client.head_object(**head_args)
            stored = head.get(field) or echoed
            if echoed is not None and echoed.split("-")[0] != composite:
                raise IntegrityError(f"store completed {key} with a different composite {name}")
            if stored is not None and stored.split("-")[0] != composite:
                raise IntegrityError(f"store holds {key} with a different composite {name}")
            if head.get("ContentLength") != total:
                raise IntegrityError(f"store holds {key} with a different size than was sent")
            self._check_sse(key, head)
        except IntegrityError:
            self._discard(key, version_id)
            raise
        checksum = (
            checksums.label(algorithm, whole_hex)
            if whole_hex is not None
            else f"{algorithm}-composite:{base64.b64decode(composite).hex()}-{len(parts)}"
        )
        return StoredObject(key=key, size=total, version_id=version_id, checksum=checksum, parts=len(parts))

    # -- assembly (a multipart upload whose parts arrive over many requests and replicas) ----

    @property
    def min_part_size(self) -> int:
        return MIN_PART_SIZE

    def begin_assembly(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        key = validate_key(key)
        meta = validate_metadata(metadata)
        try:
            token = self._create_upload(key, meta, checksums.CRC32C)
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, key, "CreateMultipartUpload")
        self._remember_algorithm(token, checksums.CRC32C)
        return token

    def _remember_algorithm(self, token: str, algorithm: str) -> None:
        with self._algorithms_lock:
            self._algorithms[token] = algorithm
            while len(self._algorithms) > 1024:
                self._algorithms.popitem(last=False)

    def _assembly_algorithm(self, key: str, token: str) -> str:
        """The checksum algorithm the multipart upload `token` was created with (fixed for all its parts).

        Known here for an assembly this process began; otherwise asked of S3 once
        (ListMultipartUploads names each upload's algorithm): one begun before CRC32C
        goes on with SHA-256.
        """
        with self._algorithms_lock:
            known = self._algorithms.get(token)
        if known is not None:
            return known
        algorithm = checksums.CRC32C
        paginator = self._client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload.get("UploadId") == token and upload.get("Key") == key:
                    named = str(upload.get("ChecksumAlgorithm") or "").upper()
                    algorithm = next((a for a, n in _S3_NAME.items() if n == named), checksums.CRC32C)
        self._remember_algorithm(token, algorithm)
        return algorithm

    def put_assembly_part(
        self, key: str, token: str, number: int, offset: int, chunks: Iterable[bytes]
    ) -> AssemblyPart:
        key = validate_key(key)
        if not 1 <= number <= MAX_PARTS or offset < 0:
            raise StorageError(f"part number {number} of {key} is outside 1..{MAX_PARTS}")
        body = b"".join(chunks)
        digests: list[bytes] = []
        try:
            algorithm = self._assembly_algorithm(key, token)
            sent = self._upload_part(key, token, number, body, digests, algorithm)
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, key, "UploadPart")
        return AssemblyPart(
            number=number,
            offset=offset,
            size=len(body),
            checksum=checksums.label(algorithm, digests[0].hex()),
            etag=sent["ETag"],
        )

    def complete_assembly(
        self, key: str, token: str, parts: builtins.list[AssemblyPart], metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        key = validate_key(key)
        ordered = sorted(parts, key=lambda p: p.number)
        total = 0
        for part in ordered:
            if part.offset != total or part.checksum is None or part.etag is None:
                raise IntegrityError(f"the parts of object {key} are not contiguous or lack their digests")
            total += part.size
        # Every part carries the algorithm of its upload (CRC32C; SHA-256 for one begun before).
        algorithms = {_part_algorithm(p.checksum) for p in ordered}
        if len(algorithms) != 1 or None in algorithms:
            raise IntegrityError(f"the parts of object {key} do not share one known checksum algorithm")
        algorithm = str(algorithms.pop())
        field = _FIELD[algorithm]
        digests = [bytes.fromhex(str(p.checksum).partition(":")[2]) for p in ordered]
        listed = [
            {"PartNumber": p.number, "ETag": p.etag, field: _b64(d)} for p, d in zip(ordered, digests, strict=True)
        ]
        try:
            done = self._complete(key, token, listed, digests, total, algorithm, None)
        except ClientError as exc:
            if _code(exc) != "NoSuchUpload":
                _raise(exc, key, "CompleteMultipartUpload")
            # Completed already (the first answer was lost): the object must be exactly these parts.
            composite = _digest(algorithm, b"".join(digests))
            try:
                head = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
            except (ClientError, BotoCoreError) as again:
                _raise(again, key, "HeadObject")
            if head.get("ContentLength") != total or str(head.get(field, "")).split("-")[0] != _b64(composite):
                raise IntegrityError(f"the multipart upload of {key} is gone and the object is not its parts") from None
            return StoredObject(
                key=key,
                size=total,
                version_id=head.get("VersionId"),
                checksum=f"{algorithm}-composite:{composite.hex()}-{len(ordered)}",
                parts=len(ordered),
            )
        except BotoCoreError as exc:
            _raise(exc, key, "CompleteMultipartUpload")
        with self._algorithms_lock:
            self._algorithms.pop(token, None)
        return done

    def abort_assembly(self, key: str, token: str) -> None:
        self._abort(validate_key(key), token)
        with self._algorithms_lock:
            self._algorithms.pop(token, None)

    def _discard(self, key: str, version_id: str | None) -> None:
        """Delete an object we just wrote that does not match what the caller sent."""
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        if version_id:
            args["VersionId"] = version_id  # only ours, never an older version
        try:
            self._client.delete_object(**args)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not delete mismatching object %s (%s)", key, type(exc).__name__)

    def _remove_if_completed(self, key: str, total: int, digests: list[bytes], algorithm: str) -> None:
        """Delete the version our failed CompleteMultipartUpload may have created anyway."""
        composite = _b64(_digest(algorithm, b"".join(digests)))
        try:
            versions, _ = self._versions(key)
            for version in versions:
                if int(version.get("Size", -1)) != total:
                    continue
                head = self._client.head_object(
                    Bucket=self._bucket, Key=key, VersionId=version["VersionId"], ChecksumMode="ENABLED"
                )
                if str(head.get(_FIELD[algorithm], "")).split("-")[0] == composite:
                    self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=version["VersionId"])
                    log.warning("removed object %s version completed despite a reported failure", key)
        except (ClientError, BotoCoreError) as exc:
            log.error("could not check %s for a completed upload after a failure (%s)", key, type(exc).__name__)

    def _abort(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload and confirm it is gone; never masks the original error."""
        for attempt in range(3):
            try:
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) != "NoSuchUpload":
                    log.warning("abort of upload for %s failed (%s), attempt %d", key, _code(exc), attempt + 1)
                    continue
            except BotoCoreError as exc:
                log.warning("abort of upload for %s failed (%s), attempt %d", key, type(exc).__name__, attempt + 1)
                continue
            try:
                # S3 notes that parts still in flight can survive an abort: confirm.
                self._client.list_parts(Bucket=self._bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if _code(exc) == "NoSuchUpload":
                    return
            except BotoCoreError:
                pass
        # Leave a trail (ids only, no PHI): destroy(key) and sweep_temp() will finish it.
        log.error("multipart upload %s for %s could not be confirmed aborted", upload_id, key)

    # -- read -----------------------------------------------------------------------

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = validate_key(key)
        start, end = check_range_args(start, end)
        if end is not None and end == start:
            # HTTP cannot express an empty range; still report absence or a bad start.
            resolve_range(start, end, self.head(key).size)
            return iter(())
        args: dict[str, Any] = {"Bucket": self._bucket, "Key": key}
        whole = start == 0 and end is None
        if whole:
            args["ChecksumMode"] = "ENABLED"
        else:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            resp = self._client.get_object(**args)
        except ClientError as exc:
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                # Unsatisfiable: either the start is exactly the end (empty, fine) or past it.
                resolve_range(start, end, self.head(key).size)
                return iter(())
            _raise(exc, key, "GetObject")
        except BotoCoreError as exc:
            _raise(exc, key, "GetObject")
        # botocore checks SHA-256 (objects written before CRC32C) itself, CRC32C only with awscrt: check that here.
        crc = resp.get("ChecksumCRC32C") if whole else None
        expect = base64.b64decode(crc) if crc and "-" not in crc else None
        return self._stream(key, resp, start, expect)

    def _stream(self, key: str, resp: dict[str, Any], start: int, crc32c: bytes | None = None) -> Iterator[bytes]:
        """The body from `start`, resumed where it broke; checked against the whole object's CRC32C when given."""
        hasher = checksums.new(checksums.CRC32C) if crc32c is not None else None
        body = resp["Body"]
        stop = start + int(resp["ContentLength"])
        pin: dict[str, Any] = {}
        if resp.get("VersionId") and resp["VersionId"] != "null":
            pin["VersionId"] = resp["VersionId"]
        elif resp.get("ETag"):
            pin["IfMatch"] = resp["ETag"]
        pos = start
        resumes = 0
        try:
            while True:
                try:
                    for chunk in body.iter_chunks(self._read_chunk):
                        pos += len(chunk)
                        if hasher is not None:
                            hasher.update(chunk)
                        yield chunk
                    if pos != stop:
                        raise IncompleteReadError(actual_bytes=pos - start, expected_bytes=stop - start)
                    if hasher is not None and hasher.digest() != crc32c:
                        raise IntegrityError(f"object {key} does not match its stored CRC32C")
                    return
                except FlexibleChecksumError as exc:
                    raise IntegrityError(f"object {key} does not match its stored checksum") from exc
                except _STREAM_ERRORS as exc:
                    if resumes >= self._part_retries + 1:
                        raise StorageUnavailable(f"download of {key} keeps failing") from exc
                    resumes += 1
                    body.close()
                    time.sleep(self._retry_base_delay * resumes)
                    log.warning("resuming download of %s at byte %d (%s)", key, pos, type(exc).__name__)
                    try:
                        resp = self._client.get_object(
                            Bucket=self._bucket, Key=key, Range=f"bytes={pos}-{stop - 1}", **pin
                        )
                    except ClientError as exc2:
                        if _code(exc2) == "PreconditionFailed":
                            raise IntegrityError(f"object {key} changed during the download") from exc2
                        _raise(exc2, key, "GetObject")
                    except BotoCoreError as exc2:
                        _raise(exc2, key, "GetObject")
                    body = resp["Body"]
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        try:
            resp = self._client.head_object(Bucket=self._bucket, Key=key, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, key, "HeadObject")
        return ObjectInfo(
            key=key,
            size=int(resp["ContentLength"]),
            metadata=dict(resp.get("Metadata") or {}),
            version_id=resp.get("VersionId"),
            last_modified=resp.get("LastModified"),
            checksum=self._checksum_label(resp),
            etag=resp.get("ETag"),
            encryption=resp.get("ServerSideEncryption"),
        )

    @staticmethod
    def _checksum_label(resp: Mapping[str, Any]) -> str | None:
        algorithm = next((a for a, f in _FIELD.items() if resp.get(f)), None)
        if algorithm is None:
            return None
        value = str(resp[_FIELD[algorithm]])
        b64, _, count = value.partition("-")
        hex_digest = base64.b64decode(b64).hex()
        etag = str(resp.get("ETag", "")).strip('"')
        if not count and resp.get("ChecksumType") != "FULL_OBJECT" and "-" in etag:
            count = etag.rsplit("-", 1)[1]  # multipart ETag "<md5s>-<parts>"
        if count:
            return f"{algorithm}-composite:{hex_digest}-{count}"
        return checksums.label(algorithm, hex_digest)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    try:
                        validate_key(item["Key"])
                    except StorageError:
                        continue  # not written by this library
                    yield ObjectInfo(
                        key=item["Key"],
                        size=int(item["Size"]),
                        metadata=None,
                        last_modified=item.get("LastModified"),
                        etag=item.get("ETag"),
                    )
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, None, "ListObjectsV2")

    # -- destruction ----------------------------------------------------------------

    def _versions(self, key: str) -> tuple[builtins.list[dict[str, Any]], builtins.list[dict[str, Any]]]:
        """Every version and delete marker of exactly ``key`` (prefix listing, filtered)."""
        versions: builtins.list[dict[str, Any]] = []
        markers: builtins.list[dict[str, Any]] = []
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=key):
            # Prefix "obj-1" also lists "obj-10": keep the exact key only.
            versions.extend(v for v in page.get("Versions", []) if v["Key"] == key)
            markers.extend(m for m in page.get("DeleteMarkers", []) if m["Key"] == key)
        return versions, markers

    def _uploads(self, key: str | None) -> builtins.list[dict[str, Any]]:
        uploads: builtins.list[dict[str, Any]] = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        args: dict[str, Any] = {"Bucket": self._bucket}
        if key is not None:
            args["Prefix"] = key
        for page in paginator.paginate(**args):
            uploads.extend(u for u in page.get("Uploads", []) if key is None or u["Key"] == key)
        return uploads

    def _lock_reason(self, key: str, version_id: str) -> BlockedVersion:
        """Why S3 refused to delete a version: Object Lock legal hold / retention, or IAM."""
        hold: str | None = None
        mode: str | None = None
        retain_until: datetime | None = None
        try:
            # HeadObject reports all Object Lock settings of a version in one call.
            head = self._client.head_object(Bucket=self._bucket, Key=key, VersionId=version_id)
            hold = head.get("ObjectLockLegalHoldStatus")
            mode = head.get("ObjectLockMode")
            retain_until = head.get("ObjectLockRetainUntilDate")
        except (ClientError, BotoCoreError):
            pass
        if hold is None:
            try:
                resp = self._client.get_object_legal_hold(Bucket=self._bucket, Key=key, VersionId=version_id)
                hold = resp.get("LegalHold", {}).get("Status")
            except (ClientError, BotoCoreError):
                pass
        if mode is None:
            try:
                resp = self._client.get_object_retention(Bucket=self._bucket, Key=key, VersionId=version_id)
                mode = resp.get("Retention", {}).get("Mode")
                retain_until = resp.get("Retention", {}).get("RetainUntilDate")
            except (ClientError, BotoCoreError):
                pass
        reasons = []
        if hold == "ON":
            reasons.append("Object Lock legal hold ON")
        if mode and retain_until is not None and retain_until > datetime.now(UTC):
            reasons.append(f"Object Lock {mode} retention until {retain_until.isoformat()}")
        if not reasons:
            reasons.append("access denied without Object Lock (check bucket policy and IAM)")
        return BlockedVersion(version_id=version_id, reason="; ".join(reasons), retain_until=retain_until)

    def destroy(self, key: str) -> DestroyReport:
        key = validate_key(key)
        started = utcnow()
        deleted: list[str] = []
        markers_deleted: list[str] = []
        blocked: dict[str, BlockedVersion] = {}
        aborted = 0
        try:
            # Up to three rounds: a put racing with destroy shows up in the re-listing.
            for _ in range(3):
                for upload in self._uploads(key):
                    try:
                        self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload["UploadId"])
                        aborted += 1
                    except ClientError as exc:
                        if _code(exc) != "NoSuchUpload":
                            raise
                versions, markers = self._versions(key)
                todo = [(v["VersionId"], False) for v in versions] + [(m["VersionId"], True) for m in markers]
                todo = [(vid, marker) for vid, marker in todo if vid not in blocked]
                if not todo:
                    break
                for version_id, is_marker in todo:
                    try:
                        self._client.delete_object(Bucket=self._bucket, Key=key, VersionId=version_id)
                    except ClientError as exc:
                        if _code(exc) in ("AccessDenied", "403") or _status(exc) == 403:
                            blocked[version_id] = self._lock_reason(key, version_id)
                            continue
                        if _code(exc) in _NOT_FOUND:
                            continue  # already gone (a concurrent destroy)
                        raise
                    (markers_deleted if is_marker else deleted).append(version_id)
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, key, "destroy")
        proof = self.verify_absent(key)
        report = DestroyReport(
            key=key,
            location_id=self.location_id,
            versions_deleted=tuple(deleted),
            delete_markers_deleted=tuple(markers_deleted),
            blocked=tuple(blocked.values()),
            uploads_aborted=aborted,
            temp_files_removed=0,
            verified=proof.absent and not blocked,
            proof=proof,
            started_at=started,
            finished_at=utcnow(),
        )
        return settle(report)

    def verify_absent(self, key: str) -> AbsenceProof:
        key = validate_key(key)
        checks: list[str] = []
        try:
            try:
                resp = self._client.head_object(Bucket=self._bucket, Key=key)
                head_absent = False
                checks.append(f"s3:HeadObject {key} -> 200 PRESENT (version {resp.get('VersionId', 'null')})")
            except ClientError as exc:
                if _status(exc) != 404:
                    raise
                head_absent = True
                checks.append(f"s3:HeadObject {key} -> 404 Not Found")
            versions, markers = self._versions(key)
            checks.append(
                f"s3:ListObjectVersions prefix={key} (exact key) -> {len(versions)} version(s), "
                f"{len(markers)} delete marker(s)"
                + (f": {', '.join(v['VersionId'] for v in versions + markers)}" if versions or markers else "")
            )
            uploads = self._uploads(key)
            checks.append(f"s3:ListMultipartUploads prefix={key} (exact key) -> {len(uploads)} upload(s)")
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, key, "verify_absent")
        return AbsenceProof(
            key=key,
            absent=head_absent and not versions and not markers and not uploads,
            checks=tuple(checks),
            location_id=self.location_id,
            checked_at=utcnow(),
        )

    # -- maintenance ----------------------------------------------------------------

    def sweep_temp(self, older_than: float) -> int:
        """Abort incomplete multipart uploads initiated more than ``older_than`` s ago."""
        if older_than < 0:
            raise ValueError("older_than must be >= 0")
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
        aborted = 0
        try:
            for upload in self._uploads(None):
                initiated = upload.get("Initiated")
                if initiated is not None and initiated > cutoff:
                    continue  # may still be in progress
                try:
                    self._client.abort_multipart_upload(
                        Bucket=self._bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
                except ClientError as exc:
                    if _code(exc) != "NoSuchUpload":
                        raise
        except (ClientError, BotoCoreError) as exc:
            _raise(exc, None, "sweep_temp")
        return aborted

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except (ClientError, BotoCoreError) as exc:
            raise StorageUnavailable(f"bucket {self._bucket} is not reachable") from exc
        # Re-check residency: a bucket can be replaced by one of the same name elsewhere.
        region = self._check_residency(self._region)
        if region != self._region:
            raise ResidencyError(f"bucket {self._bucket} moved to {region}")
