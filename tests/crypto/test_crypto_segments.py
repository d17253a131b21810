"""SegmentCipher: segments sealed one by one, across 'processes', read as one ordinary v1 object."""

import os

import pytest

from crypto import DecryptionError, SegmentCipher, decrypt_bytes, decrypt_stream
from crypto.errors import CryptoError

CTX = {"practice": "p1", "upload": "u1"}


def test_segments_sealed_apart_decrypt_as_one_object():
    dek = os.urandom(32)
    data = os.urandom(64 * 3 + 10)
    first = SegmentCipher(dek, CTX, segment_size=64)
    pieces = [first.header, *first.seal(0, data[:64], False)]
    # Another process rebuilds the cipher from the stored header and carries on.
    later = SegmentCipher(dek, CTX, header=first.header)
    pieces += later.seal(1, data[64:128], False) + later.seal(2, data[128:192], False)
    pieces += later.seal(3, data[192:], True)
    blob = b"".join(pieces)
    assert decrypt_bytes(blob, dek, CTX) == data
    assert b"".join(decrypt_stream([blob[:100], blob[100:]], dek, CTX)) == data


def test_open_verifies_index_and_context():
    dek = os.urandom(32)
    cipher = SegmentCipher(dek, CTX, segment_size=64)
    sealed = b"".join(cipher.seal(5, b"x" * 64, False))
    assert cipher.open(5, sealed, False) == b"x" * 64
    with pytest.raises(DecryptionError):
        cipher.open(6, sealed, False)
    with pytest.raises(DecryptionError):
        cipher.open(5, sealed, True)
    with pytest.raises(DecryptionError):
        SegmentCipher(dek, {"practice": "p2", "upload": "u1"}, header=cipher.header).open(5, sealed, False)


def test_wrong_key_or_bad_sizes_refused():
    cipher = SegmentCipher(os.urandom(32), CTX, segment_size=64)
    with pytest.raises(DecryptionError):
        SegmentCipher(os.urandom(32), CTX, header=cipher.header)
    with pytest.raises(CryptoError):
        cipher.seal(0, b"short", False)
    with pytest.raises(CryptoError):
        cipher.seal(0, b"y" * 65, True)
