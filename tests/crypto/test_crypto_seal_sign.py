"""Small-value sealing and the Ed25519 signing key."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from crypto import (
    CryptoError,
    DecryptionError,
    KeyDestroyed,
    KeyNotFound,
    Signer,
    fingerprint,
    reseal,
    seal,
    sealed_key_info,
    unseal,
    verify,
    verify_signature,
)

CTX = {"purpose": "totp-secret", "user": "42"}


def test_seal_round_trip_and_format(local_provider):
    local_provider.ensure_key("gateway-secrets")
    blob = seal(local_provider, "gateway-secrets", b"JBSWY3DPEHPK3PXP", CTX)
    assert blob[:4] == b"PHGB" and blob[4] == 1
    assert b"JBSWY3DPEHPK3PXP" not in blob
    info = sealed_key_info(blob)
    assert (info.provider, info.key_id, info.key_version) == ("local", "gateway-secrets", 1)
    assert unseal(local_provider, blob, CTX) == b"JBSWY3DPEHPK3PXP"
    assert unseal(local_provider, seal(local_provider, "gateway-secrets", b"", CTX), CTX) == b""
    assert seal(local_provider, "gateway-secrets", b"x", CTX) != seal(local_provider, "gateway-secrets", b"x", CTX)


def test_seal_context_bound(local_provider):
    local_provider.ensure_key("gateway-secrets")
    blob = seal(local_provider, "gateway-secrets", b"secret", CTX)
    for ctx in ({"purpose": "totp-secret", "user": "43"}, {"purpose": "file-name", "user": "42"}, {}):
        with pytest.raises(DecryptionError):
            unseal(local_provider, blob, ctx)


def test_every_bit_flip_of_sealed_blob_fails(local_provider):
    local_provider.ensure_key("gateway-secrets")
    blob = seal(local_provider, "gateway-secrets", b"file-name.pdf", CTX)
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        # Flips inside the key id may name another (missing) key: still a refusal.
        with pytest.raises((DecryptionError, KeyNotFound, CryptoError)):
            unseal(local_provider, bytes(bad), CTX)
    for cut in range(len(blob)):
        with pytest.raises(CryptoError):
            unseal(local_provider, blob[:cut], CTX)
    with pytest.raises(DecryptionError):
        unseal(local_provider, blob + b"\x00", CTX)


def test_seal_requires_existing_key_and_fails_after_destroy(local_provider):
    with pytest.raises(KeyNotFound):
        seal(local_provider, "gateway-secrets", b"x", CTX)
    local_provider.ensure_key("gateway-secrets")
    blob = seal(local_provider, "gateway-secrets", b"x", CTX)
    local_provider.destroy_key("gateway-secrets")
    with pytest.raises(KeyDestroyed):
        unseal(local_provider, blob, CTX)


def test_reseal_moves_to_newest_version(local_provider):
    local_provider.ensure_key("gateway-secrets")
    blob = seal(local_provider, "gateway-secrets", b"value", CTX)
    local_provider.rotate("gateway-secrets")
    new = reseal(local_provider, blob, CTX)
    assert sealed_key_info(new).key_version == 2
    assert unseal(local_provider, new, CTX) == b"value"


def test_signer_sign_verify_and_export(local_provider):
    signer = Signer.load_or_create(local_provider)
    msg = b"destruction certificate #1"
    sig = signer.sign(msg)
    assert len(sig) == 64
    raw, pem = signer.public_key_raw(), signer.public_key_pem()
    assert len(raw) == 32 and pem.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert serialization.load_pem_public_key(pem).public_bytes_raw() == raw  # PEM <-> raw
    assert signer.fingerprint() == hashlib.sha256(raw).hexdigest() == fingerprint(pem)
    assert re.fullmatch(r"[0-9a-f]{64}", signer.fingerprint())
    for key in (raw, pem, pem.decode(), signer.public_key()):
        assert verify_signature(key, msg, sig) is True
    assert verify(raw, msg, sig) and signer.verify(msg, sig)
    assert verify_signature(raw, msg + b"!", sig) is False
    assert verify_signature(raw, msg, sig[:-1] + bytes([sig[-1] ^ 1])) is False
    other = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert verify_signature(other, msg, sig) is False
    for bad in (b"short", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(CryptoError):
            verify_signature(bad, msg, sig)


def test_signing_key_persists_sealed(local_provider, keyring_path: Path):
    signer = Signer.load_or_create(local_provider)
    again = Signer.load_or_create(local_provider)
    assert again.fingerprint() == signer.fingerprint()
    stored = (keyring_path / "blobs" / "signing.bin").read_bytes()
    seed = signer._sk.private_bytes_raw()
    assert seed not in stored and stored[:4] == b"PHGB"  # sealed, never in the clear
    assert seed.hex() not in repr(signer) and signer.fingerprint()[:16] in repr(signer)


def test_signing_key_unusable_after_its_kek_is_destroyed(local_provider):
    Signer.load_or_create(local_provider)
    local_provider.destroy_key("signing")
    with pytest.raises(KeyDestroyed):
        Signer.load_or_create(local_provider)


def test_crypto_package_imports_nothing_from_gateway_or_storage():
    root = Path(__file__).resolve().parents[2] / "crypto"
    sources = list(root.glob("*.py"))
    assert sources
    for src in sources:
        text = src.read_text()
        assert not re.search(r"^\s*(from|import)\s+(gateway|storage|retention)\b", text, re.M), src
