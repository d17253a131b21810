"""``awskms://`` key provider: AWS KMS keys in an onshore region, through boto3.

Naming. ``awskms://arn:aws:kms:us-east-1:111122223333:alias/phigate`` names an
alias *prefix*. Each caller key id gets its own KMS key(s), created on demand in
that account and region:

* ``alias/phigate/<key_id>``      -> the key's newest version (used for new DEKs)
* ``alias/phigate/<key_id>/v<N>`` -> version N, kept so old DEKs still unwrap

Each KMS key is also tagged ``phigate:key_id`` and ``phigate:version``.

Rotation creates a *new KMS key* (version N+1), points the main alias at it and
keeps the older keys for unwrap; :meth:`AwsKmsProvider.rewrap` moves a DEK to the
newest key with ReEncrypt, so the plaintext DEK never leaves KMS. (KMS automatic
rotation keeps one key id and is invisible to us; explicit versions let rewrap,
evidence and destruction name exactly which KEK a DEK depends on.)

Destruction schedules deletion of every version's KMS key (pending window 7-30
days) and reports the date. KMS refuses a key pending deletion; we also check
the key state before each unwrap so the refusal does not depend on the backend.

The caller's context plus ``phigate:key_id`` and ``phigate:key_version`` is the
KMS EncryptionContext, so CloudTrail shows what each Decrypt was for and a wrapped
DEK cannot be replayed under another key id, version or context.

Residency: the ARN's region must be in ``onshore_regions`` or the provider
refuses to start (ResidencyError) before any network call.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from .context import validate_context
from .errors import (
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyDestroyed,
    KeyNotFound,
    ProviderUnavailable,
    ResidencyError,
)
from .keys import DEFAULT_ONSHORE_REGIONS, DataKey, KeyDestruction, WrappedKey, validate_key_id

SCHEME = "awskms"
DEFAULT_PENDING_WINDOW_DAYS = 30
# Seconds to connect, seconds to wait for each answer, attempts per call (the first included).
DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, DEFAULT_MAX_ATTEMPTS = 5.0, 15.0, 3
_ARN_RE = re.compile(
    r"arn:(?P<partition>aws|aws-us-gov):kms:(?P<region>[a-z]{2}(?:-gov)?-[a-z]+-\d):"
    r"(?P<account>\d{12}):(?P<prefix>alias/[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)"
)
_BLOB_TAG = "phigate:blob:"
_TAG_VALUE_MAX = 256
_DECRYPT_ERRORS = {"InvalidCiphertextException", "IncorrectKeyException", "AccessDeniedException"}


class _AlreadyExists(CryptoError):
    """Internal: an alias we tried to create exists (another replica won a race)."""


def _client_error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


class AwsKmsProvider:
    """Per-key-id KMS keys behind aliases, in one onshore account/region."""

    scheme = SCHEME

    def __init__(
        self,
        *,
        partition: str,
        region: str,
        account: str,
        prefix: str,
        onshore_regions: tuple[str, ...] = DEFAULT_ONSHORE_REGIONS,
        pending_window_days: int = DEFAULT_PENDING_WINDOW_DAYS,
        endpoint_url: str | None = None,
        client: object | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> None:
        # Residency is checked first, before any client exists or any call is made.
        if region not in onshore_regions:
            raise ResidencyError(f"KMS region {region} is not an allowed onshore region")
        if not (7 <= int(pending_window_days) <= 30):
            raise ConfigurationError("pending_window_days must be between 7 and 30")
        self.partition, self.region, self.account, self.prefix = partition, region, account, prefix
        self.pending_window_days = int(pending_window_days)
        self.endpoint_url = endpoint_url
        if client is None:
            import boto3
            from botocore.config import Config

            # Bounded retries and timeouts: a readiness probe, an upload or a download must
            # fail promptly rather than hang when KMS is unreachable or stops answering.
            config = Config(
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                retries={"max_attempts": max_attempts, "mode": "standard"},
            )
            client = boto3.client("kms", region_name=region, endpoint_url=endpoint_url, config=config)
        self._kms = client
        self._versions_by_arn: dict[str, tuple[str, int]] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        onshore_regions: tuple[str, ...] = DEFAULT_ONSHORE_REGIONS,
        pending_window_days: int | None = None,
        client: object | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> AwsKmsProvider:
        rest = url[len("awskms://") :]
        arn, _, query = rest.partition("?")
        m = _ARN_RE.fullmatch(arn)
        if not m:
            raise ConfigurationError("awskms URL must be awskms://arn:aws:kms:REGION:ACCOUNT:alias/PREFIX")
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        unknown = set(params) - {"endpoint_url", "pending_window_days"}
        if unknown:
            raise ConfigurationError("unknown awskms URL parameter")
        window = pending_window_days
        if window is None:
            window = int(params.get("pending_window_days", DEFAULT_PENDING_WINDOW_DAYS))
        return cls(
            partition=m["partition"],
            region=m["region"],
            account=m["account"],
            prefix=m["prefix"],
            onshore_regions=onshore_regions,
            pending_window_days=window,
            endpoint_url=params.get("endpoint_url") or None,
            client=client,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_attempts=max_attempts,
        )

    def __repr__(self) -> str:
        return f"AwsKmsProvider({self.url})"

    @property
    def url(self) -> str:
        return f"awskms://arn:{self.partition}:kms:{self.region}:{self.account}:{self.prefix}"

    # ----------------------------------------------------------------- naming
    def _alias(self, key_id: str, version: int | None = None) -> str:
        name = f"{self.prefix}/{validate_key_id(key_id)}"
        return name if version is None else f"{name}/v{version}"

    def _arn(self, alias: str) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:{alias}"

    # ------------------------------------------------------------- KMS calls
    def _call(self, op: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._kms, op)(**kwargs)
        except ClientError as exc:
            code = _client_error_code(exc)
            if code == "NotFoundException":
                raise KeyNotFound("KMS key not found") from None
            if code in _DECRYPT_ERRORS and op in ("decrypt", "re_encrypt"):
                raise DecryptionError() from None
            if code == "AlreadyExistsException":
                raise _AlreadyExists(f"KMS {op}: already exists") from None
            if code == "KMSInvalidStateException":
                raise KeyDestroyed("KMS key is pending deletion or unusable") from None
            raise ProviderUnavailable(f"KMS {op} failed: {code}") from None
        except BotoCoreError:
            raise ProviderUnavailable(f"KMS {op} failed: unreachable") from None

    def _describe(self, alias: str) -> dict[str, Any]:
        meta: dict[str, Any] = self._call("describe_key", KeyId=self._arn(alias))["KeyMetadata"]
        return meta

    @staticmethod
    def _require_enabled(meta: dict[str, Any]) -> None:
        state = meta.get("KeyState")
        if state in ("PendingDeletion", "PendingReplicaDeletion"):
            raise KeyDestroyed("KMS key is pending deletion")
        if state != "Enabled":
            raise CryptoError("KMS key is not enabled")

    def _version_of(self, arn: str) -> tuple[str, int]:
        """(key_id, version) of a KMS key, from its tags; immutable, so cached."""
        if arn not in self._versions_by_arn:
            tags = {t["TagKey"]: t["TagValue"] for t in self._call("list_resource_tags", KeyId=arn)["Tags"]}
            try:
                self._versions_by_arn[arn] = (tags["phigate:key_id"], int(tags["phigate:version"]))
            except (KeyError, ValueError):
                raise CryptoError("KMS key is not a phigate key (tags missing)") from None
        return self._versions_by_arn[arn]

    def _list_aliases(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        marker = None
        while True:
            kw: dict[str, Any] = {"Marker": marker} if marker else {}
            page = self._call("list_aliases", **kw)
            out.extend(page.get("Aliases", []))
            if not page.get("Truncated"):
                return out
            marker = page["NextMarker"]

    def _version_aliases(self, key_id: str) -> dict[int, str]:
        """version -> target KMS key id, from the alias listing."""
        base = self._alias(key_id) + "/v"
        out = {}
        for a in self._list_aliases():
            name = a.get("AliasName", "")
            if name.startswith(base) and name[len(base) :].isdigit() and a.get("TargetKeyId"):
                out[int(name[len(base) :])] = a["TargetKeyId"]
        return out

    def _context(self, key_id: str, version: int, context: Mapping[str, str]) -> dict[str, str]:
        ec = validate_context(context)
        ec["phigate:key_id"] = key_id
        ec["phigate:key_version"] = str(version)
        return ec

    def _create_version(self, key_id: str, version: int) -> bool:
        """Create KMS key for ``version`` and its version alias; False if it already existed."""
        meta = self._call(
            "create_key",
            Description=f"phigate KEK {key_id} v{version}",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[
                {"TagKey": "phigate:key_id", "TagValue": key_id},
                {"TagKey": "phigate:version", "TagValue": str(version)},
            ],
        )["KeyMetadata"]
        try:
            self._call("create_alias", AliasName=self._alias(key_id, version), TargetKeyId=meta["KeyId"])
        except _AlreadyExists:
            # Lost a race with another replica: discard our orphan key.
            self._call("schedule_key_deletion", KeyId=meta["KeyId"], PendingWindowInDays=7)
            return False
        self._versions_by_arn[meta["Arn"]] = (key_id, version)
        return True

    def _point_main_alias(self, key_id: str, version: int) -> None:
        target = self._describe(self._alias(key_id, version))["KeyId"]
        try:
            self._call("update_alias", AliasName=self._alias(key_id), TargetKeyId=target)
        except KeyNotFound:
            self._call("create_alias", AliasName=self._alias(key_id), TargetKeyId=target)

    # -------------------------------------------------------------- lifecycle
    def ensure_key(self, key_id: str) -> int:
        validate_key_id(key_id)
        try:
            meta = self._describe(self._alias(key_id))
        except KeyNotFound:
            self._create_version(key_id, 1)
            with contextlib.suppress(_AlreadyExists):  # created concurrently
                self._call(
                    "create_alias",
                    AliasName=self._alias(key_id),
                    TargetKeyId=self._describe(self._alias(key_id, 1))["KeyId"],
                )
            meta = self._describe(self._alias(key_id))
        self._require_enabled(meta)
        return self._version_of(meta["Arn"])[1]

    def current_version(self, key_id: str) -> int:
        meta = self._describe(self._alias(key_id))
        self._require_enabled(meta)
        return self._version_of(meta["Arn"])[1]

    def rotate(self, key_id: str) -> int:
        self._require_enabled(self._describe(self._alias(key_id)))
        while True:
            version = max(self._version_aliases(key_id), default=0) + 1
            if self._create_version(key_id, version):
                break
        self._point_main_alias(key_id, version)
        return version

    def destroy_key(self, key_id: str) -> KeyDestruction:
        versions = self._version_aliases(key_id)
        if not versions:
            raise KeyNotFound(f"key {key_id} does not exist")
        now = datetime.now(UTC)
        dates = []
        for version in sorted(versions):
            meta = self._call("describe_key", KeyId=versions[version])["KeyMetadata"]
            if meta.get("KeyState") == "PendingDeletion":
                date = meta.get("DeletionDate")  # already scheduled: idempotent retry
            else:
                date = self._call(
                    "schedule_key_deletion",
                    KeyId=versions[version],
                    PendingWindowInDays=self.pending_window_days,
                )["DeletionDate"]
            if isinstance(date, (int, float)):
                date = datetime.fromtimestamp(date, UTC)
            dates.append(date)
        return KeyDestruction(
            key_id=key_id,
            provider=self.scheme,
            method="awskms:ScheduleKeyDeletion",
            destroyed_at=now,
            deletion_scheduled_for=max(dates),
            pending_window_days=self.pending_window_days,
            versions=tuple(sorted(versions)),
        )

    def key_ids(self) -> list[str]:
        base = self.prefix + "/"
        out = []
        for a in self._list_aliases():
            name = a.get("AliasName", "")
            rest = name[len(base) :]
            if name.startswith(base) and "/" not in rest and a.get("TargetKeyId"):
                meta = self._call("describe_key", KeyId=a["TargetKeyId"])["KeyMetadata"]
                if meta.get("KeyState") == "Enabled":
                    out.append(rest)
        return sorted(out)

    def check(self) -> None:
        self._call("list_aliases", Limit=1)

    # --------------------------------------------------------------- wrapping
    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[DataKey, WrappedKey]:
        validate_context(context)
        meta = self._describe(self._alias(key_id))
        self._require_enabled(meta)
        _, version = self._version_of(meta["Arn"])
        resp = self._call(
            "generate_data_key",
            KeyId=meta["Arn"],
            NumberOfBytes=32,
            EncryptionContext=self._context(key_id, version, context),
        )
        if resp.get("KeyId") != meta["Arn"] or len(resp["Plaintext"]) != 32:
            raise CryptoError("KMS returned an unexpected data key")
        return DataKey(resp["Plaintext"]), WrappedKey(self.scheme, key_id, version, resp["CiphertextBlob"])

    def _source_meta(self, wrapped: WrappedKey) -> dict[str, Any]:
        if wrapped.provider != self.scheme:
            raise DecryptionError()
        meta = self._describe(self._alias(wrapped.key_id, wrapped.key_version))
        self._require_enabled(meta)
        return meta

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> DataKey:
        ec = self._context(wrapped.key_id, wrapped.key_version, context)
        meta = self._source_meta(wrapped)
        # KeyId pins the KMS key: a blob made under another key is refused by KMS.
        resp = self._call("decrypt", CiphertextBlob=wrapped.blob, EncryptionContext=ec, KeyId=meta["Arn"])
        if resp.get("KeyId") != meta["Arn"] or len(resp["Plaintext"]) != 32:
            raise DecryptionError()
        return DataKey(resp["Plaintext"])

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        src_ec = self._context(wrapped.key_id, wrapped.key_version, context)
        src = self._source_meta(wrapped)
        dst = self._describe(self._alias(wrapped.key_id))
        self._require_enabled(dst)
        _, version = self._version_of(dst["Arn"])
        resp = self._call(
            "re_encrypt",
            CiphertextBlob=wrapped.blob,
            SourceEncryptionContext=src_ec,
            SourceKeyId=src["Arn"],
            DestinationKeyId=dst["Arn"],
            DestinationEncryptionContext=self._context(wrapped.key_id, version, context),
        )
        if resp.get("SourceKeyId") != src["Arn"] or resp.get("KeyId") != dst["Arn"]:
            raise DecryptionError()
        return WrappedKey(self.scheme, wrapped.key_id, version, resp["CiphertextBlob"])

    # ------------------------------------------------------------------ blobs
    def _blob_key(self, name: str) -> str:
        self.ensure_key(name)
        return str(self._describe(self._alias(name, 1))["Arn"])

    def put_blob(self, name: str, data: bytes) -> None:
        """Store a small sealed blob as tags of the v1 KMS key of key id ``name``."""
        arn = self._blob_key(name)
        text = base64.b64encode(bytes(data)).decode()
        chunks = [text[i : i + _TAG_VALUE_MAX] for i in range(0, len(text), _TAG_VALUE_MAX)]
        if len(chunks) > 40:
            raise CryptoError("blob too large for KMS tag storage")
        old = [
            t["TagKey"]
            for t in self._call("list_resource_tags", KeyId=arn)["Tags"]
            if t["TagKey"].startswith(_BLOB_TAG)
        ]
        if old:
            self._call("untag_resource", KeyId=arn, TagKeys=old)
        tags = [{"TagKey": f"{_BLOB_TAG}{i}", "TagValue": c} for i, c in enumerate(chunks)]
        tags.append({"TagKey": f"{_BLOB_TAG}n", "TagValue": str(len(chunks))})
        self._call("tag_resource", KeyId=arn, Tags=tags)

    def get_blob(self, name: str) -> bytes | None:
        try:
            arn = self._describe(self._alias(name, 1))["Arn"]
        except KeyNotFound:
            return None
        tags = {t["TagKey"]: t["TagValue"] for t in self._call("list_resource_tags", KeyId=arn)["Tags"]}
        if f"{_BLOB_TAG}n" not in tags:
            return None
        n = int(tags[f"{_BLOB_TAG}n"])
        return base64.b64decode("".join(tags[f"{_BLOB_TAG}{i}"] for i in range(n)))
