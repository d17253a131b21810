"""Local filesystem backend: the embedded default (``file:///abs/path``).

Layout under the root::

    .phigate-store.json          marker: store id (-> location_id), layout version
    ab/cd/<name>                 one object; ab/cd = first 4 hex of sha256(key)
    ab/cd/.tmp-<hash32>-<rand>   an upload in progress (or left by a crash)
    ab/cd/.tmp-<hash32>-asm-<t>  an object being assembled in parts (a resumable upload)

``<name>`` is the key with ``/`` replaced by ``~`` (``~`` is outside the key
charset, so the mapping is reversible and can never produce a path separator).
Two hex levels give 65,536 directories: a million objects is ~15 files each.

An object file is the payload followed by a trailer, so a put streams straight to
disk and the metadata and checksum (known only at the end) are written last::

    payload || trailer-json || u64be(len(trailer-json)) || b"PHGSTOR1"

The trailer's checksum is the payload's CRC32C (``"v": 2``, ``"crc32c"``); objects
written before carry SHA-256 (``"v": 1``, ``"sha256"``), and reads verify each with
its own algorithm (storage/checksums.py says why CRC32C is enough).

Crash safety: bytes go to a temp file in the final directory (same filesystem),
which is fsynced, renamed over the final name (atomic on POSIX) and the directory
fsynced. A crash at any point leaves either the old object or the new one under the
final name, never a partial one; the temp remnant is dot-named so ``list`` ignores
it, ``verify_absent`` reports it, and ``sweep_temp`` / ``destroy`` remove it.

Page cache: the store keeps no object in it.  Writes start writeback batch by batch and
let go of the bytes more than ``_CACHE_WINDOW`` behind the one being written, and a put
drops the whole file once it is fsynced.  Reads of 64 MiB or more bypass it (O_DIRECT into
two reused buffers, the next block read ahead in a thread); smaller reads, and reads where
the file system refuses O_DIRECT, go through it and drop what lies ``_CACHE_WINDOW`` behind.
Every object is a new file, so pages left cached would make each upload take memory no
file has used yet, and filling fresh memory costs the writer several times the copy
(on a VM whose freed memory goes back to the host: ~2.2 s of kernel time per GiB written
instead of ~0.3 s when the pages of the bytes just written are recycled); ciphertext that
is read rarely, and only after an approval, is the last thing worth caching anyway.

Assembly (``begin_assembly`` ... ``complete_assembly``): the parts of an object written
over many requests go straight into one temp file at their offsets, each fsynced before
``put_assembly_part`` returns; completion appends the trailer, fsyncs and renames, so no
byte is copied.  ``destroy`` removes an unfinished one (it is a remnant of the key);
``sweep_temp`` leaves it alone, since it may wait for its next part for hours: its
owner's registry row decides when it goes.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import secrets
import stat
import struct
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from . import checksums
from ._util import ChunkSource, check_range_args, resolve_range, settle, utcnow
from .errors import (
    ConfigurationError,
    IntegrityError,
    ObjectNotFound,
    StorageError,
    StoragePermissionDenied,
    StorageUnavailable,
)
from .keys import validate_key, validate_metadata, validate_prefix
from .types import (
    NULL_VERSION,
    AbsenceProof,
    AssemblyPart,
    BlockedVersion,
    DestroyReport,
    ObjectInfo,
    StoredObject,
)

log = logging.getLogger(__name__)

MARKER_NAME = ".phigate-store.json"
LAYOUT = "sha256-2x2-v1"
TEMP_PREFIX = ".tmp-"
ASSEMBLY_MARK = "asm-"
_MAGIC = b"PHGSTOR1"
_TAIL = struct.Struct(">Q8s")
_MAX_TRAILER = 64 * 1024
_WRITE_BLOCK = 1 << 20  # coalesce small chunks into ~1 MiB writev calls
_MAX_IOV = 512  # stay well under IOV_MAX (1024 on Linux)
_FADV_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None) if hasattr(os, "posix_fadvise") else None
_CACHE_WINDOW = 32 << 20  # the page cache an object in flight keeps: what lies further behind is let go
_READ_CHUNK = 1 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
_DIRECT_ALIGN = 4096  # offsets, lengths and buffers of direct reads: a multiple of the largest logical block
_DIRECT_BLOCK = 8 << 20  # one direct read; two buffers of it per object being read
# Reads of at least this many bytes go around the page cache; smaller ones gain more from the kernel's
# readahead and from staying cached for the next reader (measured: bench/load.py, 1-20 MiB files).
_DIRECT_MIN = 64 << 20
# Reads the next block of each object being read while the current one is consumed (one each at a time).
_READ_AHEAD = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="store-read-ahead")
# Free direct-read buffers, kept for the next reads (two per object being read; at most this many kept).
_KEEP_BUFFERS = 8
_FREE_BUFFERS: list[mmap.mmap] = []
_FREE_LOCK = threading.Lock()
_DIR_MODE = 0o700
_FILE_MODE = 0o600
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range to disk now, without waiting for it.

    Without this nothing reaches the disk until the final fsync, so the disk sits idle
    while the object is hashed and then the fsync waits for all of it; started early,
    the disk writes while the next batches are hashed. On Linux, POSIX_FADV_DONTNEED
    starts writeback of dirty pages (asynchronously) and drops the clean ones
    (length 0: to the end of the file).
    """
    if _FADV_DONTNEED is not None:
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, _FADV_DONTNEED)


#: Once a range is durable (or has been read), the same call only drops its pages from the cache.
_drop_cached = _start_writeback


def _drop_behind(fd: int, dropped: int, at: int) -> int:
    """Drop the cached pages from `dropped` to `_CACHE_WINDOW` before `at`; returns the new mark.

    Called after each batch written (or read) up to `at`: by then the range that far
    behind has been written back, so its pages are freed and the next batches reuse
    them, while a rare range still under writeback stays until the final drop.
    """
    upto = at - _CACHE_WINDOW
    if upto <= dropped:
        return dropped
    _drop_cached(fd, dropped, upto - dropped)
    return upto


def _use_direct_io(fd: int) -> bool:
    """Switch a read descriptor to O_DIRECT; False where the platform or file system refuses it."""
    if not _O_DIRECT:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | _O_DIRECT)
    except OSError:
        return False
    return True


def _take_buffer() -> mmap.mmap:
    """A direct-read buffer, reused when one is free: touching new memory costs more than reading into it."""
    with _FREE_LOCK:
        if _FREE_BUFFERS:
            return _FREE_BUFFERS.pop()
    return mmap.mmap(-1, _DIRECT_BLOCK)


def _give_back(buffer: mmap.mmap) -> None:
    with _FREE_LOCK:
        if len(buffer) == _DIRECT_BLOCK and len(_FREE_BUFFERS) < _KEEP_BUFFERS:
            _FREE_BUFFERS.append(buffer)
            return
    buffer.close()


def _direct_chunks(fd: int, lo: int, hi: int, size: int) -> Generator[bytes]:
    """The bytes lo..hi in chunks of at most `size`, read with O_DIRECT into two reused buffers, the
    next block read ahead in a thread; an empty chunk where the file ends before `hi`.

    Why: an object is read rarely and once, so reading it through the page cache only fills
    memory no file has used lately, which costs more kernel time than the copy itself (see the
    module docstring); direct reads go from the disk into the same two buffers every time.
    O_DIRECT has no kernel readahead, so the next block is read while this one is consumed.
    The first read falls back to the page cache if the file system refuses direct reads after
    all (EINVAL). Closing the generator waits for a read ahead still running, so the caller may
    close `fd` right after.
    """
    buffers = [_take_buffer(), _take_buffer()]
    at = lo - lo % _DIRECT_ALIGN
    pending: concurrent.futures.Future[int] | None = None
    try:
        try:
            n = os.preadv(fd, [buffers[0]], at)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_DIRECT)
            n = os.preadv(fd, [buffers[0]], at)
        i = 0
        while True:
            if n == _DIRECT_BLOCK and at + n < hi:
                pending = _READ_AHEAD.submit(os.preadv, fd, [buffers[1 - i]], at + n)
            first, last = max(lo - at, 0), min(hi - at, n)
            for start in range(first, last, size):
                yield buffers[i][start : min(start + size, last)]
            if pending is None:
                if at + n < hi:
                    yield b""
                return
            at, n, i, pending = at + n, pending.result(), 1 - i, None
    finally:
        if pending is not None:  # a read into our buffer may still run: let it finish first
            with contextlib.suppress(BaseException):
                pending.result()
        for buffer in buffers:
            _give_back(buffer)


def _writev_all(fd: int, buffers: list[bytes]) -> None:
    total = sum(len(b) for b in buffers)
    written = os.writev(fd, buffers)
    if written == total:
        return
    # Short write (rare on regular files): finish the rest buffer by buffer.
    for buf in buffers:
        if written >= len(buf):
            written -= len(buf)
            continue
        view = memoryview(buf)[written:]
        written = 0
        while view:
            n = os.write(fd, view)
            view = view[n:]


def _hash_all(hasher: checksums.Hasher, buffers: list[bytes]) -> None:
    for buf in buffers:
        hasher.update(buf)  # CRC32C in hardware: ~50 us per MiB, less than the syscall that writes it


def _trailer(size: int, crc: str, meta: Mapping[str, str]) -> bytes:
    return json.dumps(
        {"v": 2, "size": size, checksums.CRC32C: crc, "metadata": meta}, separators=(",", ":"), sort_keys=True
    ).encode()


def _checksum_of(trailer: Mapping[str, Any]) -> tuple[str, str] | None:
    """(algorithm, hex) recorded in a trailer: CRC32C, or SHA-256 for an object written before."""
    for algorithm in checksums.ALGORITHMS:
        value = trailer.get(algorithm)
        if isinstance(value, str):
            return algorithm, value
    return None


def _label(trailer: Mapping[str, Any]) -> str | None:
    found = _checksum_of(trailer)
    return checksums.label(*found) if found else None


class LocalObjectStore:
    """Objects as files under one root directory (see module docstring)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        create: bool = True,
        verify_reads: bool = True,
        read_chunk_size: int = _READ_CHUNK,
    ) -> None:
        root = os.fspath(root)
        if not os.path.isabs(root):
            raise ConfigurationError("local store root must be an absolute path")
        if create:
            try:
                os.makedirs(root, mode=_DIR_MODE, exist_ok=True)
            except OSError as exc:
                raise StorageUnavailable("cannot create the local store root") from exc
        # Resolve symlinks once so the containment check below compares real paths.
        self._root = os.path.realpath(root)
        if not os.path.isdir(self._root):
            raise StorageUnavailable("local store root is not a directory")
        if os.stat(self._root).st_mode & 0o077:
            # Ciphertext only, but still nobody else's business: say so at start.
            log.warning("local object store root is accessible to group/others; expected mode 0700")
        self._verify_reads = verify_reads
        self._read_chunk = read_chunk_size
        # CRC32C of assemblies this process is writing: token -> (bytes hashed, state), so that
        # completion need not read the file again; another process's completion does.
        self._assembly_hashes: OrderedDict[str, tuple[int, checksums.Hasher]] = OrderedDict()
        self._assembly_lock = threading.Lock()
        self._store_id = self._load_or_create_marker()

    # -- identity -----------------------------------------------------------------

    @property
    def location_id(self) -> str:
        return f"file://{self._store_id}"

    @property
    def root(self) -> str:
        return self._root

    def __repr__(self) -> str:
        return f"LocalObjectStore({self.location_id})"

    def _load_or_create_marker(self) -> str:
        marker = os.path.join(self._root, MARKER_NAME)
        try:
            with open(marker, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            data = {"format": "phigate-local-store", "layout": LAYOUT, "id": uuid.uuid4().hex}
            tmp = os.path.join(self._root, f"{TEMP_PREFIX}marker-{secrets.token_hex(8)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, _FILE_MODE)
            try:
                os.write(fd, json.dumps(data).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                # link() never replaces: if another process won the race, use its id.
                os.link(tmp, marker)
                _fsync_dir(self._root)
            except FileExistsError:
                with open(marker, encoding="utf-8") as fh:
                    data = json.load(fh)
            finally:
                os.unlink(tmp)
        except (OSError, ValueError) as exc:
            raise StorageUnavailable("cannot read the local store marker") from exc
        if data.get("layout") != LAYOUT or not isinstance(data.get("id"), str):
            raise StorageUnavailable("local store marker has an unknown layout")
        return str(data["id"])

    # -- paths ----------------------------------------------------------------------

    def _locate(self, key: str) -> tuple[str, str, str]:
        """(shard directory, final file name, key hash) for a validated key."""
        digest = _key_hash(key)
        shard = os.path.join(self._root, digest[0:2], digest[2:4])
        name = key.replace("/", "~")
        # Defence in depth: validate_key already makes escaping impossible.
        if os.path.dirname(os.path.join(shard, name)) != shard:
            raise StorageError("object key maps outside its shard")
        return shard, name, digest

    def _rel(self, path: str) -> str:
        # Audit records name paths relative to the store root: no machine paths.
        return os.path.relpath(path, self._root)

    def _ensure_dir(self, shard: str) -> None:
        parent = os.path.dirname(shard)
        for path in (parent, shard):
            try:
                os.mkdir(path, _DIR_MODE)
            except FileExistsError:
                continue
            # A new directory entry is durable only once its parent is fsynced.
            _fsync_dir(os.path.dirname(path))

    def _temp_name(self, digest: str) -> str:
        return f"{TEMP_PREFIX}{digest[:32]}-{secrets.token_hex(8)}"

    # -- put ------------------------------------------------------------------------

    def put(
        self,
        key: str,
        chunks: Iterable[bytes],
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        key = validate_key(key)
        meta = validate_metadata(metadata)
        shard, name, digest = self._locate(key)
        tmp = os.path.join(shard, self._temp_name(digest))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
        try:
            try:
                fd = os.open(tmp, flags, _FILE_MODE)
            except FileNotFoundError:
                self._ensure_dir(shard)
                fd = os.open(tmp, flags, _FILE_MODE)
        except PermissionError as exc:
            raise StoragePermissionDenied(f"the local store refused to create object {key}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot create a temp file for {key}") from exc
        renamed = False
        source = ChunkSource(chunks)
        try:
            os.fchmod(fd, _FILE_MODE)  # exact mode whatever the umask
            size, crc = self._write_payload(fd, source)
            trailer = _trailer(size, crc, meta)
            _writev_all(fd, [trailer, _TAIL.pack(len(trailer), _MAGIC)])
            os.fsync(fd)
            _drop_cached(fd, 0, 0)  # all of it is clean now
            os.close(fd)
            fd = -1
            os.replace(tmp, os.path.join(shard, name))
            renamed = True
            _fsync_dir(shard)
        except OSError as exc:
            if exc is source.error:
                raise  # the caller's own failure, not ours
            if isinstance(exc, PermissionError):
                raise StoragePermissionDenied(f"the local store refused to write object {key}") from exc
            raise StorageUnavailable(f"cannot write object {key}") from exc
        finally:
            if fd >= 0:
                os.close(fd)
            if not renamed:
                # Whatever stops the clean-up (a directory made read-only under us) must not hide why the
                # put failed; the remnant is named after the key, so destroy() and sweep_temp() find it.
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return StoredObject(
            key=key, size=size, version_id=None, checksum=checksums.label(checksums.CRC32C, crc), parts=1
        )

    def _write_payload(self, fd: int, chunks: Iterable[bytes]) -> tuple[int, str]:
        """Write every chunk in ~1 MiB batches, each checksummed (CRC32C) just before it is written."""
        hasher = checksums.new(checksums.CRC32C)
        size = dropped = 0
        batch: list[bytes] = []
        batch_len = 0
        for chunk in chunks:
            if not chunk:
                continue
            batch.append(chunk)
            batch_len += len(chunk)
            if batch_len >= _WRITE_BLOCK or len(batch) >= _MAX_IOV:
                _hash_all(hasher, batch)
                _writev_all(fd, batch)
                _start_writeback(fd, size, batch_len)
                size += batch_len
                dropped = _drop_behind(fd, dropped, size)
                batch, batch_len = [], 0
        if batch:
            _hash_all(hasher, batch)
            _writev_all(fd, batch)
            size += batch_len
        return size, hasher.hexdigest()

    # -- assembly -------------------------------------------------------------------

    @property
    def min_part_size(self) -> int:
        return 1

    def _assembly_path(self, key: str, token: str) -> tuple[str, str]:
        key = validate_key(key)
        if not token or len(token) > 64 or not all(c in "0123456789abcdef" for c in token):
            raise StorageError("malformed assembly token")
        shard, _, digest = self._locate(key)
        return shard, os.path.join(shard, f"{TEMP_PREFIX}{digest[:32]}-{ASSEMBLY_MARK}{token}")

    def begin_assembly(self, key: str, metadata: Mapping[str, str] | None = None) -> str:
        validate_metadata(metadata)
        token = secrets.token_hex(16)
        shard, path = self._assembly_path(key, token)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
        try:
            try:
                fd = os.open(path, flags, _FILE_MODE)
            except FileNotFoundError:
                self._ensure_dir(shard)
                fd = os.open(path, flags, _FILE_MODE)
            try:
                os.fchmod(fd, _FILE_MODE)
                os.fsync(fd)
            finally:
                os.close(fd)
            _fsync_dir(shard)
        except PermissionError as exc:
            raise StoragePermissionDenied(f"the local store refused to begin object {key}") from exc
        except OSError as exc:
            raise StorageUnavailable(f"cannot begin object {key}") from exc
        return token

    def put_assembly_part(
        self, key: str, token: str, number: int, offset: int, chunks: Iterable[bytes]
    ) -> AssemblyPart:
        _, path = self._assembly_path(key, token)
        if number < 1 or offset < 0:
            raise StorageError("part numbers start at 1 and offsets at 0")
        with self._assembly_lock:
            found = self._assembly_hashes.pop(token, None)
        hasher = found[1] if found is not None and found[0] == offset else (checksums.new() if offset == 0 else None)
        try:
            fd = os.open(path, os.O_WRONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot open object {key} being assembled") from exc
        source = ChunkSource(chunks)
        try:
            # Written as the caller produces it (writeback started batch by batch), so the
            # disk works while the caller still receives and encrypts the rest of the part.
            size = self._write_at(fd, source, offset, hasher)
            # Durable before the caller moves its offset: the part survives a crash from here on.
            os.fdatasync(fd)
            _drop_cached(fd, offset, size)
        except OSError as exc:
            if exc is source.error:
                raise
            raise StorageUnavailable(f"cannot write a part of object {key}") from exc
        finally:
            os.close(fd)
        if hasher is not None:
            with self._assembly_lock:
                self._assembly_hashes[token] = (offset + size, hasher)
                while len(self._assembly_hashes) > 256:
                    self._assembly_hashes.popitem(last=False)
        return AssemblyPart(number=number, offset=offset, size=size)

    def _write_at(self, fd: int, chunks: Iterable[bytes], offset: int, hasher: checksums.Hasher | None) -> int:
        """Write the chunks from `offset` in ~1 MiB batches, each checksummed (CRC32C) just before it is written."""
        at = dropped = offset
        batch: builtins.list[bytes] = []
        batch_len = 0
        for chunk in chunks:
            if not chunk:
                continue
            batch.append(bytes(chunk))
            batch_len += len(chunk)
            if batch_len < _WRITE_BLOCK and len(batch) < _MAX_IOV:
                continue
            if hasher is not None:
                _hash_all(hasher, batch)
            at += self._pwritev_all(fd, batch, at)
            dropped = _drop_behind(fd, dropped, at)
            batch, batch_len = [], 0
        if batch:
            if hasher is not None:
                _hash_all(hasher, batch)
            at += self._pwritev_all(fd, batch, at)
        return at - offset

    @staticmethod
    def _pwritev_all(fd: int, buffers: builtins.list[bytes], offset: int) -> int:
        total = sum(len(b) for b in buffers)
        written = os.pwritev(fd, buffers, offset)
        if written < total:  # short write (rare on regular files): the rest, byte range by byte range
            rest = memoryview(b"".join(buffers))[written:]
            while rest:
                n = os.pwrite(fd, rest, offset + written)
                rest, written = rest[n:], written + n
        _start_writeback(fd, offset, total)
        return total

    def complete_assembly(
        self, key: str, token: str, parts: builtins.list[AssemblyPart], metadata: Mapping[str, str] | None = None
    ) -> StoredObject:
        shard, path = self._assembly_path(key, token)
        meta = validate_metadata(metadata)
        total = 0
        for part in sorted(parts, key=lambda p: p.number):
            if part.offset != total:
                raise IntegrityError(f"the parts of object {key} are not contiguous")
            total += part.size
        final = os.path.join(shard, key.replace("/", "~"))
        with self._assembly_lock:
            found = self._assembly_hashes.pop(token, None)
        try:
            fd = os.open(path, os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            return self._assembled(key, final, total)
        except OSError as exc:
            raise StorageUnavailable(f"cannot open object {key} being assembled") from exc
        try:
            if os.fstat(fd).st_size < total:
                raise IntegrityError(f"object {key} is shorter than its parts")
            os.ftruncate(fd, total)  # whatever a writer left past the last part is not the object's
            if found is not None and found[0] == total:
                crc = found[1].hexdigest()
            else:  # parts written by another process: read (never rewrite) what they hold
                hasher = checksums.new()
                # A descriptor of its own: the reader may switch it to O_DIRECT, which a dup would share.
                reader = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
                for data in self._stream(reader, key, 0, total, None):
                    hasher.update(data)
                crc = hasher.hexdigest()
            trailer = _trailer(total, crc, meta)
            self._pwritev_all(fd, [trailer, _TAIL.pack(len(trailer), _MAGIC)], total)
            os.fsync(fd)
            _drop_cached(fd, 0, 0)
        except OSError as exc:
            raise StorageUnavailable(f"cannot complete object {key}") from exc
        finally:
            os.close(fd)
        try:
            os.replace(path, final)
            _fsync_dir(shard)
        except OSError as exc:
            raise StorageUnavailable(f"cannot complete object {key}") from exc
        return StoredObject(
            key=key, size=total, version_id=None, checksum=checksums.label(checksums.CRC32C, crc), parts=len(parts)
        )

    def _assembled(self, key: str, final: str, total: int) -> StoredObject:
        """A completion already done (the first attempt's answer was lost): the object is there, of that size."""
        try:
            fd = os.open(final, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot open object {key}") from exc
        try:
            trailer = self._read_trailer(fd, os.fstat(fd).st_size, key)
        finally:
            os.close(fd)
        if trailer["size"] != total:
            raise IntegrityError(f"object {key} holds other parts than were named")
        return StoredObject(key=key, size=total, version_id=None, checksum=_label(trailer) or "")

    def abort_assembly(self, key: str, token: str) -> None:
        shard, path = self._assembly_path(key, token)
        with self._assembly_lock:
            self._assembly_hashes.pop(token, None)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageUnavailable(f"cannot abort object {key}") from exc
        _fsync_dir(shard)

    # -- read -----------------------------------------------------------------------

    def _open_object(self, key: str) -> tuple[int, os.stat_result, dict[str, Any]]:
        shard, name, _ = self._locate(key)
        try:
            fd = os.open(os.path.join(shard, name), os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise StorageUnavailable(f"cannot open object {key}") from exc
        try:
            st = os.fstat(fd)
            trailer = self._read_trailer(fd, st.st_size, key)
        except BaseException:
            os.close(fd)
            raise
        return fd, st, trailer

    @staticmethod
    def _read_trailer(fd: int, file_size: int, key: str) -> dict[str, Any]:
        try:
            if file_size < _TAIL.size:
                raise IntegrityError(f"object {key} is truncated")
            length, magic = _TAIL.unpack(os.pread(fd, _TAIL.size, file_size - _TAIL.size))
            if magic != _MAGIC or length > _MAX_TRAILER or length + _TAIL.size > file_size:
                raise IntegrityError(f"object {key} has no valid trailer")
            raw = os.pread(fd, length, file_size - _TAIL.size - length)
            trailer: dict[str, Any] = json.loads(raw)
        except (OSError, struct.error) as exc:
            raise StorageUnavailable(f"cannot read object {key}") from exc
        except ValueError:
            raise IntegrityError(f"object {key} has a corrupt trailer") from None
        payload = file_size - _TAIL.size - length
        if not isinstance(trailer, dict) or trailer.get("size") != payload:
            raise IntegrityError(f"object {key} size does not match its trailer")
        if _checksum_of(trailer) is None:
            raise IntegrityError(f"object {key} has no checksum in its trailer")
        return trailer

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        key = validate_key(key)
        start, end = check_range_args(start, end)
        fd, _, trailer = self._open_object(key)
        try:
            lo, hi = resolve_range(start, end, trailer["size"])
        except BaseException:
            os.close(fd)
            raise
        whole = lo == 0 and hi == trailer["size"]
        expect = _checksum_of(trailer) if (whole and self._verify_reads) else None
        # The file is opened now, so ObjectNotFound is raised by get() itself, and a
        # concurrent destroy (unlink) cannot cut a read that has started.
        return self._stream(fd, key, lo, hi, expect)

    def _stream(self, fd: int, key: str, lo: int, hi: int, expect: tuple[str, str] | None) -> Iterator[bytes]:
        hasher = checksums.new(expect[0]) if expect is not None else None
        try:
            direct = hi - lo >= _DIRECT_MIN and _use_direct_io(fd)
            chunks = _direct_chunks(fd, lo, hi, self._read_chunk) if direct else self._buffered(fd, lo, hi)
            try:
                for data in chunks:
                    if not data:
                        raise IntegrityError(f"object {key} is shorter than recorded")
                    if hasher is not None:
                        hasher.update(data)
                    yield data
            finally:
                chunks.close()  # before the descriptor: a read ahead may still use it
            if expect is not None and hasher is not None and hasher.hexdigest() != expect[1]:
                raise IntegrityError(f"object {key} does not match its {expect[0].upper()}")
        except OSError as exc:
            raise StorageUnavailable(f"cannot read object {key}") from exc
        finally:
            os.close(fd)

    def _buffered(self, fd: int, lo: int, hi: int) -> Generator[bytes]:
        """Read through the page cache, letting go of what lies behind (where O_DIRECT is refused)."""
        pos = dropped = lo
        while pos < hi:
            data = os.pread(fd, min(self._read_chunk, hi - pos), pos)
            yield data
            if not data:
                return
            pos += len(data)
            dropped = _drop_behind(fd, dropped, pos)

    def head(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        fd, st, trailer = self._open_object(key)
        os.close(fd)
        return ObjectInfo(
            key=key,
            size=trailer["size"],
            metadata=dict(trailer.get("metadata") or {}),
            version_id=None,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            checksum=_label(trailer),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        return self._list(prefix)

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        for shard in self._shards():
            try:
                entries = list(os.scandir(shard))
            except FileNotFoundError:
                continue
            for entry in entries:
                # Dot names are temp files and the marker; anything else that is not
                # a valid key was not written by this store and is not ours to report.
                if entry.name.startswith("."):
                    continue
                key = entry.name.replace("~", "/")
                try:
                    validate_key(key)
                except StorageError:
                    continue
                if not key.startswith(prefix) or self._locate(key)[0] != shard:
                    continue
                try:
                    fd = os.open(entry.path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
                except FileNotFoundError:
                    continue  # destroyed while we listed
                try:
                    st = os.fstat(fd)
                    trailer = self._read_trailer(fd, st.st_size, key)
                finally:
                    os.close(fd)
                yield ObjectInfo(
                    key=key,
                    size=trailer["size"],
                    metadata=None,
                    last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
                    checksum=_label(trailer),
                )

    def _shards(self) -> Iterator[str]:
        def hexdirs(path: str) -> list[str]:
            try:
                names = os.listdir(path)
            except FileNotFoundError:
                return []
            return sorted(n for n in names if len(n) == 2 and all(c in "0123456789abcdef" for c in n))

        for top in hexdirs(self._root):
            for sub in hexdirs(os.path.join(self._root, top)):
                yield os.path.join(self._root, top, sub)

    # -- destruction ----------------------------------------------------------------

    def _remnants(self, shard: str, digest: str) -> builtins.list[str]:
        marker = f"{TEMP_PREFIX}{digest[:32]}-"
        try:
            return sorted(n for n in os.listdir(shard) if n.startswith(marker))
        except FileNotFoundError:
            return []

    def destroy(self, key: str) -> DestroyReport:
        key = validate_key(key)
        started = utcnow()
        shard, name, digest = self._locate(key)
        deleted: tuple[str, ...] = ()
        blocked: tuple[BlockedVersion, ...] = ()
        changed = False
        try:
            os.unlink(os.path.join(shard, name))
            deleted = (NULL_VERSION,)
            changed = True
        except FileNotFoundError:
            pass
        except PermissionError as exc:
            blocked = (BlockedVersion(NULL_VERSION, f"filesystem refused unlink: {exc.strerror}"),)
        except OSError as exc:
            raise StorageUnavailable(f"cannot destroy object {key}") from exc
        removed = 0
        for remnant in self._remnants(shard, digest):
            # Remnants of interrupted puts hold (encrypted) object bytes too.
            try:
                os.unlink(os.path.join(shard, remnant))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageUnavailable(f"cannot remove a leftover of an interrupted put of {key}") from exc
            removed += 1
            changed = True
        if changed:
            # The unlink is durable only once the directory is fsynced.
            _fsync_dir(shard)
        proof = self.verify_absent(key)
        report = DestroyReport(
            key=key,
            location_id=self.location_id,
            versions_deleted=deleted,
            delete_markers_deleted=(),
            blocked=blocked,
            uploads_aborted=0,
            temp_files_removed=removed,
            verified=proof.absent and not blocked,
            proof=proof,
            started_at=started,
            finished_at=utcnow(),
        )
        return settle(report)

    def verify_absent(self, key: str) -> AbsenceProof:
        key = validate_key(key)
        shard, name, digest = self._locate(key)
        final = os.path.join(shard, name)
        checks = []
        try:
            os.lstat(final)
            present = True
        except FileNotFoundError:
            present = False
        except OSError as exc:
            raise StorageUnavailable(f"cannot verify absence of {key}") from exc
        checks.append(f"file:lstat {self._rel(final)} -> {'PRESENT' if present else 'absent (ENOENT)'}")
        remnants = self._remnants(shard, digest)
        checks.append(f"file:scan {self._rel(shard)}/{TEMP_PREFIX}{digest[:32]}-* -> {len(remnants)} temp remnant(s)")
        return AbsenceProof(
            key=key,
            absent=not present and not remnants,
            checks=tuple(checks),
            location_id=self.location_id,
            checked_at=utcnow(),
        )

    # -- maintenance ----------------------------------------------------------------

    def sweep_temp(self, older_than: float) -> int:
        """Remove temp files (interrupted puts) last modified more than ``older_than`` s ago."""
        if older_than < 0:
            raise ValueError("older_than must be >= 0")
        cutoff = time.time() - older_than
        removed = 0
        dirs = [self._root, *self._shards()]
        for shard in dirs:
            touched = False
            try:
                entries = list(os.scandir(shard))
            except FileNotFoundError:
                continue
            for entry in entries:
                if not entry.name.startswith(TEMP_PREFIX) or f"-{ASSEMBLY_MARK}" in entry.name:
                    continue  # an assembly waits for its next part as long as its owner lets it
                try:
                    if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                        continue  # may be an upload still in progress
                    os.unlink(entry.path)
                except FileNotFoundError:
                    continue
                removed += 1
                touched = True
            if touched:
                _fsync_dir(shard)
        return removed

    def check(self) -> None:
        try:
            st = os.stat(self._root)
            if not stat.S_ISDIR(st.st_mode):
                raise StorageUnavailable("local store root is not a directory")
            if self._load_or_create_marker() != self._store_id:
                raise StorageUnavailable("local store marker changed under us")
            probe = os.path.join(self._root, f"{TEMP_PREFIX}probe-{secrets.token_hex(8)}")
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, _FILE_MODE)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageUnavailable("local store is full") from exc
            raise StorageUnavailable("local store is not writable") from exc
