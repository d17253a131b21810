"""Local backend specifics: atomic writes, crash remnants, fsync, permissions, layout, keys."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import stat
import struct
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import (
    IntegrityError,
    InvalidObjectKey,
    LocalObjectStore,
    ObjectNotFound,
    open_object_store,
    validate_key,
)
from storage import local as storage_local
from storage.checksums import crc32c_hex

from .test_contract import read

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shard_of(root: str, key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return os.path.join(root, digest[:2], digest[2:4])


def temp_files(root: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(root) for f in files if f.startswith(".tmp-")]


def test_sharded_layout(file_target) -> None:
    store = file_target.open()
    store.put("obj-7f3a", [b"x"])
    store.put("tenant/obj-1", [b"y"])
    root = file_target.root
    assert os.path.isfile(os.path.join(shard_of(root, "obj-7f3a"), "obj-7f3a"))
    # '/' in a key never becomes a directory: it maps to '~', outside the key charset.
    assert os.path.isfile(os.path.join(shard_of(root, "tenant/obj-1"), "tenant~obj-1"))
    assert sorted(os.listdir(root)) == sorted(
        {
            ".phigate-store.json",
            hashlib.sha256(b"obj-7f3a").hexdigest()[:2],
            hashlib.sha256(b"tenant/obj-1").hexdigest()[:2],
        }
    )


def test_permissions_are_private_whatever_the_umask(file_target) -> None:
    old = os.umask(0)
    try:
        store = file_target.open()
        store.put("obj-perm", [b"x"])
    finally:
        os.umask(old)
    shard = shard_of(file_target.root, "obj-perm")
    assert stat.S_IMODE(os.stat(os.path.join(shard, "obj-perm")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(shard).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.dirname(shard)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(file_target.root).st_mode) == 0o700


def test_put_fsyncs_the_file_then_the_directory(file_target, monkeypatch) -> None:
    store = file_target.open()
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        mode = os.fstat(fd).st_mode
        synced.append("dir" if stat.S_ISDIR(mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr("storage.local.os.fsync", spy)
    store.put("obj-sync", [b"x" * 10])
    # New shard directories are fsynced into their parents, then the file, then its entry.
    assert synced == ["dir", "dir", "file", "dir"]
    synced.clear()
    store.put("obj-sync", [b"y" * 10])
    assert synced == ["file", "dir"]  # file data before the rename, the entry after it
    synced.clear()
    store.destroy("obj-sync")
    assert synced == ["dir"]  # the unlink is made durable


MiB = 1 << 20


class CacheSpy:
    """Records, in order, the store's page-cache advice (offset, length) and its fsyncs."""

    def __init__(self, monkeypatch) -> None:
        self.events: list[tuple] = []
        real_fadvise, real_fsync, real_fdatasync = os.posix_fadvise, os.fsync, os.fdatasync

        def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
            if advice == os.POSIX_FADV_DONTNEED:
                self.events.append(("drop", offset, length))
            real_fadvise(fd, offset, length, advice)

        def fsync(fd: int) -> None:
            self.events.append(("fsync", "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
            real_fsync(fd)

        def fdatasync(fd: int) -> None:
            self.events.append(("fdatasync",))
            real_fdatasync(fd)

        monkeypatch.setattr("storage.local.os.posix_fadvise", fadvise)
        monkeypatch.setattr("storage.local.os.fsync", fsync)
        monkeypatch.setattr("storage.local.os.fdatasync", fdatasync)
        monkeypatch.setattr("storage.local._CACHE_WINDOW", 2 * MiB)

    def dropped(self, events: list[tuple] | None = None) -> set[int]:
        """The MiB blocks some advice asked the kernel to let go of (length 0: to the end, 64 MiB here)."""
        blocks: set[int] = set()
        for e in self.events if events is None else events:
            if e[0] == "drop":
                end = e[1] + e[2] if e[2] else 64 * MiB
                blocks.update(range(e[1] // MiB, -(-end // MiB)))
        return blocks


needs_fadvise = pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="no posix_fadvise on this platform")


@needs_fadvise
def test_a_put_keeps_no_page_cache_behind_it(file_target, monkeypatch) -> None:
    store = file_target.open()
    spy = CacheSpy(monkeypatch)
    store.put("obj-cache", (bytes([i]) * MiB for i in range(8)))
    synced = spy.events.index(("fsync", "file"))
    # While writing: everything more than the window (2 MiB here) behind the last batch was let go of...
    assert spy.dropped(spy.events[:synced]) >= set(range(6))
    # ...and once the file is durable, all of it, the last batches and the trailer too.
    assert ("drop", 0, 0) in spy.events[synced:]
    assert read(store, "obj-cache") == b"".join(bytes([i]) * MiB for i in range(8))


@needs_fadvise
def test_a_read_where_direct_io_is_refused_lets_go_of_what_lies_behind_it(file_target, monkeypatch) -> None:
    store = file_target.open()
    store.put("obj-read", (bytes([i]) * MiB for i in range(8)))
    monkeypatch.setattr("storage.local._use_direct_io", lambda fd: False)  # as on tmpfs
    spy = CacheSpy(monkeypatch)
    reader = store.get("obj-read")
    first = [next(reader) for _ in range(3)]
    assert spy.dropped() <= {0}  # within the window nothing is dropped...
    rest = list(reader)
    assert spy.dropped() >= set(range(6))  # ...behind it, everything
    assert b"".join(first + rest) == b"".join(bytes([i]) * MiB for i in range(8))


needs_direct_io = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT on this platform")


@pytest.fixture
def small_direct_blocks(monkeypatch):
    """Direct reads of 16 KiB from any size on, so that small objects span many blocks and read-aheads."""
    monkeypatch.setattr("storage.local._DIRECT_BLOCK", 16 * 1024)
    monkeypatch.setattr("storage.local._DIRECT_MIN", 0)
    monkeypatch.setattr("storage.local._FREE_BUFFERS", [])  # none of the real size
    return 16 * 1024


@needs_direct_io
def test_reads_go_around_the_page_cache_and_every_range_is_exact(file_target, small_direct_blocks, monkeypatch) -> None:
    store = file_target.open(read_chunk_size=5000)
    data = bytes(range(256)) * 1000 + b"tail"  # 256,004 bytes: unaligned end, 16 blocks and a bit
    store.put("obj-direct", [data])
    direct: list[bool] = []
    real = storage_local._use_direct_io
    monkeypatch.setattr("storage.local._use_direct_io", lambda fd: direct.append(real(fd)) or direct[-1])
    assert read(store, "obj-direct") == data
    assert direct == [True]  # ext4, xfs: the bytes never enter the page cache
    for start, end in ((0, 1), (4095, 4097), (16383, 16385), (5000, 200_000), (255_999, None), (17, len(data) - 1)):
        got = b"".join(store.get("obj-direct", start, end))
        assert got == data[start:end], (start, end)
    assert all(len(chunk) <= 5000 for chunk in store.get("obj-direct"))


@needs_direct_io
def test_only_large_reads_go_direct_and_their_buffers_are_reused(file_target, small_direct_blocks, monkeypatch) -> None:
    monkeypatch.setattr("storage.local._DIRECT_MIN", 200_000)
    store = file_target.open()
    store.put("obj-small", [b"s" * 100_000])
    store.put("obj-large", [b"L" * 300_000])
    asked: list[int] = []
    real = storage_local._use_direct_io
    monkeypatch.setattr("storage.local._use_direct_io", lambda fd: asked.append(fd) or real(fd))
    assert read(store, "obj-small") == b"s" * 100_000
    assert asked == []  # below the threshold: through the page cache, kept there for the next reader
    assert read(store, "obj-large") == b"L" * 300_000
    assert len(asked) == 1
    kept = list(storage_local._FREE_BUFFERS)
    assert len(kept) == 2  # both buffers given back...
    assert read(store, "obj-large") == b"L" * 300_000
    assert sorted(map(id, storage_local._FREE_BUFFERS)) == sorted(map(id, kept))  # ...and taken again


@needs_direct_io
def test_a_file_system_that_refuses_a_direct_read_is_read_through_the_cache(
    file_target, small_direct_blocks, monkeypatch
) -> None:
    store = file_target.open()
    store.put("obj-einval", [b"x" * 100_000])
    real_preadv, refused = os.preadv, []

    def preadv(fd, buffers, offset):
        if os.O_DIRECT & fcntl.fcntl(fd, fcntl.F_GETFL):
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_preadv(fd, buffers, offset)

    monkeypatch.setattr("storage.local.os.preadv", preadv)
    assert read(store, "obj-einval") == b"x" * 100_000
    assert refused == [0]


@needs_direct_io
def test_a_reader_closed_half_way_waits_for_its_read_ahead(file_target, small_direct_blocks) -> None:
    store = file_target.open(read_chunk_size=4096)
    store.put("obj-half", [os.urandom(200_000)])
    before = set(os.listdir("/proc/self/fd"))
    reader = store.get("obj-half")
    next(reader)
    reader.close()  # a read ahead of the next block is in flight: it finishes before the descriptor closes
    assert set(os.listdir("/proc/self/fd")) <= before
    with pytest.raises(StopIteration):
        next(reader)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "cached"])
def test_an_object_cut_short_while_it_is_read_is_refused(file_target, small_direct_blocks, monkeypatch, direct) -> None:
    store = file_target.open()
    store.put("obj-cut", [b"y" * 300_000])
    if not direct:
        monkeypatch.setattr("storage.local._use_direct_io", lambda fd: False)
    (path,) = [os.path.join(d, f) for d, _, files in os.walk(file_target.root) for f in files if not f.startswith(".")]
    reader = store.get("obj-cut")  # opened, its trailer read: then the file loses everything after 100,000 bytes
    os.truncate(path, 100_000)
    with pytest.raises(IntegrityError, match="shorter than recorded"):
        b"".join(reader)


@needs_fadvise
def test_an_assembly_part_keeps_no_page_cache_once_durable(file_target, monkeypatch) -> None:
    store = file_target.open()
    token = store.begin_assembly("asm-cache", {"format": "test"})
    spy = CacheSpy(monkeypatch)
    part = store.put_assembly_part("asm-cache", token, 1, 0, (b"p" * MiB for _ in range(5)))
    synced = spy.events.index(("fdatasync",))
    assert spy.dropped(spy.events[:synced]) >= set(range(3))
    assert ("drop", 0, 5 * MiB) in spy.events[synced:]
    spy.events.clear()
    store.complete_assembly("asm-cache", token, [part], {"format": "test"})
    synced = spy.events.index(("fsync", "file"))
    assert ("drop", 0, 0) in spy.events[synced:]
    assert read(store, "asm-cache") == b"p" * 5 * MiB


def test_failed_put_leaves_no_temp_file(file_target) -> None:
    store = file_target.open()

    def source():
        yield b"partial"
        raise OSError("upstream reset")  # an OSError of the caller's, not the disk's

    with pytest.raises(OSError, match="upstream reset") as excinfo:
        store.put("obj-fail", source())
    assert type(excinfo.value) is OSError  # not translated into StorageUnavailable
    assert temp_files(file_target.root) == []
    with pytest.raises(ObjectNotFound):
        store.head("obj-fail")


CRASHER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, {repo!r})
    from storage import open_object_store
    store = open_object_store({url!r})
    def chunks():
        yield b"a" * 1024 * 1024
        yield b"b" * 1024 * 1024
        os._exit(17)  # the process dies mid-put: no finally, no cleanup
    store.put("obj-crash", chunks())
    """
)


def test_crash_mid_put_never_leaves_a_partial_object(file_target) -> None:
    store = file_target.open()
    store.put("obj-crash", [b"previous version"])
    script = CRASHER.format(repo=REPO, url=file_target.url)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == 17, proc.stderr.decode()

    # The final name still holds the previous object, intact.
    assert read(store, "obj-crash") == b"previous version"
    remnants = temp_files(file_target.root)
    assert len(remnants) == 1 and os.path.basename(remnants[0]).startswith(".tmp-")
    assert {i.key for i in store.list()} == {"obj-crash"}  # list ignores temp files

    # The crashed upload's bytes count as part of the object: destroy removes them too.
    report = store.destroy("obj-crash")
    assert report.versions_deleted == ("null",) and report.temp_files_removed == 1
    assert temp_files(file_target.root) == [] and report.verified


def test_temp_remnants_are_reported_swept_and_destroyed(file_target) -> None:
    store = file_target.open()
    script = CRASHER.format(repo=REPO, url=file_target.url)
    for _ in range(2):
        assert subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60).returncode == 17
    with pytest.raises(ObjectNotFound):
        store.head("obj-crash")
    proof = store.verify_absent("obj-crash")
    assert proof.absent is False
    assert any("2 temp remnant(s)" in c for c in proof.checks)

    assert store.sweep_temp(older_than=3600) == 0  # too young: may be an upload in progress
    assert store.sweep_temp(older_than=0) == 2
    assert store.verify_absent("obj-crash").absent

    assert subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60).returncode == 17
    report = store.destroy("obj-crash")
    assert report.temp_files_removed == 1 and report.versions_deleted == () and report.verified


def test_corruption_is_detected(file_target) -> None:
    store = file_target.open()
    data = os.urandom(100_000)
    store.put("obj-rot", [data])
    path = os.path.join(shard_of(file_target.root, "obj-rot"), "obj-rot")
    with open(path, "r+b") as fh:
        fh.seek(500)
        fh.write(bytes([data[500] ^ 0xFF]))
    with pytest.raises(IntegrityError):
        read(store, "obj-rot")
    assert read(store, "obj-rot", 0, 400) == data[:400]  # ranges are served; AEAD checks them

    with open(path, "r+b") as fh:
        fh.truncate(50_000)
    with pytest.raises(IntegrityError):
        store.head("obj-rot")


def _rewrite_as_sha256_object(path: str, payload: bytes, metadata: dict[str, str]) -> None:
    """The file as a release before CRC32C wrote it: trailer v1 with the payload's SHA-256."""
    trailer = json.dumps(
        {"v": 1, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest(), "metadata": metadata},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    with open(path, "wb") as fh:
        fh.write(payload + trailer + struct.pack(">Q8s", len(trailer), b"PHGSTOR1"))


def test_the_trailer_records_the_payload_crc32c(file_target) -> None:
    store = file_target.open()
    data = os.urandom(3 * 1024 * 1024 + 5)
    stored = store.put("obj-crc", [data[:1000], data[1000:]], metadata={"format": "x"})
    with open(os.path.join(shard_of(file_target.root, "obj-crc"), "obj-crc"), "rb") as fh:
        raw = fh.read()
    length, magic = struct.unpack(">Q8s", raw[-16:])
    trailer = json.loads(raw[-16 - length : -16])
    assert magic == b"PHGSTOR1" and trailer["v"] == 2 and "sha256" not in trailer
    assert trailer["crc32c"] == crc32c_hex(data) and stored.checksum == f"crc32c:{crc32c_hex(data)}"
    assert [i.checksum for i in store.list()] == [stored.checksum]


def test_objects_written_with_sha256_before_stay_readable_and_checked(file_target) -> None:
    store = file_target.open()
    data = os.urandom(200_000)
    store.put("obj-old", [b"placeholder"])
    path = os.path.join(shard_of(file_target.root, "obj-old"), "obj-old")
    _rewrite_as_sha256_object(path, data, {"format": "phg-stream-v1"})
    assert store.head("obj-old").checksum == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert store.head("obj-old").metadata == {"format": "phg-stream-v1"}
    assert read(store, "obj-old") == data
    _rewrite_as_sha256_object(path, data, {})
    with open(path, "r+b") as fh:
        fh.seek(700)
        fh.write(bytes([data[700] ^ 0x01]))
    with pytest.raises(IntegrityError):
        read(store, "obj-old")  # still verified with the SHA-256 it was written with


def test_a_trailer_without_a_checksum_is_refused(file_target) -> None:
    store = file_target.open()
    store.put("obj-bare", [b"x"])
    path = os.path.join(shard_of(file_target.root, "obj-bare"), "obj-bare")
    trailer = b'{"metadata":{},"size":1,"v":2}'
    with open(path, "wb") as fh:
        fh.write(b"x" + trailer + struct.pack(">Q8s", len(trailer), b"PHGSTOR1"))
    with pytest.raises(IntegrityError):
        store.head("obj-bare")


def test_a_symlink_in_place_of_an_object_is_not_followed(file_target, tmp_path) -> None:
    store = file_target.open()
    store.put("obj-link", [b"x"])
    path = os.path.join(shard_of(file_target.root, "obj-link"), "obj-link")
    os.unlink(path)
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    os.symlink(outside, path)
    with pytest.raises(Exception) as excinfo:
        read(store, "obj-link")
    assert excinfo.value.__class__.__module__ == "storage.errors"


def test_location_id_survives_moving_the_root(file_target, tmp_path) -> None:
    store = file_target.open()
    store.put("obj-move", [b"x"])
    moved = tmp_path / "moved"
    os.rename(file_target.root, moved)
    again = open_object_store(f"file://{moved}")
    assert again.location_id == store.location_id
    assert read(again, "obj-move") == b"x"


def test_check_fails_when_the_root_is_gone(file_target) -> None:
    from storage import StorageUnavailable

    store = file_target.open()
    store.check()
    os.rename(file_target.root, file_target.root + ".gone")
    with pytest.raises(StorageUnavailable):
        store.check()


def test_relative_root_is_refused() -> None:
    from storage import ConfigurationError

    with pytest.raises(ConfigurationError):
        LocalObjectStore("relative/objects")


# -- key validation as a property: accepted keys never leave their shard ---------------

KEYISH = st.text(alphabet=st.sampled_from("ab09._-/\\~ \x00.é:"), min_size=0, max_size=30)


@settings(max_examples=300, deadline=None)
@given(KEYISH)
def test_any_accepted_key_stays_inside_its_shard(tmp_path_factory, key: str) -> None:
    try:
        validate_key(key)
    except InvalidObjectKey:
        assert (
            key == ""
            or key.startswith(("/", ".", "-", "_"))
            or any(c in key for c in "\\~ \x00é:")
            or "//" in key
            or "/." in key
            or "/-" in key
            or "/_" in key
            or key.endswith("/")
        )
        return
    assert ".." not in key.split("/") and not key.startswith("/")
    root = str(tmp_path_factory.getbasetemp() / "prop-root")
    store = LocalObjectStore(root)
    shard, name, _ = store._locate(key)
    full = os.path.realpath(os.path.join(shard, name))
    assert os.path.dirname(full) == os.path.realpath(shard)
    assert os.path.commonpath([full, store.root]) == store.root
    assert name.replace("~", "/") == key  # reversible: list() recovers the key
