"""Committed test vectors: decrypt with crypto, and with an independent spec decoder."""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from crypto import DecryptionError, decrypt_range, decrypt_stream, encrypt_stream

VECTORS = json.loads((Path(__file__).parent / "vectors" / "stream_v1.json").read_text())["vectors"]
GOOD = [v for v in VECTORS if v["expect"] == "ok"]
BAD = [v for v in VECTORS if v["expect"] == "fail"]


def reference_decrypt(ct: bytes, dek: bytes, context: dict[str, str]) -> bytes:
    """Decoder written from docs/encrypted-object-format.md only, not from crypto.stream."""
    if len(ct) < 81 or ct[:4] != b"PHGS" or ct[4] != 1 or ct[5] != 1:
        raise ValueError("header")
    (seg,) = struct.unpack(">I", ct[6:10])
    salt, prefix, commitment = ct[10:42], ct[42:49], ct[49:81]
    info = ct[:49]
    key = HKDF(hashes.SHA256(), 32, salt, b"phigate/stream/v1/segment-key" + info).derive(dek)
    expect = HKDF(hashes.SHA256(), 32, salt, b"phigate/stream/v1/commitment" + info).derive(dek)
    if not hmac.compare_digest(expect, commitment):
        raise ValueError("commitment")
    canon = struct.pack(">I", len(context))
    for k in sorted(context):
        kb, vb = k.encode(), context[k].encode()
        canon += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    aad = hashlib.sha256(b"phigate/stream/v1/aad" + ct[:81] + canon).digest()
    body, unit = ct[81:], seg + 16
    n = max(1, -(-len(body) // unit))
    out = b""
    for i in range(n):
        piece = body[i * unit : (i + 1) * unit]
        last = i == n - 1
        if len(piece) < 16 or (last and i > 0 and len(piece) == 16):
            raise ValueError("length")
        out += AESGCM(key).decrypt(prefix + struct.pack(">IB", i, int(last)), piece, aad)
    return out


@pytest.mark.parametrize("v", GOOD, ids=[v["name"] for v in GOOD])
def test_good_vectors_decrypt(v):
    dek, ct, pt = bytes.fromhex(v["dek"]), bytes.fromhex(v["ciphertext"]), bytes.fromhex(v["plaintext"])
    assert b"".join(decrypt_stream([ct], dek, v["context"])) == pt
    assert reference_decrypt(ct, dek, v["context"]) == pt
    fetch = lambda off, n: ct[off : off + n]  # noqa: E731
    assert b"".join(decrypt_range(fetch, dek, v["context"], 3, 35, len(ct))) == pt[3:35]
    # The encoder still produces exactly these bytes from the same randomness.
    again = encrypt_stream(
        [pt],
        dek,
        v["context"],
        segment_size=v["segment_size"],
        _salt=bytes.fromhex(v["salt"]),
        _nonce_prefix=bytes.fromhex(v["nonce_prefix"]),
    )
    assert b"".join(again) == ct


@pytest.mark.parametrize("v", BAD, ids=[v["name"] for v in BAD])
def test_bad_vectors_fail(v):
    dek, ct = bytes.fromhex(v["dek"]), bytes.fromhex(v["ciphertext"])
    with pytest.raises(DecryptionError):
        b"".join(decrypt_stream([ct], dek, v["context"]))
    with pytest.raises((ValueError, InvalidTag)):
        reference_decrypt(ct, dek, v["context"])


def test_vector_set_covers_required_cases():
    names = {v["name"] for v in VECTORS}
    assert {"empty", "two-full-segments", "truncated-at-segment-boundary", "wrong-context"} <= names
    assert len(GOOD) >= 6 and len(BAD) >= 6
