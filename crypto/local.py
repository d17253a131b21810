"""``local://`` key provider: an onshore keyring directory of versioned 256-bit KEKs.

Layout (created by :func:`init_keyring`; directories 0700, files 0600)::

    ROOT/PHIGATE-KEYRING          marker (JSON: format, created_at)
    ROOT/keys/<key_id>/v<N>.kek   32 random bytes, one file per KEK version
    ROOT/destroyed/<key_id>.json  tombstone + destruction evidence
    ROOT/blobs/<name>.bin         small sealed blobs (e.g. the signing key)

A DEK is wrapped with AES-256-GCM under the key's newest version; the associated
data binds the key id, the version and the caller's context, so a wrapped DEK
cannot be replayed under another key id, version or context.

This provider is for a single onshore host (the embedded default). It warns on
open: several replicas need a shared, access-controlled custody such as KMS.

A KEK version is read from disk once per process and kept as an AES-GCM object:
a version file never changes, and a list of fifty file names would otherwise cost
fifty opens and reads. Destruction is unaffected: every wrap and unwrap checks
the key's tombstone first, and destruction writes the tombstone before it
shreds the files, so from that moment no process unwraps under the key,
whatever it holds in memory; the destroying process also drops its copy.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import threading
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .context import canonical_context
from .errors import CryptoError, DecryptionError, KeyDestroyed, KeyNotFound, ProviderUnavailable
from .keys import DataKey, KeyDestruction, WrappedKey, validate_key_id

log = logging.getLogger("crypto.local")

SCHEME = "local"
MARKER = "PHIGATE-KEYRING"
KEK_SIZE = 32
_WRAP_LABEL = b"phigate/local-wrap/v1"
_NONCE_SIZE = 12


class SingleHostKeyringWarning(UserWarning):
    """The local keyring is meant for one onshore host, not a replicated deployment."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdir_private(path: Path) -> None:
    path.mkdir(mode=0o700, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def _write_new_file(directory: Path, name: str, data: bytes, *, replace: bool = False) -> None:
    """Write ``data`` to directory/name durably with mode 0600.

    The file is fully written and fsynced under a temporary name first, then
    linked in place (exclusive: fails with FileExistsError if present) or renamed
    (replace=True), so a reader never sees a partial KEK.
    """
    tmp = directory / f".tmp-{os.urandom(8).hex()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, directory / name)
        else:
            os.link(tmp, directory / name)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(directory)


def init_keyring(path: str | os.PathLike[str]) -> Path:
    """Create (or check) an onshore keyring directory; idempotent. Returns its path.

    Called by ``phigate keys init``. Refuses a non-empty directory that is not
    already a keyring, so keys are never mixed into an unrelated directory.
    """
    root = Path(path)
    if not root.is_absolute():
        raise CryptoError("keyring path must be absolute")
    if root.exists() and not (root / MARKER).exists() and any(root.iterdir()):
        raise CryptoError("keyring path exists, is not empty and is not a keyring")
    root.parent.mkdir(parents=True, exist_ok=True)
    _mkdir_private(root)
    for sub in ("keys", "destroyed", "blobs"):
        _mkdir_private(root / sub)
    if not (root / MARKER).exists():
        marker = json.dumps({"format": 1, "created_at": datetime.now(UTC).isoformat()})
        with contextlib.suppress(FileExistsError):
            _write_new_file(root, MARKER, marker.encode())
    return root


def _check_private(path: Path) -> None:
    st = path.stat()
    # Refuse keys that other local users could read or swap.
    if st.st_mode & 0o077 or st.st_uid != os.geteuid():
        raise CryptoError("keyring has insecure ownership or permissions")


class LocalKeyring:
    """Versioned KEKs in a 0700 directory on the onshore host."""

    scheme = SCHEME

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.root = Path(path)
        self._keks: dict[tuple[str, int], AESGCM] = {}
        self._keks_lock = threading.Lock()
        self._tombstone_paths: dict[str, str] = {}  # key id -> its tombstone's path, built once
        if not (self.root / MARKER).is_file():
            raise ProviderUnavailable("not an initialised keyring (run `phigate keys init`)")
        for p in (self.root, self.root / "keys", self.root / "destroyed", self.root / "blobs"):
            _check_private(p)
        msg = (
            "local:// keyring is meant for a single onshore host; use awskms:// "
            "in an onshore region for replicated deployments"
        )
        log.warning(msg)
        warnings.warn(msg, SingleHostKeyringWarning, stacklevel=3)

    def __repr__(self) -> str:
        return f"LocalKeyring(local://{self.root})"

    @property
    def url(self) -> str:
        return f"local://{self.root}"

    # ------------------------------------------------------------------ paths
    def _key_dir(self, key_id: str) -> Path:
        return self.root / "keys" / validate_key_id(key_id)

    def _tombstone(self, key_id: str) -> Path:
        return self.root / "destroyed" / f"{validate_key_id(key_id)}.json"

    def _destroyed(self, key_id: str) -> bool:
        """Whether the key's tombstone exists: one stat, on every wrap and unwrap (see the module docstring).

        Only the path is kept (building it through pathlib cost more than the stat on a list of fifty
        names); the answer never is, so a destruction by any process stops the next unwrap."""
        path = self._tombstone_paths.get(key_id)
        if path is None:
            path = self._tombstone_paths[key_id] = str(self._tombstone(key_id))
        return os.path.exists(path)

    def _versions(self, key_id: str) -> list[int]:
        d = self._key_dir(key_id)
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            return []
        out = []
        for n in names:
            if n.startswith("v") and n.endswith(".kek") and n[1:-4].isdigit():
                out.append(int(n[1:-4]))
        return sorted(out)

    def _alive_versions(self, key_id: str) -> list[int]:
        if self._destroyed(key_id):
            raise KeyDestroyed(f"key {key_id} was destroyed")
        versions = self._versions(key_id)
        if not versions:
            raise KeyNotFound(f"key {key_id} does not exist")
        return versions

    def _kek(self, key_id: str, version: int) -> AESGCM:
        """The KEK version as an AEAD; the caller has checked the tombstone (see the module docstring)."""
        found = self._keks.get((key_id, version))
        if found is None:
            found = AESGCM(self._read_kek(key_id, version))
            with self._keks_lock:
                self._keks[(key_id, version)] = found
        return found

    def _read_kek(self, key_id: str, version: int) -> bytes:
        path = self._key_dir(key_id) / f"v{version}.kek"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            if self._tombstone(key_id).exists():
                raise KeyDestroyed(f"key {key_id} was destroyed") from None
            raise KeyNotFound(f"key {key_id} version {version} does not exist") from None
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o077 or st.st_uid != os.geteuid():
                raise CryptoError("key file has insecure ownership or permissions")
            data = os.read(fd, KEK_SIZE + 1)
        finally:
            os.close(fd)
        if len(data) != KEK_SIZE:
            raise CryptoError("key file is corrupt")
        return data

    # -------------------------------------------------------------- lifecycle
    def ensure_key(self, key_id: str) -> int:
        validate_key_id(key_id)
        if self._tombstone(key_id).exists():
            # A destroyed key id is never silently resurrected: old wrapped DEKs
            # must stay unreadable and new data needs a deliberate new id.
            raise KeyDestroyed(f"key {key_id} was destroyed")
        versions = self._versions(key_id)
        if versions:
            return versions[-1]
        _mkdir_private(self._key_dir(key_id))
        with contextlib.suppress(FileExistsError):  # created concurrently
            _write_new_file(self._key_dir(key_id), "v1.kek", os.urandom(KEK_SIZE))
        return self._versions(key_id)[-1]

    def current_version(self, key_id: str) -> int:
        return self._alive_versions(key_id)[-1]

    def rotate(self, key_id: str) -> int:
        while True:
            version = self._alive_versions(key_id)[-1] + 1
            try:
                _write_new_file(self._key_dir(key_id), f"v{version}.kek", os.urandom(KEK_SIZE))
            except FileExistsError:
                continue  # another process rotated at the same time; take the next
            return version

    def destroy_key(self, key_id: str) -> KeyDestruction:
        tomb = self._tombstone(key_id)
        versions = self._versions(key_id)
        if tomb.exists():
            evidence = json.loads(tomb.read_text())
            if not versions and evidence.get("complete"):
                return _evidence_from_json(evidence)  # idempotent retry
        elif not versions:
            raise KeyNotFound(f"key {key_id} does not exist")
        now = datetime.now(UTC)
        record = {
            "key_id": key_id,
            "provider": self.scheme,
            "method": "local:overwrite-unlink-fsync",
            "destroyed_at": now.isoformat(),
            "deletion_scheduled_for": now.isoformat(),
            "pending_window_days": 0,
            "versions": versions,
            "complete": False,
        }
        # Tombstone first: from here on nothing new is wrapped or unwrapped under
        # this id, even if shredding is interrupted (a retry finishes it).
        if not tomb.exists():
            _write_new_file(self.root / "destroyed", tomb.name, json.dumps(record).encode(), replace=True)
        else:
            record["versions"] = sorted(set(json.loads(tomb.read_text())["versions"]) | set(versions))
        with self._keks_lock:
            for v in versions:
                self._keks.pop((key_id, v), None)
        key_dir = self._key_dir(key_id)
        for v in versions:
            path = key_dir / f"v{v}.kek"
            with open(path, "r+b", buffering=0) as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.write(os.urandom(size))
                os.fsync(fh.fileno())
            path.unlink()
        for leftover in key_dir.glob(".tmp-*"):
            leftover.unlink()
        if key_dir.exists():
            _fsync_dir(key_dir)
            key_dir.rmdir()
        _fsync_dir(self.root / "keys")
        record["complete"] = True
        _write_new_file(self.root / "destroyed", tomb.name, json.dumps(record).encode(), replace=True)
        return _evidence_from_json(record)

    def key_ids(self) -> list[str]:
        out = []
        for d in sorted((self.root / "keys").iterdir()):
            if d.is_dir() and self._versions(d.name) and not self._tombstone(d.name).exists():
                out.append(d.name)
        return out

    def check(self) -> None:
        try:
            if not (self.root / MARKER).is_file():
                raise ProviderUnavailable("keyring marker missing")
            _check_private(self.root)
            if not os.access(self.root / "keys", os.W_OK | os.X_OK):
                raise ProviderUnavailable("keyring not writable")
        except OSError:
            raise ProviderUnavailable("keyring unreachable") from None

    # ------------------------------------------------------------- wrapping
    @staticmethod
    def _aad(key_id: str, version: int, context: Mapping[str, str]) -> bytes:
        kid = key_id.encode("ascii")
        return _WRAP_LABEL + struct.pack(">B", len(kid)) + kid + struct.pack(">I", version) + canonical_context(context)

    def _wrap(self, key_id: str, version: int, dek: bytes, context: Mapping[str, str]) -> WrappedKey:
        nonce = os.urandom(_NONCE_SIZE)
        blob = nonce + self._kek(key_id, version).encrypt(nonce, dek, self._aad(key_id, version, context))
        return WrappedKey(self.scheme, key_id, version, blob)

    def generate_data_key(self, key_id: str, context: Mapping[str, str]) -> tuple[DataKey, WrappedKey]:
        canonical_context(context)  # validate before touching keys
        version = self._alive_versions(key_id)[-1]
        dek = DataKey(os.urandom(32))
        return dek, self._wrap(key_id, version, dek, context)

    def unwrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> DataKey:
        if wrapped.provider != self.scheme:
            raise DecryptionError()
        validate_key_id(wrapped.key_id)
        aad = self._aad(wrapped.key_id, wrapped.key_version, context)
        if self._destroyed(wrapped.key_id):
            raise KeyDestroyed(f"key {wrapped.key_id} was destroyed")
        kek = self._kek(wrapped.key_id, wrapped.key_version)
        blob = wrapped.blob
        if len(blob) != _NONCE_SIZE + 32 + 16:
            raise DecryptionError()
        try:
            return DataKey(kek.decrypt(blob[:_NONCE_SIZE], blob[_NONCE_SIZE:], aad))
        except InvalidTag:
            raise DecryptionError() from None

    def rewrap(self, wrapped: WrappedKey, context: Mapping[str, str]) -> WrappedKey:
        dek = self.unwrap(wrapped, context)
        version = self._alive_versions(wrapped.key_id)[-1]
        if version == wrapped.key_version:
            return wrapped
        return self._wrap(wrapped.key_id, version, dek, context)

    # ---------------------------------------------------------------- blobs
    def put_blob(self, name: str, data: bytes) -> None:
        _write_new_file(self.root / "blobs", f"{validate_key_id(name)}.bin", bytes(data), replace=True)

    def get_blob(self, name: str) -> bytes | None:
        path = self.root / "blobs" / f"{validate_key_id(name)}.bin"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None


def _evidence_from_json(rec: dict[str, Any]) -> KeyDestruction:
    return KeyDestruction(
        key_id=rec["key_id"],
        provider=rec["provider"],
        method=rec["method"],
        destroyed_at=datetime.fromisoformat(rec["destroyed_at"]),
        deletion_scheduled_for=datetime.fromisoformat(rec["deletion_scheduled_for"]),
        pending_window_days=int(rec["pending_window_days"]),
        versions=tuple(rec["versions"]),
    )
