"""Streaming, segmented, key-committing AEAD for stored objects (format v1).

Design (see docs/encrypted-object-format.md for the byte layout):

* The object is a fixed 81-byte header followed by segments. Every segment but the
  last holds exactly ``segment_size`` plaintext bytes; the last holds 0..segment_size
  (0 only when the whole object is empty). Each segment is AES-256-GCM output:
  ciphertext || 16-byte tag.
* Per-object randomness: a 32-byte salt and a 7-byte nonce prefix in the header.
  The segment key is HKDF-SHA256(DEK, salt, info=label || header prefix), so a DEK is
  never used directly and a header change changes the key.
* Nonce of segment i = nonce_prefix(7) || i (u32 BE) || last flag (1 byte), as in
  Tink's AES-GCM-HKDF streaming AEAD and age's STREAM: nonces never repeat under a
  segment key, reordering / duplication / removal breaks the counter, and truncation
  at a segment boundary or appending after the final segment breaks the last flag.
* Key commitment: a second HKDF output (different label) is stored in the header and
  compared in constant time before any segment is touched. Finding two DEKs with
  the same commitment needs an HMAC-SHA256 collision, so a ciphertext decrypts
  under exactly one DEK (the property of the AWS Encryption SDK committing suites).
* Associated data of every segment = SHA-256(header || canonical context): binds
  the caller's context (tenant, object id) and the whole header, so a ciphertext
  moved to another object or tenant fails.
* AESGCM.decrypt verifies the tag before returning anything, so no plaintext of a
  segment is released before its tag verified. A stream consumer still has to
  treat the download as failed if the generator raises part-way (truncation is
  only detectable at the end).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .context import canonical_context
from .errors import CryptoError, DecryptionError

MAGIC = b"PHGS"
FORMAT_VERSION = 1
SUITE_AES256GCM_HKDF_SHA256_COMMIT = 1

SEGMENT_SIZE = 1 << 20  # 1 MiB: chosen from bench/crypto.py, see the format doc.
MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 64 << 20
TAG_SIZE = 16
SALT_SIZE = 32
NONCE_PREFIX_SIZE = 7
COMMITMENT_SIZE = 32
DEK_SIZE = 32
MAX_SEGMENTS = 1 << 32  # u32 counter

_HEADER_PREFIX = struct.Struct(">4sBBI")  # magic, version, suite, segment_size
_PREFIX_LEN = _HEADER_PREFIX.size + SALT_SIZE + NONCE_PREFIX_SIZE  # 49
HEADER_SIZE = _PREFIX_LEN + COMMITMENT_SIZE  # 81

_KEY_LABEL = b"phigate/stream/v1/segment-key"
_COMMIT_LABEL = b"phigate/stream/v1/commitment"
_AAD_LABEL = b"phigate/stream/v1/aad"
_NONCE_TAIL = struct.Struct(">IB")


class InvalidRange(CryptoError, ValueError):
    """A byte range that cannot be served (negative bounds)."""

    code = "crypto.invalid_range"


# --------------------------------------------------------------------------- sizes


def _check_segment_size(segment_size: int) -> int:
    if not isinstance(segment_size, int) or not (MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE):
        raise CryptoError(f"segment_size must be an int in [{MIN_SEGMENT_SIZE}, {MAX_SEGMENT_SIZE}]")
    return segment_size


def _segment_count(plaintext_len: int, segment_size: int) -> int:
    # An empty object still has one (empty, final) segment so that truncation to
    # the bare header is detected.
    return max(1, -(-plaintext_len // segment_size))


def ciphertext_size(plaintext_len: int, segment_size: int = SEGMENT_SIZE) -> int:
    """Exact ciphertext length for a plaintext of ``plaintext_len`` bytes."""
    _check_segment_size(segment_size)
    if plaintext_len < 0:
        raise CryptoError("plaintext_len must be >= 0")
    n = _segment_count(plaintext_len, segment_size)
    if n > MAX_SEGMENTS:
        raise CryptoError("object too large for this segment size")
    return HEADER_SIZE + plaintext_len + n * TAG_SIZE


def max_plaintext_size(segment_size: int = SEGMENT_SIZE) -> int:
    """Largest object the format can hold at this segment size."""
    return MAX_SEGMENTS * _check_segment_size(segment_size)


def _layout(ciphertext_len: int, segment_size: int) -> tuple[int, int]:
    """(segment count, plaintext length) for a ciphertext length, or DecryptionError."""
    body = ciphertext_len - HEADER_SIZE
    unit = segment_size + TAG_SIZE
    if body < TAG_SIZE:
        raise DecryptionError()
    n = -(-body // unit)
    last = body - (n - 1) * unit
    # The final segment carries >= 1 plaintext byte unless it is the only one.
    if last < TAG_SIZE or (n > 1 and last == TAG_SIZE) or n > MAX_SEGMENTS:
        raise DecryptionError()
    return n, body - n * TAG_SIZE


def plaintext_size(ciphertext_len: int, segment_size: int = SEGMENT_SIZE) -> int:
    """Plaintext length of a well-formed ciphertext of ``ciphertext_len`` bytes."""
    _check_segment_size(segment_size)
    return _layout(ciphertext_len, segment_size)[1]


# ------------------------------------------------------------------------- header


class _Keys:
    """Per-object derived state: segment cipher, nonce prefix and AAD."""

    __slots__ = ("aad", "aead", "algorithm", "nonce_prefix", "segment_size")

    def __init__(self, key: bytes, nonce_prefix: bytes, aad: bytes, segment_size: int):
        self.aead = AESGCM(key)
        self.algorithm = algorithms.AES(key)
        self.nonce_prefix = nonce_prefix
        self.aad = aad
        self.segment_size = segment_size

    def __repr__(self) -> str:
        return "_Keys(<redacted>)"

    def nonce(self, index: int, last: bool) -> bytes:
        return self.nonce_prefix + _NONCE_TAIL.pack(index, 1 if last else 0)


def _check_dek(dek: bytes) -> bytes:
    try:
        raw = bytes(dek)
    except TypeError:
        raise CryptoError("DEK must be 32 bytes") from None
    if len(raw) != DEK_SIZE:
        raise CryptoError("DEK must be 32 bytes")
    return raw


def _derive(dek: bytes, salt: bytes, header_prefix: bytes) -> tuple[bytes, bytes]:
    seg_key = HKDF(hashes.SHA256(), 32, salt, _KEY_LABEL + header_prefix).derive(dek)
    commitment = HKDF(hashes.SHA256(), COMMITMENT_SIZE, salt, _COMMIT_LABEL + header_prefix).derive(dek)
    return seg_key, commitment


def _aad(header: bytes, context: bytes) -> bytes:
    return hashlib.sha256(_AAD_LABEL + header + context).digest()


def _new_header(
    dek: bytes, context: bytes, segment_size: int, salt: bytes | None, nonce_prefix: bytes | None
) -> tuple[bytes, _Keys]:
    salt = os.urandom(SALT_SIZE) if salt is None else salt
    nonce_prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
    if len(salt) != SALT_SIZE or len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise CryptoError("bad salt or nonce prefix length")
    prefix = (
        _HEADER_PREFIX.pack(MAGIC, FORMAT_VERSION, SUITE_AES256GCM_HKDF_SHA256_COMMIT, segment_size)
        + salt
        + nonce_prefix
    )
    seg_key, commitment = _derive(dek, salt, prefix)
    header = prefix + commitment
    return header, _Keys(seg_key, nonce_prefix, _aad(header, context), segment_size)


def _open_header(header: bytes, dek: bytes, context: bytes) -> _Keys:
    """Parse and authenticate a header; every failure is the same DecryptionError."""
    if len(header) != HEADER_SIZE:
        raise DecryptionError()
    magic, version, suite, segment_size = _HEADER_PREFIX.unpack_from(header)
    if (
        magic != MAGIC
        or version != FORMAT_VERSION
        or suite != SUITE_AES256GCM_HKDF_SHA256_COMMIT
        or not (MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE)
    ):
        raise DecryptionError()
    prefix = header[:_PREFIX_LEN]
    salt = header[_HEADER_PREFIX.size : _HEADER_PREFIX.size + SALT_SIZE]
    nonce_prefix = header[_HEADER_PREFIX.size + SALT_SIZE : _PREFIX_LEN]
    seg_key, commitment = _derive(dek, salt, prefix)
    # Key commitment, checked in constant time before any segment is decrypted.
    if not hmac.compare_digest(commitment, header[_PREFIX_LEN:]):
        raise DecryptionError()
    return _Keys(seg_key, nonce_prefix, _aad(header, context), segment_size)


def read_header_segment_size(header: bytes) -> int:
    """Segment size recorded in an (unauthenticated) header; for sizing only."""
    if len(header) < _HEADER_PREFIX.size:
        raise DecryptionError()
    magic, version, _suite, segment_size = _HEADER_PREFIX.unpack_from(header)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise DecryptionError()
    return int(segment_size)


# ----------------------------------------------------------------------- chunking


class _Chunker:
    """FIFO of byte chunks that hands out exact-size pieces without copying.

    Immutable ``bytes`` chunks are referenced, not copied (mutable buffers are
    copied on entry because the caller may reuse them). :meth:`take` returns a
    list of memoryviews; a segment that arrived as one chunk is one piece and goes
    through the one-shot AESGCM call, otherwise the pieces are streamed through an
    incremental GCM context. Joining pieces into a fresh 1 MiB buffer per segment
    measured 4-10x slower than either (allocator churn), see bench/crypto.py.
    """

    __slots__ = ("_parts", "size")

    def __init__(self) -> None:
        self._parts: deque[memoryview] = deque()
        self.size = 0

    def push(self, chunk: bytes) -> None:
        if type(chunk) is not bytes:
            chunk = bytes(chunk)
        if chunk:
            self._parts.append(memoryview(chunk))
            self.size += len(chunk)

    def take(self, n: int) -> list[memoryview]:
        parts = self._parts
        out = []
        left = n
        while left:
            part = parts[0]
            if len(part) <= left:
                parts.popleft()
                out.append(part)
                left -= len(part)
            else:
                parts[0] = part[left:]
                out.append(part[:left])
                left = 0
        self.size -= n
        return out


def _encrypt_segment(keys: _Keys, index: int, last: bool, pieces: list[memoryview]) -> list[bytes]:
    nonce = keys.nonce(index, last)
    if len(pieces) <= 1:
        return [keys.aead.encrypt(nonce, pieces[0] if pieces else b"", keys.aad)]
    enc = Cipher(keys.algorithm, modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(keys.aad)
    out = [enc.update(p) for p in pieces]
    enc.finalize()
    out.append(enc.tag)
    return out


def _decrypt_segment(keys: _Keys, index: int, last: bool, pieces: list[memoryview]) -> list[bytes]:
    """Verified plaintext of one segment; nothing is returned unless the tag verifies."""
    nonce = keys.nonce(index, last)
    if len(pieces) == 1:
        return [keys.aead.decrypt(nonce, pieces[0], keys.aad)]
    # Split the 16-byte tag off the end; it may straddle pieces.
    tag_parts: list[memoryview] = []
    need = TAG_SIZE
    while need:
        p = pieces[-1]
        if len(p) <= need:
            tag_parts.insert(0, pieces.pop())
            need -= len(p)
        else:
            tag_parts.insert(0, p[len(p) - need :])
            pieces[-1] = p[: len(p) - need]
            need = 0
    dec = Cipher(keys.algorithm, modes.GCM(nonce, b"".join(tag_parts))).decryptor()
    dec.authenticate_additional_data(keys.aad)
    out = [dec.update(p) for p in pieces]
    dec.finalize()  # raises InvalidTag before any of ``out`` is released
    return out


# --------------------------------------------------------------------- encryption


def encrypt_stream(
    chunks: Iterable[bytes],
    dek: bytes,
    context: Mapping[str, str],
    *,
    segment_size: int = SEGMENT_SIZE,
    _salt: bytes | None = None,
    _nonce_prefix: bytes | None = None,
) -> Iterator[bytes]:
    """Encrypt an iterable of plaintext chunks (any sizes); yields ciphertext chunks.

    The first chunk is the header; then each segment follows as one chunk when
    the input arrives in whole segments, or as several pieces otherwise (the
    concatenation is the format either way). Memory use is about two segments whatever the object size. ``_salt`` and
    ``_nonce_prefix`` exist only to regenerate the committed test vectors.
    """
    dek = _check_dek(dek)
    _check_segment_size(segment_size)
    ctx = canonical_context(context)
    header, keys = _new_header(dek, ctx, segment_size, _salt, _nonce_prefix)
    return _encrypt_gen(iter(chunks), header, keys)


def _encrypt_gen(chunks: Iterator[bytes], header: bytes, keys: _Keys) -> Iterator[bytes]:
    yield header
    seg = keys.segment_size
    buf = _Chunker()
    index = 0
    for chunk in chunks:
        buf.push(chunk)
        # Only emit a segment when more data follows it: the final segment must be
        # encrypted with the last flag set, and we learn which one is final at EOF.
        while buf.size > seg:
            if index >= MAX_SEGMENTS - 1:
                raise CryptoError("object too large for this segment size")
            yield from _encrypt_segment(keys, index, False, buf.take(seg))
            index += 1
    yield from _encrypt_segment(keys, index, True, buf.take(buf.size))


def encrypt_bytes(
    plaintext: bytes, dek: bytes, context: Mapping[str, str], *, segment_size: int = SEGMENT_SIZE
) -> bytes:
    """Whole-buffer convenience wrapper over :func:`encrypt_stream`."""
    return b"".join(encrypt_stream([plaintext], dek, context, segment_size=segment_size))


# --------------------------------------------------------------------- decryption


def decrypt_stream(chunks: Iterable[bytes], dek: bytes, context: Mapping[str, str]) -> Generator[bytes, None, None]:
    """Decrypt an iterable of ciphertext chunks (any sizes); yields verified plaintext segments.

    Raises DecryptionError (possibly after yielding earlier verified segments) on
    any tampering, truncation, reordering, appended data, wrong key or context.
    """
    dek = _check_dek(dek)
    ctx = canonical_context(context)
    return _decrypt_gen(iter(chunks), dek, ctx)


def _decrypt_gen(chunks: Iterator[bytes], dek: bytes, ctx: bytes) -> Generator[bytes, None, None]:
    buf = _Chunker()
    keys: _Keys | None = None
    index = 0
    unit = 0
    try:
        for chunk in chunks:
            buf.push(chunk)
            if keys is None:
                if buf.size < HEADER_SIZE:
                    continue
                keys = _open_header(b"".join(buf.take(HEADER_SIZE)), dek, ctx)
                unit = keys.segment_size + TAG_SIZE
            while buf.size > unit:
                if index >= MAX_SEGMENTS - 1:
                    raise DecryptionError()
                yield from _decrypt_segment(keys, index, False, buf.take(unit))
                index += 1
        if keys is None:
            raise DecryptionError()
        # A non-first final segment carries at least one byte (see _layout).
        if buf.size < TAG_SIZE or (index > 0 and buf.size == TAG_SIZE):
            raise DecryptionError()
        yield from _decrypt_segment(keys, index, True, buf.take(buf.size))
    except InvalidTag:
        raise DecryptionError() from None


def decrypt_bytes(ciphertext: bytes, dek: bytes, context: Mapping[str, str]) -> bytes:
    """Whole-buffer convenience wrapper over :func:`decrypt_stream`."""
    return b"".join(decrypt_stream([ciphertext], dek, context))


# ------------------------------------------------------------------- random access

Fetch = Callable[[int, int], "Iterable[bytes] | bytes"]


def _fetch_exact(fetch: Fetch, offset: int, length: int) -> Iterator[bytes]:
    got = fetch(offset, length)
    chunks: Iterable[bytes] = [bytes(got)] if isinstance(got, bytes | bytearray | memoryview) else got
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > length:
            raise DecryptionError()
        yield chunk
    if total != length:
        raise DecryptionError()


def decrypt_range(
    fetch: Fetch,
    dek: bytes,
    context: Mapping[str, str],
    start: int,
    stop: int,
    ciphertext_len: int,
) -> Generator[bytes, None, None]:
    """Yield plaintext[start:stop], reading only the header and the segments covering it.

    ``fetch(offset, length)`` returns the ciphertext bytes at that range (bytes or an
    iterable of chunks). ``stop`` is clamped to the plaintext length like a slice.
    Truncation of the object's tail is detected only when the range reaches the
    final segment; ``ciphertext_len`` must come from trusted storage metadata.
    """
    dek = _check_dek(dek)
    ctx = canonical_context(context)
    if start < 0 or stop < 0:
        raise InvalidRange("range bounds must be >= 0")
    return _range_gen(fetch, dek, ctx, start, stop, ciphertext_len)


def _range_gen(
    fetch: Fetch, dek: bytes, ctx: bytes, start: int, stop: int, ciphertext_len: int
) -> Generator[bytes, None, None]:
    if ciphertext_len < HEADER_SIZE:
        raise DecryptionError()
    try:
        header = b"".join(_fetch_exact(fetch, 0, HEADER_SIZE))
        keys = _open_header(header, dek, ctx)
        seg = keys.segment_size
        unit = seg + TAG_SIZE
        nseg, ptlen = _layout(ciphertext_len, seg)
        stop = min(stop, ptlen)
        if start >= stop:
            return
        first, last = start // seg, (stop - 1) // seg
        begin = HEADER_SIZE + first * unit
        end = min(HEADER_SIZE + (last + 1) * unit, ciphertext_len)
        buf = _Chunker()
        index = first
        for chunk in _fetch_exact(fetch, begin, end - begin):
            buf.push(chunk)
            while index <= last:
                is_last = index == nseg - 1
                need = (ciphertext_len - HEADER_SIZE - index * unit) if is_last else unit
                if buf.size < need:
                    break
                pieces = _decrypt_segment(keys, index, is_last, buf.take(need))
                lo = start - index * seg if index == first else 0
                hi = stop - index * seg if index == last else seg
                pos = 0
                for pt in pieces:
                    a, b = max(lo - pos, 0), min(hi - pos, len(pt))
                    if a < b:
                        yield pt if (a == 0 and b == len(pt)) else pt[a:b]
                    pos += len(pt)
                index += 1
        if index <= last:
            raise DecryptionError()
    except InvalidTag:
        raise DecryptionError() from None


# ------------------------------------------------------------------- resumable writing


class SegmentCipher:
    """One object's segments sealed (or opened) one at a time, by index: for uploads that
    arrive in pieces over many requests and processes.

    The header is made once (``SegmentCipher(dek, context)``) and kept by the caller;
    any later process rebuilds the same cipher from it (``SegmentCipher(dek, context,
    header=...)``, which checks the key commitment).  The concatenation of the header
    and segments 0..n-1, the last sealed with ``last=True``, is exactly the v1 format
    that ``encrypt_stream`` writes, so the result reads like any other object.
    """

    __slots__ = ("_keys", "header")

    def __init__(
        self, dek: bytes, context: Mapping[str, str], *, header: bytes | None = None, segment_size: int = SEGMENT_SIZE
    ):
        dek = _check_dek(dek)
        ctx = canonical_context(context)
        if header is None:
            self.header, self._keys = _new_header(dek, ctx, _check_segment_size(segment_size), None, None)
        else:
            self.header, self._keys = bytes(header), _open_header(bytes(header), dek, ctx)

    def __repr__(self) -> str:
        return "SegmentCipher(<redacted>)"

    @property
    def segment_size(self) -> int:
        return self._keys.segment_size

    def seal(self, index: int, plaintext: bytes, last: bool) -> list[bytes]:
        """Ciphertext pieces of segment ``index``: a full segment, or the final one (1..segment_size bytes)."""
        return self.seal_pieces(index, [plaintext], last)

    def seal_pieces(self, index: int, pieces: Sequence[bytes | memoryview], last: bool) -> list[bytes]:
        """As ``seal``, for a segment's plaintext in pieces (as it arrived): encrypted without joining them."""
        views = [memoryview(p) for p in pieces if len(p)]
        size = sum(len(v) for v in views)
        if not 0 <= index < MAX_SEGMENTS or size > self.segment_size or (not last and size != self.segment_size):
            raise CryptoError("a segment is exactly segment_size bytes, except the last")
        return _encrypt_segment(self._keys, index, last, views)

    def open(self, index: int, ciphertext: bytes, last: bool) -> bytes:
        """Verified plaintext of segment ``index``, or DecryptionError."""
        try:
            return b"".join(_decrypt_segment(self._keys, index, last, [memoryview(ciphertext)]))
        except InvalidTag:
            raise DecryptionError() from None
