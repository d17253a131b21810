"""Regenerate the committed stream-format test vectors (deterministic).

    python tests/crypto/vectors/generate.py

Only run this when the format version changes: the committed JSON is the
compatibility contract that tests/crypto/test_crypto_vectors.py checks.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from crypto.stream import HEADER_SIZE, TAG_SIZE, encrypt_stream

HERE = Path(__file__).resolve().parent


def det(label: str, n: int) -> bytes:
    """Deterministic bytes for synthetic vectors (never used for real keys)."""
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{label}/{i}".encode()).digest()
        i += 1
    return out[:n]


def vector(name: str, pt_len: int, seg: int, ctx: dict[str, str]) -> dict:
    dek, salt, prefix = det(name + "/dek", 32), det(name + "/salt", 32), det(name + "/np", 7)
    pt = det(name + "/pt", pt_len)
    ct = b"".join(encrypt_stream([pt], dek, ctx, segment_size=seg, _salt=salt, _nonce_prefix=prefix))
    return {
        "name": name,
        "segment_size": seg,
        "dek": dek.hex(),
        "context": ctx,
        "salt": salt.hex(),
        "nonce_prefix": prefix.hex(),
        "plaintext": pt.hex(),
        "ciphertext": ct.hex(),
    }


def main() -> None:
    ctx = {"tenant": "1", "object": "abc"}
    good = [
        vector("empty", 0, 16, ctx),
        vector("one-byte", 1, 16, ctx),
        vector("one-full-segment", 16, 16, ctx),
        vector("two-full-segments", 32, 16, ctx),
        vector("three-segments-partial", 40, 16, ctx),
        vector("unicode-context", 200, 64, {"tenant": "prax-7", "object": "ünïcode/名前", "purpose": "claim"}),
        vector("empty-context", 33, 32, {}),
        vector("default-segment-size", 100, 1 << 20, ctx),
    ]
    base = good[4]
    ct = bytes.fromhex(base["ciphertext"])
    unit = 16 + TAG_SIZE

    def neg(name: str, data: bytes, **over) -> dict:
        v = dict(base, name=name, ciphertext=data.hex(), expect="fail")
        v.update(over)
        return v

    flipped = bytearray(ct)
    flipped[HEADER_SIZE + unit + 3] ^= 0x01
    commit = bytearray(ct)
    commit[HEADER_SIZE - 1] ^= 0x80
    bad = [
        neg("body-bit-flip", bytes(flipped)),
        neg("commitment-bit-flip", bytes(commit)),
        neg("truncated-at-segment-boundary", ct[: HEADER_SIZE + 2 * unit]),
        neg("appended-byte", ct + b"\x00"),
        neg(
            "segments-swapped",
            ct[:HEADER_SIZE]
            + ct[HEADER_SIZE + unit : HEADER_SIZE + 2 * unit]
            + ct[HEADER_SIZE : HEADER_SIZE + unit]
            + ct[HEADER_SIZE + 2 * unit :],
        ),
        neg("wrong-context", ct, context={"tenant": "2", "object": "abc"}),
        neg("wrong-dek", ct, dek=det("other/dek", 32).hex()),
    ]
    for v in good:
        v["expect"] = "ok"
    doc = {
        "format": "phigate encrypted object, format version 1 (docs/encrypted-object-format.md)",
        "note": "synthetic keys and data; hex-encoded bytes; context is the caller's Mapping[str, str]",
        "vectors": good + bad,
    }
    (HERE / "stream_v1.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
