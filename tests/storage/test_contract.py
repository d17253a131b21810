"""The ObjectStore contract: runs unchanged against file, moto in-process and moto over HTTP."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from storage import (
    AbsenceProof,
    DestroyReport,
    InvalidMetadata,
    InvalidObjectKey,
    InvalidRange,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    StoredObject,
)
from storage.checksums import crc32c_hex

from .conftest import PART


def data_of(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, sizes: tuple[int, ...] = (1024 * 1024 + 7, 333, 65536)) -> Iterator[bytes]:
    """Uneven chunks, so part boundaries fall inside chunks."""
    pos, i = 0, 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def read(store: ObjectStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.get(key, start, end))


class Boom(RuntimeError):
    """The caller's own failure (e.g. the uploading client went away)."""


def failing_after(data: bytes, fail_at: int) -> Iterator[bytes]:
    for pos in range(0, len(data), 1024 * 1024):
        if pos >= fail_at:
            raise Boom("client disconnected")
        yield data[pos : pos + 1024 * 1024]


def test_store_satisfies_protocol(store: ObjectStore) -> None:
    assert isinstance(store, ObjectStore)
    store.check()


SIZES = {
    "empty": (0, 1),
    "one-byte": (1, 1),
    "exactly-one-part": (PART, 1),
    "one-part-plus-one-byte": (PART + 1, 2),
    "three-parts": (2 * PART + 12345, 3),
}


@pytest.mark.parametrize("size,parts", SIZES.values(), ids=SIZES.keys())
def test_put_get_roundtrip(target, store: ObjectStore, size: int, parts: int) -> None:
    data = data_of(size)
    stored = store.put("obj-roundtrip", chunked(data), metadata={"format": "phg1"})

    assert isinstance(stored, StoredObject)
    assert stored.key == "obj-roundtrip"
    assert stored.size == size
    assert stored.checksum == "crc32c:" + crc32c_hex(data)
    if target.is_s3:
        assert stored.parts == parts  # one part or less goes as a single PutObject
        assert stored.version_id  # the test buckets are versioned
    assert read(store, "obj-roundtrip") == data

    info = store.head("obj-roundtrip")
    assert isinstance(info, ObjectInfo)
    assert info.size == size
    assert info.metadata == {"format": "phg1"}
    if parts == 1 or not target.is_s3:
        assert info.checksum == stored.checksum
    else:
        # S3 keeps a composite checksum of the part checksums for multipart objects.
        assert info.checksum is None or info.checksum.startswith("crc32c-composite:")


def test_range_across_a_part_boundary(store: ObjectStore) -> None:
    data = data_of(PART + 4096)
    store.put("obj-boundary", chunked(data))
    assert read(store, "obj-boundary", PART - 10, PART + 10) == data[PART - 10 : PART + 10]
    assert read(store, "obj-boundary", PART) == data[PART:]


RANGES = {
    "whole": (0, None, slice(0, None)),
    "start-only": (10, None, slice(10, None)),
    "middle": (10, 20, slice(10, 20)),
    "tail": (990, None, slice(990, None)),
    "last-byte": (999, 1000, slice(999, 1000)),
    "end-past-size-clamps": (0, 5000, slice(0, None)),
    "middle-to-past-end-clamps": (500, 5000, slice(500, None)),
    "start-equals-size-empty": (1000, None, slice(1000, None)),
    "empty-range": (5, 5, slice(5, 5)),
    "empty-range-at-end": (1000, 1000, slice(1000, 1000)),
}


def test_ranges(store: ObjectStore) -> None:
    data = data_of(1000)
    store.put("obj-range", [data])
    # One object, every case (one store setup instead of one per case keeps the suite fast).
    for name, (start, end, expect) in RANGES.items():
        assert read(store, "obj-range", start, end) == data[expect], name


BAD_RANGES = {
    "start-past-end": (1001, None),
    "range-past-end": (5000, 6000),
    "negative-start": (-1, None),
    "inverted": (10, 5),
    "negative-end": (0, -1),
    "float-start": (1.0, None),
    "bool-start": (True, None),
}


def test_bad_ranges_are_refused(store: ObjectStore) -> None:
    store.put("obj-range", [data_of(1000)])
    for name, (start, end) in BAD_RANGES.items():
        with pytest.raises(InvalidRange):
            read(store, "obj-range", start, end)
            pytest.fail(name)


def test_ranges_on_an_empty_object(store: ObjectStore) -> None:
    store.put("obj-empty", [])
    assert read(store, "obj-empty") == b""
    assert read(store, "obj-empty", 0, 10) == b""
    with pytest.raises(InvalidRange):
        read(store, "obj-empty", 1)


def test_missing_object_raises_on_the_call_not_later(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound) as excinfo:
        store.get("obj-missing")  # not iterated: get() itself must raise
    assert excinfo.value.key == "obj-missing"
    # The vendor's 404 is noise: the cause is suppressed, not chained.
    assert excinfo.value.__cause__ is None and excinfo.value.__suppress_context__
    with pytest.raises(ObjectNotFound):
        store.head("obj-missing")
    with pytest.raises(ObjectNotFound):
        store.get("obj-missing", 5, 10)


def test_overwrite_replaces_and_failed_overwrite_keeps_old(target, store: ObjectStore) -> None:
    store.put("obj-over", [b"first"])
    store.put("obj-over", [b"second"])
    assert read(store, "obj-over") == b"second"

    big = data_of(PART * 2 + 1)
    with pytest.raises(Boom):
        store.put("obj-over", failing_after(big, PART + 1024 * 1024))
    assert read(store, "obj-over") == b"second"
    assert target.leftovers() == []


def test_list_and_prefix(store: ObjectStore) -> None:
    for key, size in {"a/1": 1, "a/2": 2, "a10": 10, "b/1": 3}.items():
        store.put(key, [b"x" * size])
    everything = {i.key: i for i in store.list()}
    assert set(everything) == {"a/1", "a/2", "a10", "b/1"}
    assert {k: i.size for k, i in everything.items()} == {"a/1": 1, "a/2": 2, "a10": 10, "b/1": 3}
    assert all(i.metadata is None for i in everything.values())  # list never fetches metadata
    assert {i.key for i in store.list("a/")} == {"a/1", "a/2"}
    assert {i.key for i in store.list("a")} == {"a/1", "a/2", "a10"}
    assert list(store.list("zzz")) == []


def test_destroy_and_verify_absent(target, store: ObjectStore) -> None:
    store.put("obj-1", [b"secret ciphertext"])
    store.put("obj-10", [b"neighbour"])  # shares the prefix: must survive

    before = store.verify_absent("obj-1")
    assert isinstance(before, AbsenceProof) and before.absent is False

    report = store.destroy("obj-1")
    assert isinstance(report, DestroyReport)
    assert report.key == "obj-1" and report.location_id == store.location_id
    assert len(report.versions_deleted) == 1
    assert report.blocked == () and report.verified and report.complete
    assert report.proof is not None and report.proof.absent
    assert report.as_dict()["proof"]["absent"] is True

    proof = store.verify_absent("obj-1")
    assert proof.absent is True
    assert len(proof.checks) >= 2 and all(isinstance(c, str) for c in proof.checks)
    assert target.stored_versions("obj-1") == []
    with pytest.raises(ObjectNotFound):
        store.head("obj-1")
    assert read(store, "obj-10") == b"neighbour"

    # Idempotent: destroying again claims nothing and still verifies.
    again = store.destroy("obj-1")
    assert again.versions_deleted == () and again.delete_markers_deleted == () and again.verified


def test_caller_failure_mid_put_leaves_nothing(target, store: ObjectStore) -> None:
    data = data_of(3 * PART)
    source = failing_after(data, 2 * PART + 1)  # after two full parts went up
    with pytest.raises(Boom):  # the caller's own exception, unchanged
        store.put("obj-half", source)
    assert target.leftovers() == []
    with pytest.raises(ObjectNotFound):
        store.head("obj-half")
    assert store.verify_absent("obj-half").absent
    assert target.stored_versions("obj-half") == []


def test_put_consumes_lazily(target, store: ObjectStore, monkeypatch) -> None:
    """The iterator is pulled as data is written, not drained up front."""
    produced = 0
    seen_when_first_written: list[int] = []

    def source() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(12):
            yield b"z" * (1024 * 1024)
            produced += 1024 * 1024

    if target.is_s3:

        def on_part(**kwargs):
            seen_when_first_written.append(produced)

        store.client.meta.events.register("before-call.s3.UploadPart", on_part)
        store.put("obj-lazy", source())
        # Part n goes up before much more than n parts were produced.
        assert seen_when_first_written, "expected a multipart upload"
        for n, seen in enumerate(seen_when_first_written, start=1):
            assert seen <= n * PART + 1024 * 1024
    else:
        # Each write goes out before much more than it was produced, counted at the store's own writes (not
        # with tracemalloc, which counts every thread of the process: another test's lingering thread once
        # failed this under load).
        real_writev, ahead = os.writev, []
        written = 0

        def writev(fd: int, buffers) -> int:
            nonlocal written
            n = real_writev(fd, buffers)
            written += n
            ahead.append(produced - written)
            return n

        monkeypatch.setattr("storage.local.os.writev", writev)
        store.put("obj-lazy", source())
        assert len(ahead) >= 12 and max(ahead) <= 1024 * 1024, ahead  # never more than a batch held
    assert store.head("obj-lazy").size == 12 * 1024 * 1024


BAD_KEYS = {
    "empty": "",
    "dotdot": "..",
    "dotdot-segment": "a/../b",
    "dotdot-prefix": "../etc/passwd",
    "absolute": "/etc/passwd",
    "trailing-slash": "a/",
    "double-slash": "a//b",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "newline": "a\nb",
    "space": "a b",
    "non-ascii": "caf\u00e9",
    "leading-dot": ".hidden",
    "tilde": "a~b",
    "too-long": "a" * 201,
    "not-a-string": b"abc",
}


def test_bad_keys_are_refused_everywhere(target, store: ObjectStore) -> None:
    for name, key in BAD_KEYS.items():
        for op, call in (
            ("put", lambda: store.put(key, [b"x"])),
            ("get", lambda: store.get(key)),
            ("head", lambda: store.head(key)),
            ("destroy", lambda: store.destroy(key)),
            ("verify_absent", lambda: store.verify_absent(key)),
        ):
            with pytest.raises(InvalidObjectKey):
                call()
                pytest.fail(f"{op} accepted the {name} key")
    assert target.leftovers() == []
    assert list(store.list()) == []


@pytest.mark.parametrize("prefix", ["../", "/abs", "a//", "a\\b", ".tmp-"])
def test_bad_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidObjectKey):
        list(store.list(prefix))


def test_longest_key_is_accepted(store: ObjectStore) -> None:
    key = "k" * 200
    store.put(key, [b"x"])
    assert read(store, key) == b"x"


@pytest.mark.parametrize(
    "metadata",
    [
        {"Upper": "x"},
        {"ok": "line\nbreak"},
        {"ok": "\u00e9"},
        {"x" * 65: "v"},
        {"big": "v" * 3000},
        {"n": 1},
        [("a", "b")],
    ],
    ids=["upper-name", "newline-value", "non-ascii", "long-name", "too-big", "non-str", "not-a-mapping"],
)
def test_bad_metadata_is_refused(store: ObjectStore, metadata) -> None:
    with pytest.raises(InvalidMetadata):
        store.put("obj-meta", [b"x"], metadata=metadata)
    with pytest.raises(ObjectNotFound):
        store.head("obj-meta")


def test_location_id_names_no_machine_path(target, store: ObjectStore) -> None:
    location = store.location_id
    assert location.startswith("file://" if target.kind == "file" else "s3://")
    if target.root:
        assert target.root not in location and "/tmp" not in location
    if target.endpoint_url:
        assert "127.0.0.1" not in location
    # Stable: reopening the same store gives the same id.
    assert target.open().location_id == location


def test_bytes_like_chunks_are_snapshotted(store: ObjectStore) -> None:
    buf = bytearray(b"aaaa")

    def source() -> Iterator[bytearray]:
        yield buf
        buf[:] = b"bbbb"  # the caller reuses its buffer
        yield buf

    store.put("obj-buf", source())
    assert read(store, "obj-buf") == b"aaaabbbb"
