"""local:// keyring: permissions, wrapping, rotation, rewrap, destruction, key ids."""

from __future__ import annotations

import logging
import os
import stat
import warnings

import pytest

from crypto import (
    ConfigurationError,
    CryptoError,
    DataKey,
    DecryptionError,
    InvalidKeyId,
    KeyDestroyed,
    KeyDestruction,
    KeyNotFound,
    KeyProvider,
    ProviderUnavailable,
    SingleHostKeyringWarning,
    WrappedKey,
    decrypt_stream,
    encrypt_stream,
    init_keyring,
    open_key_provider,
)

CTX = {"tenant": "1", "object": "abc"}


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_keyring_permissions(keyring_path, local_provider):
    local_provider.ensure_key("rel-1-2")
    local_provider.rotate("rel-1-2")
    assert mode(keyring_path) == 0o700
    for sub in ("keys", "destroyed", "blobs", "keys/rel-1-2"):
        assert mode(keyring_path / sub) == 0o700
    files = list((keyring_path / "keys" / "rel-1-2").iterdir())
    assert sorted(f.name for f in files) == ["v1.kek", "v2.kek"]
    for f in [*files, keyring_path / "PHIGATE-KEYRING"]:
        assert mode(f) == 0o600
        if f.suffix == ".kek":
            assert f.stat().st_size == 32


def test_init_keyring_is_idempotent_and_refuses_foreign_dirs(tmp_path):
    root = tmp_path / "k"
    assert init_keyring(root) == init_keyring(root)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "something").write_text("x")
    with pytest.raises(CryptoError):
        init_keyring(foreign)
    with pytest.raises(CryptoError):
        init_keyring("relative/path")


def test_open_warns_single_host(keyring_path, caplog):
    with (
        caplog.at_level(logging.WARNING, logger="crypto.local"),
        pytest.warns(SingleHostKeyringWarning, match="single onshore host"),
    ):
        provider = open_key_provider(f"local://{keyring_path}")
    assert isinstance(provider, KeyProvider)
    assert issubclass(SingleHostKeyringWarning, UserWarning)
    assert any("single onshore host" in r.getMessage() for r in caplog.records)


def test_open_refuses_bad_urls_and_uninitialised_or_loose_dirs(tmp_path, keyring_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for url in ("local://relative/keys", "local:relative", "file:///x", "local:///x?y=1"):
            with pytest.raises(ConfigurationError):
                open_key_provider(url)
        with pytest.raises(ProviderUnavailable):
            open_key_provider(f"local://{tmp_path / 'nothing'}")
        os.chmod(keyring_path, 0o755)
        with pytest.raises(CryptoError, match="permissions"):
            open_key_provider(f"local://{keyring_path}")


def test_generate_unwrap_and_context_binding(local_provider):
    assert local_provider.ensure_key("rel-1-2") == 1
    assert local_provider.ensure_key("rel-1-2") == 1  # idempotent
    dek, wrapped = local_provider.generate_data_key("rel-1-2", CTX)
    assert isinstance(dek, DataKey) and len(dek) == 32
    assert (wrapped.provider, wrapped.key_id, wrapped.key_version) == ("local", "rel-1-2", 1)
    assert bytes(dek) not in wrapped.to_bytes()  # never stored in the clear
    assert local_provider.unwrap(WrappedKey.from_bytes(wrapped.to_bytes()), CTX) == dek
    with pytest.raises(DecryptionError):
        local_provider.unwrap(wrapped, {"tenant": "2", "object": "abc"})
    with pytest.raises(DecryptionError):
        local_provider.unwrap(wrapped, {})


def test_wrapped_key_cannot_move_between_key_ids_or_versions(local_provider):
    local_provider.ensure_key("rel-1-2")
    local_provider.ensure_key("rel-1-3")
    _, wrapped = local_provider.generate_data_key("rel-1-2", CTX)
    moved = WrappedKey("local", "rel-1-3", 1, wrapped.blob)
    with pytest.raises(DecryptionError):
        local_provider.unwrap(moved, CTX)
    local_provider.rotate("rel-1-2")
    with pytest.raises(DecryptionError):
        local_provider.unwrap(WrappedKey("local", "rel-1-2", 2, wrapped.blob), CTX)
    with pytest.raises(DecryptionError):
        local_provider.unwrap(WrappedKey("awskms", "rel-1-2", 1, wrapped.blob), CTX)
    tampered = bytearray(wrapped.blob)
    tampered[-1] ^= 1
    with pytest.raises(DecryptionError):
        local_provider.unwrap(WrappedKey("local", "rel-1-2", 1, bytes(tampered)), CTX)


def test_generate_for_missing_key_fails(local_provider):
    with pytest.raises(KeyNotFound):
        local_provider.generate_data_key("org-9", CTX)
    with pytest.raises(KeyNotFound):
        local_provider.rotate("org-9")


def test_rotation_and_rewrap(local_provider):
    local_provider.ensure_key("rel-1-2")
    dek1, w1 = local_provider.generate_data_key("rel-1-2", CTX)
    assert local_provider.rotate("rel-1-2") == 2
    assert local_provider.rotate("rel-1-2") == 3
    assert local_provider.current_version("rel-1-2") == 3
    _dek3, w3 = local_provider.generate_data_key("rel-1-2", CTX)
    assert w3.key_version == 3
    assert local_provider.unwrap(w1, CTX) == dek1  # old versions still unwrap
    w1b = local_provider.rewrap(w1, CTX)
    assert w1b.key_version == 3 and w1b.blob != w1.blob
    assert local_provider.unwrap(w1b, CTX) == dek1
    assert local_provider.rewrap(w1b, CTX) == w1b  # already newest
    with pytest.raises(DecryptionError):
        local_provider.rewrap(w1, {"tenant": "other"})


def test_object_round_trip_through_provider(local_provider):
    local_provider.ensure_key("org-1")
    dek, wrapped = local_provider.generate_data_key("org-1", CTX)
    pt = os.urandom(5000)
    ct = b"".join(encrypt_stream([pt], dek, CTX, segment_size=1024))
    stored = wrapped.to_bytes()
    dek2 = local_provider.unwrap(WrappedKey.from_bytes(stored), CTX)
    assert b"".join(decrypt_stream([ct], dek2, CTX)) == pt


def test_destroy_key(local_provider, keyring_path):
    local_provider.ensure_key("rel-1-2")
    local_provider.ensure_key("rel-1-3")
    _, w1 = local_provider.generate_data_key("rel-1-2", CTX)
    local_provider.rotate("rel-1-2")
    _, w2 = local_provider.generate_data_key("rel-1-2", CTX)
    kek_before = (keyring_path / "keys" / "rel-1-2" / "v1.kek").read_bytes()

    ev = local_provider.destroy_key("rel-1-2")

    assert isinstance(ev, KeyDestruction)
    assert (ev.key_id, ev.provider, ev.versions) == ("rel-1-2", "local", (1, 2))
    assert ev.method == "local:overwrite-unlink-fsync"
    assert ev.pending_window_days == 0 and ev.deletion_scheduled_for == ev.destroyed_at
    assert ev.destroyed_at.tzinfo is not None
    with pytest.raises(AttributeError):
        ev.key_id = "x"  # frozen evidence
    assert not (keyring_path / "keys" / "rel-1-2").exists()
    for path in keyring_path.rglob("*"):
        if path.is_file():
            assert kek_before not in path.read_bytes()
    for w in (w1, w2):
        with pytest.raises(KeyDestroyed):
            local_provider.unwrap(w, CTX)
    with pytest.raises(KeyDestroyed):
        local_provider.generate_data_key("rel-1-2", CTX)
    with pytest.raises(KeyDestroyed):
        local_provider.ensure_key("rel-1-2")  # never silently resurrected
    with pytest.raises(KeyDestroyed):
        local_provider.rotate("rel-1-2")
    assert local_provider.key_ids() == ["rel-1-3"]
    assert local_provider.destroy_key("rel-1-2") == ev  # idempotent retry returns the evidence
    with pytest.raises(KeyNotFound):
        local_provider.destroy_key("never-existed")


def test_destruction_by_another_process_stops_a_keyring_that_holds_the_key_in_memory(local_provider, keyring_path):
    """A KEK version is read once per process; destruction elsewhere still stops every unwrap at once."""
    local_provider.ensure_key("rel-9-9")
    dek, wrapped = local_provider.generate_data_key("rel-9-9", CTX)
    assert local_provider.unwrap(wrapped, CTX) == dek  # now held in memory
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = open_key_provider(f"local://{keyring_path}")  # a second server process on the same host
    other.destroy_key("rel-9-9")
    with pytest.raises(KeyDestroyed):
        local_provider.unwrap(wrapped, CTX)
    with pytest.raises(KeyDestroyed):
        local_provider.generate_data_key("rel-9-9", CTX)


@pytest.mark.parametrize("bad", ["", "-abc", "_x", "../etc", "a/b", "a b", "a.b", "x" * 65, "é", "rel-1-2\n", None, 5])
def test_invalid_key_ids_refused(local_provider, bad):
    with pytest.raises(InvalidKeyId):
        local_provider.ensure_key(bad)
    with pytest.raises(InvalidKeyId):
        local_provider.generate_data_key(bad, CTX)


def test_valid_key_id_limits(local_provider):
    for kid in ("a", "x" * 64, "rel-123-456", "org_7", "signing"):
        assert local_provider.ensure_key(kid) == 1
    assert local_provider.key_ids() == sorted(["a", "x" * 64, "rel-123-456", "org_7", "signing"])


def test_invalid_contexts_refused(local_provider):
    local_provider.ensure_key("org-1")
    for ctx in ({"aws:x": "1"}, {"phigate:key_id": "1"}, {"a": 1}, {"": "x"}, ["a"]):
        with pytest.raises(CryptoError):
            local_provider.generate_data_key("org-1", ctx)


def test_check_and_blobs(local_provider, keyring_path):
    local_provider.check()
    assert local_provider.get_blob("signing") is None
    local_provider.put_blob("signing", b"sealed-bytes")
    local_provider.put_blob("signing", b"sealed-bytes-2")
    assert local_provider.get_blob("signing") == b"sealed-bytes-2"
    assert mode(keyring_path / "blobs" / "signing.bin") == 0o600
    (keyring_path / "PHIGATE-KEYRING").unlink()
    with pytest.raises(ProviderUnavailable):
        local_provider.check()


def test_wrapped_key_serialisation():
    w = WrappedKey("local", "rel-1-2", 7, b"\x01" * 60)
    data = w.to_bytes()
    assert data[:4] == b"PHGW" and data[4] == 1
    assert WrappedKey.from_bytes(data) == w
    assert "\\x01" not in repr(w) and "60 bytes" in repr(w)
    for bad in (b"", data[:-1], data + b"x", b"XXXX" + data[4:], data[:4] + b"\x02" + data[5:]):
        with pytest.raises(CryptoError):
            WrappedKey.from_bytes(bad)


def test_secrets_hidden_in_repr(local_provider):
    local_provider.ensure_key("org-1")
    dek, _wrapped = local_provider.generate_data_key("org-1", CTX)
    assert dek.hex() not in repr(dek) and "redacted" in repr(dek)
    assert repr(bytes(dek)[:4])[2:-1] not in repr(dek)
    assert "LocalKeyring(local://" in repr(local_provider)
