"""Objects assembled in parts over many calls and store instances (resumable uploads), on every backend:
the parts become the object without a copy, completion is idempotent, and an unfinished one leaves
nothing once aborted or destroyed."""

from __future__ import annotations

import os

import pytest

from storage import AssemblingStore, AssemblyPart, IntegrityError, ObjectNotFound, StorageError
from storage.checksums import crc32c_hex
from tests.storage.conftest import PART


def read(store, key: str) -> bytes:
    return b"".join(store.get(key))


def test_parts_from_several_instances_become_the_object(target) -> None:
    first, second = target.open(), target.open()  # two processes, one store
    assert isinstance(first, AssemblingStore)
    blocks = [os.urandom(PART), os.urandom(PART + 1), os.urandom(12345)]
    token = first.begin_assembly("asm-1", {"format": "test"})
    parts, offset = [], 0
    for number, (store, block) in enumerate(zip((first, second, first), blocks, strict=True), start=1):
        # Pieces of a part are written as they come, in order; the instance may change between parts.
        part = store.put_assembly_part("asm-1", token, number, offset, [block[:1000], block[1000:]])
        assert (part.number, part.offset, part.size) == (number, offset, len(block))
        parts.append(part)
        offset += len(block)
    assert target.leftovers("asm-1") != []  # unfinished: held as an upload / a temp file
    done = second.complete_assembly("asm-1", token, parts, {"format": "test"})
    whole = b"".join(blocks)
    assert done.size == len(whole) and done.parts == 3
    assert read(first, "asm-1") == whole
    assert first.head("asm-1").metadata == {"format": "test"}
    assert target.leftovers("asm-1") == []
    if not target.is_s3:
        assert done.checksum == f"crc32c:{crc32c_hex(whole)}"
        assert first.head("asm-1").checksum == done.checksum
    else:
        assert all(p.checksum and p.checksum.startswith("crc32c:") for p in parts)
        assert done.checksum.startswith("crc32c-composite:") and done.checksum.endswith("-3")
    # The first answer lost: completing again answers the same object, and changes nothing.
    again = first.complete_assembly("asm-1", token, parts, {"format": "test"})
    assert again.size == done.size and read(second, "asm-1") == whole


def test_a_part_written_again_replaces_what_a_lost_writer_left(target, store) -> None:
    token = store.begin_assembly("asm-2", {"format": "test"})
    store.put_assembly_part("asm-2", token, 1, 0, [b"x" * (PART + 10)])  # never kept by its writer
    kept = store.put_assembly_part("asm-2", token, 1, 0, [b"a" * PART])
    last = store.put_assembly_part("asm-2", token, 2, PART, [b"b" * 3])
    store.put_assembly_part("asm-2", token, 3, PART + 3, [b"c" * 7])  # written, never kept: not named
    store.complete_assembly("asm-2", token, [kept, last], {"format": "test"})
    assert read(store, "asm-2") == b"a" * PART + b"bbb"


def test_parts_that_do_not_meet_are_refused(target, store) -> None:
    token = store.begin_assembly("asm-3", {"format": "test"})
    one = store.put_assembly_part("asm-3", token, 1, 0, [b"a" * PART])
    with pytest.raises(IntegrityError):
        store.complete_assembly("asm-3", token, [one, AssemblyPart(2, PART + 1, 5, one.checksum, one.etag)])
    with pytest.raises(StorageError):
        store.put_assembly_part("asm-3", token, 0, 0, [b"a"])
    store.abort_assembly("asm-3", token)


def test_abort_and_destroy_leave_nothing_of_an_unfinished_one(target, store) -> None:
    token = store.begin_assembly("asm-4", {"format": "test"})
    store.put_assembly_part("asm-4", token, 1, 0, [b"a" * PART])
    assert store.verify_absent("asm-4").absent is False
    store.abort_assembly("asm-4", token)
    assert store.verify_absent("asm-4").absent and target.leftovers("asm-4") == []
    store.abort_assembly("asm-4", token)  # idempotent

    token = store.begin_assembly("asm-5", {"format": "test"})
    store.put_assembly_part("asm-5", token, 1, 0, [b"a" * PART])
    report = store.destroy("asm-5")
    assert report.verified and target.leftovers("asm-5") == []
    assert (report.uploads_aborted if target.is_s3 else report.temp_files_removed) == 1
    if target.kind != "s3_inprocess":  # moto's in-process mock raises KeyError here, not NoSuchUpload
        with pytest.raises((ObjectNotFound, StorageError)):
            store.put_assembly_part("asm-5", token, 2, PART, [b"late"])
    assert target.leftovers("asm-5") == [] and store.verify_absent("asm-5").absent


def test_local_sweep_leaves_an_assembly_waiting_for_its_next_part(file_target) -> None:
    store = file_target.open()
    token = store.begin_assembly("asm-6", {"format": "test"})
    part = store.put_assembly_part("asm-6", token, 1, 0, [b"a" * 100])
    assert store.sweep_temp(0) == 0
    store.complete_assembly("asm-6", token, [part], {"format": "test"})
    assert read(store, "asm-6") == b"a" * 100
    with pytest.raises(StorageError):
        store.begin_assembly("../escape", {})


def test_a_completion_that_names_other_parts_is_refused(file_target) -> None:
    """Local: the object is there already, of another size. (S3 answers a repeated completion itself.)"""
    store = file_target.open()
    token = store.begin_assembly("asm-7", {"format": "test"})
    one = store.put_assembly_part("asm-7", token, 1, 0, [b"a" * PART])
    two = store.put_assembly_part("asm-7", token, 2, PART, [b"b" * 10])
    store.complete_assembly("asm-7", token, [one, two], {"format": "test"})
    # Completed already: the object is not made of these parts (a part left out).
    with pytest.raises(IntegrityError):
        store.complete_assembly("asm-7", token, [one], {"format": "test"})
    assert read(store, "asm-7") == b"a" * PART + b"b" * 10


def test_local_completion_of_parts_longer_than_written_is_refused(file_target) -> None:
    store = file_target.open()
    token = store.begin_assembly("asm-8", {"format": "test"})
    part = store.put_assembly_part("asm-8", token, 1, 0, [b"a" * 100])
    with pytest.raises(IntegrityError):
        store.complete_assembly("asm-8", token, [AssemblyPart(1, 0, 200)], {"format": "test"})
    store.complete_assembly("asm-8", token, [part], {"format": "test"})  # nothing was spoiled
    assert read(store, "asm-8") == b"a" * 100
    with pytest.raises(ObjectNotFound):
        store.complete_assembly("asm-9", "ab" * 16, [part], {"format": "test"})
