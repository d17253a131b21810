"""Properties of the segmented streaming AEAD format (crypto.stream)."""

from __future__ import annotations

import itertools
import os
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import (
    HEADER_SIZE,
    CryptoError,
    DecryptionError,
    InvalidRange,
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    plaintext_size,
)
from crypto.stream import TAG_SIZE, _open_header

SEG = 16
DEK = bytes(range(32))
OTHER_DEK = bytes(range(1, 33))
CTX = {"tenant": "1", "object": "abc"}
SIZES = [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG, 3 * SEG + 5, 7 * SEG - 1]

FAST = settings(deadline=None, max_examples=150)


def enc(pt: bytes, dek: bytes = DEK, ctx=CTX, seg: int = SEG) -> bytes:
    return b"".join(encrypt_stream([pt], dek, ctx, segment_size=seg))


def dec(ct: bytes, dek: bytes = DEK, ctx=CTX) -> bytes:
    return b"".join(decrypt_stream([ct], dek, ctx))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    out, prev = [], 0
    for p in [*points, len(data)]:
        out.append(data[prev:p])
        prev = p
    return out


def segments(ct: bytes, seg: int = SEG) -> tuple[bytes, list[bytes]]:
    unit = seg + TAG_SIZE
    body = ct[HEADER_SIZE:]
    return ct[:HEADER_SIZE], [body[i : i + unit] for i in range(0, len(body), unit)]


def fails(ct: bytes, dek: bytes = DEK, ctx=CTX) -> bool:
    try:
        dec(ct, dek, ctx)
    except DecryptionError as exc:
        assert str(exc) == "decryption failed"  # one message whatever the check
        return True
    return False


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("n", SIZES)
def test_round_trip_boundary_sizes(n):
    pt = os.urandom(n)
    ct = enc(pt)
    assert len(ct) == ciphertext_size(n, SEG)
    assert plaintext_size(len(ct), SEG) == n
    assert dec(ct) == pt


@FAST
@given(
    pt=st.binary(max_size=12 * SEG),
    seg=st.sampled_from([16, 17, 31, 64]),
    in_cuts=st.lists(st.integers(min_value=0), max_size=12),
    out_cuts=st.lists(st.integers(min_value=0), max_size=12),
)
def test_round_trip_any_chunking(pt, seg, in_cuts, out_cuts):
    ct = b"".join(encrypt_stream(split(pt, in_cuts), DEK, CTX, segment_size=seg))
    assert len(ct) == ciphertext_size(len(pt), seg)
    assert b"".join(decrypt_stream(split(ct, out_cuts), DEK, CTX)) == pt


def test_accepts_bytearray_and_memoryview_chunks_even_if_reused():
    buf = bytearray(b"a" * 10)
    chunks = []

    def reuse():
        for ch in (b"a", b"b", b"c"):
            buf[:] = ch * 10  # caller reuses its buffer between chunks
            chunks.append(bytes(buf))
            yield memoryview(buf)

    ct = b"".join(encrypt_stream(reuse(), DEK, CTX, segment_size=SEG))
    assert dec(ct) == b"".join(chunks)


def test_segment_size_is_read_from_header():
    pt = os.urandom(200)
    for seg in (16, 50, 1 << 20):
        ct = enc(pt, seg=seg)
        assert dec(ct) == pt  # decryptor is not told the segment size


def test_two_encryptions_differ_salt_and_nonce_are_fresh():
    a, b = enc(b"same"), enc(b"same")
    assert a != b and a[:HEADER_SIZE] != b[:HEADER_SIZE]


def test_encrypt_rejects_bad_dek_and_segment_size():
    with pytest.raises(CryptoError):
        encrypt_stream([b"x"], b"short", CTX)
    with pytest.raises(CryptoError):
        encrypt_stream([b"x"], DEK, CTX, segment_size=8)
    with pytest.raises(CryptoError):
        ciphertext_size(-1)


def test_memory_is_constant_whatever_the_size():
    """Streaming 64 MiB through 1 MiB segments keeps Python allocations at a few segments."""
    block = os.urandom(256 * 1024)

    def source():
        for _ in range(256):
            yield block

    tracemalloc.start()
    try:
        ct_iter = encrypt_stream(source(), DEK, CTX, segment_size=1 << 20)
        total = sum(len(p) for p in decrypt_stream(ct_iter, DEK, CTX))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 64 << 20
    assert peak < 8 << 20


# --------------------------------------------------------------------- tampering


@pytest.mark.parametrize("n", [0, 1, SEG, SEG + 1, 2 * SEG + 7])
def test_every_single_bit_flip_fails(n):
    """Exhaustive over header, every segment body and every tag."""
    ct = enc(os.urandom(n))
    for i in range(len(ct) * 8):
        bad = bytearray(ct)
        bad[i // 8] ^= 1 << (i % 8)
        assert fails(bytes(bad)), f"bit {i} flip went unnoticed"


def test_header_tamper_releases_no_plaintext():
    ct = bytearray(enc(os.urandom(5 * SEG)))
    ct[HEADER_SIZE - 1] ^= 1
    gen = decrypt_stream([bytes(ct)], DEK, CTX)
    with pytest.raises(DecryptionError):
        next(gen)


@pytest.mark.parametrize("n", [0, 1, SEG, 3 * SEG, 3 * SEG + 5])
def test_truncation_at_every_byte_fails(n):
    ct = enc(os.urandom(n))
    for cut in range(len(ct)):
        assert fails(ct[:cut]), f"truncation to {cut} bytes went unnoticed"


def test_truncation_exactly_at_segment_boundaries_fails():
    pt = os.urandom(4 * SEG)  # four full segments, the last one flagged final
    ct = enc(pt)
    header, segs = segments(ct)
    assert len(segs) == 4
    for k in range(4):
        assert fails(header + b"".join(segs[:k]))


@FAST
@given(n=st.integers(min_value=0, max_value=10 * SEG), data=st.data())
def test_truncation_at_random_points_fails(n, data):
    ct = enc(os.urandom(n))
    cut = data.draw(st.integers(min_value=0, max_value=len(ct) - 1))
    assert fails(ct[:cut])


def test_reordered_duplicated_removed_segments_fail():
    pt = os.urandom(4 * SEG + 3)
    header, segs = segments(enc(pt))
    assert len(segs) == 5
    assert dec(header + b"".join(segs)) == pt
    for perm in itertools.permutations(range(5)):
        if list(perm) != list(range(5)):
            assert fails(header + b"".join(segs[i] for i in perm))
    for i in range(5):
        dup = [*segs[: i + 1], segs[i], *segs[i + 1 :]]
        assert fails(header + b"".join(dup))
        removed = segs[:i] + segs[i + 1 :]
        assert fails(header + b"".join(removed))


def test_appended_data_fails():
    pt = os.urandom(2 * SEG + 3)
    ct = enc(pt)
    _header, segs = segments(ct)
    other = enc(os.urandom(SEG + 2))
    _, other_segs = segments(other)
    for extra in (b"\x00", os.urandom(TAG_SIZE), segs[-1], segs[0], other_segs[-1], other):
        assert fails(ct + extra)
    full = enc(os.urandom(2 * SEG))  # ends exactly on a boundary
    assert fails(full + enc(b"")[HEADER_SIZE:])


def test_segments_spliced_from_another_object_fail():
    h1, s1 = segments(enc(os.urandom(3 * SEG)))
    h2, s2 = segments(enc(os.urandom(3 * SEG)))
    assert fails(h1 + s1[0] + s2[1] + s1[2])
    assert fails(h2 + b"".join(s1))


# ----------------------------------------------------------------- keys, context


def test_wrong_context_fails():
    ct = enc(b"hello world" * 5)
    for ctx in (
        {"tenant": "2", "object": "abc"},
        {"tenant": "1", "object": "abd"},
        {"tenant": "1"},
        {"tenant": "1", "object": "abc", "x": "y"},
        {},
    ):
        assert fails(ct, ctx=ctx)
    assert dec(ct, ctx={"object": "abc", "tenant": "1"}) == b"hello world" * 5  # order-free


def test_context_encoding_is_injective():
    ct = enc(b"x", ctx={"a": "bc"})
    assert fails(ct, ctx={"ab": "c"})


def test_wrong_dek_fails():
    ct = enc(os.urandom(40))
    assert fails(ct, dek=OTHER_DEK)
    with pytest.raises(CryptoError):
        dec(ct, dek=b"\x00" * 31)


def test_key_commitment_rejects_other_dek_from_header_alone():
    """The header commits to the DEK: another DEK is refused before any segment is read."""
    ct = enc(os.urandom(40))
    header = ct[:HEADER_SIZE]
    assert _open_header(header, DEK, b"\x00\x00\x00\x00") is not None
    with pytest.raises(DecryptionError):
        _open_header(header, OTHER_DEK, b"\x00\x00\x00\x00")


def test_forged_header_with_recomputed_commitment_fails():
    """An attacker who knows DEK2 rewrites the header for DEK2; DEK1's segments still fail."""
    pt = os.urandom(40)
    ct1 = enc(pt, dek=DEK)
    ct2 = enc(pt, dek=OTHER_DEK)
    forged = ct2[:HEADER_SIZE] + ct1[HEADER_SIZE:]
    assert fails(forged, dek=OTHER_DEK)
    assert fails(forged, dek=DEK)


def test_error_message_reveals_nothing():
    ct = enc(os.urandom(3 * SEG))
    messages = set()
    for bad, dek, ctx in [
        (ct[:-1], DEK, CTX),
        (ct, OTHER_DEK, CTX),
        (ct, DEK, {"tenant": "9"}),
        (b"XXXX" + ct[4:], DEK, CTX),
        (ct + b"!", DEK, CTX),
    ]:
        with pytest.raises(DecryptionError) as info:
            dec(bad, dek, ctx)
        messages.add(str(info.value))
    assert messages == {"decryption failed"}


def test_invalid_ciphertext_lengths_rejected():
    for n in (0, HEADER_SIZE, HEADER_SIZE + 15, HEADER_SIZE + SEG + TAG_SIZE + TAG_SIZE):
        with pytest.raises(DecryptionError):
            plaintext_size(n, SEG)


# ------------------------------------------------------------------ random access


class Recorder:
    def __init__(self, ct: bytes, chunk: int = 7):
        self.ct = ct
        self.calls: list[tuple[int, int]] = []
        self.chunk = chunk

    def __call__(self, offset: int, length: int):
        self.calls.append((offset, length))
        data = self.ct[offset : offset + length]
        return [data[i : i + self.chunk] for i in range(0, len(data), self.chunk)]


@FAST
@given(n=st.integers(min_value=0, max_value=9 * SEG), data=st.data())
def test_range_equals_slice_and_reads_only_covering_segments(n, data):
    pt = os.urandom(n)
    ct = enc(pt)
    start = data.draw(st.integers(min_value=0, max_value=n + 3))
    stop = data.draw(st.integers(min_value=0, max_value=n + 3))
    fetch = Recorder(ct, chunk=data.draw(st.integers(min_value=1, max_value=64)))
    got = b"".join(decrypt_range(fetch, DEK, CTX, start, stop, len(ct)))
    assert got == pt[start:stop]
    assert fetch.calls[0] == (0, HEADER_SIZE)
    unit = SEG + TAG_SIZE
    stop_c = min(stop, n)
    if start >= stop_c:
        assert fetch.calls == [(0, HEADER_SIZE)]
    else:
        first, last = start // SEG, (stop_c - 1) // SEG
        begin = HEADER_SIZE + first * unit
        end = min(HEADER_SIZE + (last + 1) * unit, len(ct))
        assert fetch.calls[1:] == [(begin, end - begin)]


def test_range_detects_tampering_and_wrong_context():
    pt = os.urandom(5 * SEG)
    ct = bytearray(enc(pt))
    assert b"".join(decrypt_range(Recorder(bytes(ct)), DEK, CTX, 20, 40, len(ct))) == pt[20:40]
    with pytest.raises(DecryptionError):
        b"".join(decrypt_range(Recorder(bytes(ct)), DEK, {"tenant": "x"}, 20, 40, len(ct)))
    ct[HEADER_SIZE + (SEG + TAG_SIZE) + 3] ^= 1  # inside segment 1, which covers 20..31
    with pytest.raises(DecryptionError):
        b"".join(decrypt_range(Recorder(bytes(ct)), DEK, CTX, 20, 40, len(ct)))


def test_range_detects_short_or_truncated_reads():
    pt = os.urandom(5 * SEG)
    ct = enc(pt)
    with pytest.raises(DecryptionError):  # storage returned fewer bytes than asked
        b"".join(decrypt_range(lambda o, n: ct[o : o + n - 1], DEK, CTX, 0, 80, len(ct)))
    # Claimed length cut at a segment boundary: the new "last" segment is not flagged final.
    short = len(ct) - (SEG + TAG_SIZE)
    with pytest.raises(DecryptionError):
        b"".join(decrypt_range(Recorder(ct), DEK, CTX, 0, 1000, short))
    with pytest.raises(InvalidRange):
        decrypt_range(Recorder(ct), DEK, CTX, -1, 5, len(ct))


@pytest.mark.slow
def test_exhaustive_bit_flips_and_truncations_across_sizes():
    """Every bit flip and every truncation for every size up to four segments (a few seconds)."""
    checked = 0
    for n in range(0, 4 * SEG + 2, 3):
        ct = enc(os.urandom(n))
        for i in range(len(ct) * 8):
            bad = bytearray(ct)
            bad[i // 8] ^= 1 << (i % 8)
            assert fails(bytes(bad))
            checked += 1
        for cut in range(len(ct)):
            assert fails(ct[:cut])
            checked += 1
    assert checked > 10_000
