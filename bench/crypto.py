"""Throughput and memory benchmark of crypto.encrypt_stream / decrypt_stream.

    python bench/crypto.py [--quick] [--size-mib N] [--segment-kib K] [--chunk-kib C] [--sweep]

The plaintext stream is generated on the fly (one random block yielded repeatedly),
never held in memory; decryption consumes the encryptor's output as it is produced
and only the time spent inside the decryptor is counted. Baselines: a bare loop of
cryptography's AESGCM over the same segment size, the AWS Encryption SDK streaming
encryptor (suite 0x0478, 1 MiB frames, raw AES master key, REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
and ``openssl speed``. Everything runs pinned to one CPU. The last stdout line is
one JSON object. MB = 10**6 bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crypto import SEGMENT_SIZE, ciphertext_size, decrypt_stream, encrypt_stream

MB = 1_000_000
PROC = psutil.Process()


def rss_mb() -> float:
    return PROC.memory_info().rss / MB


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB  # KiB on Linux


def plaintext(total: int, chunk: int, block: bytes):
    """Yield ``total`` bytes in ``chunk``-sized pieces without holding the stream."""
    full, rest = divmod(total, chunk)
    piece = block[:chunk]
    for _ in range(full):
        yield piece
    if rest:
        yield block[:rest]


class Timed:
    """Wrap an iterator and account the time spent producing its items."""

    def __init__(self, it):
        self.it = iter(it)
        self.spent = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.spent += time.perf_counter() - t


def bench_ours(total: int, seg: int, chunk: int, block: bytes, peak: list[float]) -> tuple[float, float]:
    dek = os.urandom(32)
    ctx = {"tenant": "bench", "object": "bench-object"}
    # Encrypt: consume and discard.
    t0 = time.perf_counter()
    out = 0
    for i, c in enumerate(encrypt_stream(plaintext(total, chunk, block), dek, ctx, segment_size=seg)):
        out += len(c)
        if i % 64 == 0:
            peak[0] = max(peak[0], rss_mb())
    enc_s = time.perf_counter() - t0
    assert out == ciphertext_size(total, seg), "ciphertext size mismatch"
    # Decrypt: the ciphertext is produced on the fly by a second encryptor; its time
    # is measured by Timed and subtracted.
    src = Timed(encrypt_stream(plaintext(total, chunk, block), dek, ctx, segment_size=seg))
    t0 = time.perf_counter()
    got = 0
    first = last = None
    for i, p in enumerate(decrypt_stream(src, dek, ctx)):
        got += len(p)
        if first is None:
            first = p
        last = p
        if i % 64 == 0:
            peak[0] = max(peak[0], rss_mb())
    dec_s = time.perf_counter() - t0 - src.spent
    assert got == total, "plaintext size mismatch"
    if total:
        expected = (block[:chunk] * (-(-len(first) // chunk)))[: len(first)]
        assert bytes(first) == expected and len(last) > 0, "round trip mismatch"
    return total / enc_s / MB, total / dec_s / MB


def bench_raw(total: int, seg: int, block: bytes) -> tuple[float, float]:
    """Bare AESGCM over the same segment size: the ceiling for any segmented format."""
    aead = AESGCM(os.urandom(32))
    nonce, aad = os.urandom(12), os.urandom(32)
    data = block[:seg]
    n = max(1, total // seg)
    t0 = time.perf_counter()
    for _ in range(n):
        ct = aead.encrypt(nonce, data, aad)
    enc_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        aead.decrypt(nonce, ct, aad)
    dec_s = time.perf_counter() - t0
    return n * seg / enc_s / MB, n * seg / dec_s / MB


class _GenReader(io.RawIOBase):
    """File-like view of a generated stream, for the AWS Encryption SDK."""

    def __init__(self, total: int, block: bytes):
        self.left = total
        self.block = block

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left, len(self.block))
        b[:n] = self.block[:n]
        self.left -= n
        return n


def bench_aws_sdk(total: int, block: bytes) -> float:
    import aws_encryption_sdk
    from aws_encryption_sdk.identifiers import Algorithm, CommitmentPolicy, EncryptionKeyType, WrappingAlgorithm
    from aws_encryption_sdk.internal.crypto.wrapping_keys import WrappingKey
    from aws_encryption_sdk.key_providers.raw import RawMasterKeyProvider

    class StaticKeys(RawMasterKeyProvider):
        provider_id = "static"

        def __init__(self, **kw):
            super().__init__(**kw)
            self.key = os.urandom(32)

        def _get_raw_key(self, key_id):
            return WrappingKey(
                wrapping_algorithm=WrappingAlgorithm.AES_256_GCM_IV12_TAG16_NO_PADDING,
                wrapping_key=self.key,
                wrapping_key_type=EncryptionKeyType.SYMMETRIC,
            )

    provider = StaticKeys()
    provider.add_master_key(b"bench")
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    source = io.BufferedReader(_GenReader(total, block), buffer_size=1 << 20)
    t0 = time.perf_counter()
    out = 0
    with client.stream(
        mode="e",
        source=source,
        key_provider=provider,
        algorithm=Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY,
        frame_length=1 << 20,
    ) as enc:
        for line in iter(lambda: enc.read(1 << 20), b""):
            out += len(line)
    s = time.perf_counter() - t0
    assert out > total
    return total / s / MB


def bench_openssl(seconds: int) -> float | None:
    try:
        res = subprocess.run(
            ["openssl", "speed", "-evp", "aes-256-gcm", "-bytes", "16384", "-seconds", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds * 4 + 30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"^aes-256-gcm\s+([\d.]+)k\s*$", res.stdout, re.M | re.I)
    return float(m.group(1)) * 1000 / MB if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small run, well under a minute")
    ap.add_argument("--size-mib", type=int, default=None, help="stream size (default 1024, quick 256)")
    ap.add_argument("--segment-kib", type=int, default=SEGMENT_SIZE // 1024)
    ap.add_argument("--chunk-kib", type=int, default=1024, help="plaintext input chunk size")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    ap.add_argument("--sweep", action="store_true", help="also compare segment sizes")
    args = ap.parse_args()

    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        pinned = True
    except (AttributeError, OSError):
        pinned = False
    size_mib = args.size_mib if args.size_mib is not None else (256 if args.quick else 1024)
    total = size_mib * 1024 * 1024
    seg = args.segment_kib * 1024
    chunk = args.chunk_kib * 1024
    block = os.urandom(max(seg, chunk, 1 << 20))

    rss_rest = rss_mb()
    peak = [rss_rest]
    # Best of three, ours and the raw baseline interleaved, so that noise from
    # other processes on the machine hits both sides alike.
    enc = dec = raw_enc = raw_dec = 0.0
    for _ in range(args.repeat):
        e, d = bench_ours(total, seg, chunk, block, peak)
        re_, rd = bench_raw(min(total, 512 << 20), seg, block)
        enc, dec, raw_enc, raw_dec = max(enc, e), max(dec, d), max(raw_enc, re_), max(raw_dec, rd)
    maxrss_after_ours = maxrss_mb()
    # Unaligned input (64 KiB chunks, as an HTTP upload delivers them): segments are
    # assembled from several pieces and go through the incremental GCM path.
    enc64, dec64 = bench_ours(min(total, 256 << 20), seg, 64 * 1024, block, [0.0])
    aws = bench_aws_sdk(min(total, 256 << 20) if args.quick else total, block)
    openssl = bench_openssl(1 if args.quick else 3)

    result = {
        "size_mib": size_mib,
        "segment_size": seg,
        "input_chunk_size": chunk,
        "quick": args.quick,
        "repeat": args.repeat,
        "pinned_one_cpu": pinned,
        "encrypt_mb_s": round(enc, 1),
        "decrypt_mb_s": round(dec, 1),
        "raw_aesgcm_mb_s": round(raw_enc, 1),
        "raw_aesgcm_decrypt_mb_s": round(raw_dec, 1),
        "ratio_to_raw": round(enc / raw_enc, 3),
        "decrypt_ratio_to_raw": round(dec / raw_dec, 3),
        "encrypt_mb_s_64kib_input_chunks": round(enc64, 1),
        "decrypt_mb_s_64kib_input_chunks": round(dec64, 1),
        "aws_sdk_mb_s": round(aws, 1),
        "ratio_to_aws_sdk": round(enc / aws, 3),
        "openssl_cli_mb_s": round(openssl, 1) if openssl else None,
        "rss_at_rest_mb": round(rss_rest, 1),
        "peak_rss_mb": round(max(peak[0], maxrss_after_ours), 1),
        "peak_rss_over_rest_mb": round(max(peak[0], maxrss_after_ours) - rss_rest, 1),
        "units": "MB = 1e6 bytes",
    }
    if args.sweep:
        sweep = {}
        for kib in (64, 256, 1024, 4096):
            p = [rss_mb()]
            e, d = bench_ours(
                min(total, 512 << 20), kib * 1024, max(chunk, kib * 1024), os.urandom(max(kib * 1024, chunk)), p
            )
            re_, rd = bench_raw(min(total, 512 << 20), kib * 1024, os.urandom(kib * 1024))
            sweep[f"{kib}KiB"] = {
                "encrypt_mb_s": round(e, 1),
                "decrypt_mb_s": round(d, 1),
                "ratio_to_raw": round(e / re_, 3),
                "decrypt_ratio_to_raw": round(d / rd, 3),
                "rss_mb": round(p[0], 1),
            }
        result["segment_sweep"] = sweep
    print(json.dumps(result))


if __name__ == "__main__":
    main()
