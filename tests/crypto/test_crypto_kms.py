"""awskms:// provider against moto: naming, residency, wrap/unwrap, rotation, destruction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from crypto import (
    ConfigurationError,
    DecryptionError,
    KeyDestroyed,
    KeyNotFound,
    KeyProvider,
    ProviderUnavailable,
    ResidencyError,
    Signer,
    WrappedKey,
    decrypt_stream,
    encrypt_stream,
    open_key_provider,
    seal,
    unseal,
    verify_signature,
)

ACCOUNT = "123456789012"
URL = f"awskms://arn:aws:kms:us-east-1:{ACCOUNT}:alias/phigate"
CTX = {"tenant": "1", "object": "abc"}


@pytest.fixture
def kms(aws_env):
    with mock_aws():
        yield boto3.client("kms", region_name="us-east-1")


@pytest.fixture
def provider(kms):
    return open_key_provider(URL + "?pending_window_days=7")


def aliases(kms) -> dict[str, str]:
    return {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}


def test_ensure_key_creates_per_key_id_kms_keys_behind_aliases(provider, kms):
    assert isinstance(provider, KeyProvider)
    assert provider.ensure_key("rel-1-2") == 1
    assert provider.ensure_key("rel-1-2") == 1
    names = aliases(kms)
    assert names["alias/phigate/rel-1-2"] == names["alias/phigate/rel-1-2/v1"]
    tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=names["alias/phigate/rel-1-2"])["Tags"]}
    assert tags["phigate:key_id"] == "rel-1-2" and tags["phigate:version"] == "1"
    provider.ensure_key("org-1")
    assert provider.key_ids() == ["org-1", "rel-1-2"]
    provider.check()


def test_generate_unwrap_and_encryption_context(provider):
    provider.ensure_key("rel-1-2")
    dek, wrapped = provider.generate_data_key("rel-1-2", CTX)
    assert len(dek) == 32 and (wrapped.provider, wrapped.key_id, wrapped.key_version) == ("awskms", "rel-1-2", 1)
    assert bytes(dek) not in wrapped.blob
    assert provider.unwrap(WrappedKey.from_bytes(wrapped.to_bytes()), CTX) == dek
    with pytest.raises(DecryptionError):
        provider.unwrap(wrapped, {"tenant": "2", "object": "abc"})
    with pytest.raises(DecryptionError):
        provider.unwrap(wrapped, {})


def test_wrapped_key_bound_to_key_id(provider):
    provider.ensure_key("rel-1-2")
    provider.ensure_key("rel-1-3")
    _, wrapped = provider.generate_data_key("rel-1-2", CTX)
    with pytest.raises(DecryptionError):
        provider.unwrap(WrappedKey("awskms", "rel-1-3", 1, wrapped.blob), CTX)
    with pytest.raises(DecryptionError):
        provider.unwrap(WrappedKey("local", "rel-1-2", 1, wrapped.blob), CTX)
    with pytest.raises(KeyNotFound):
        provider.unwrap(WrappedKey("awskms", "rel-1-2", 5, wrapped.blob), CTX)


def test_missing_key(provider):
    with pytest.raises(KeyNotFound):
        provider.generate_data_key("nope", CTX)


def test_rotate_and_rewrap(provider, kms):
    provider.ensure_key("rel-1-2")
    dek1, w1 = provider.generate_data_key("rel-1-2", CTX)
    assert provider.rotate("rel-1-2") == 2
    names = aliases(kms)
    assert names["alias/phigate/rel-1-2"] == names["alias/phigate/rel-1-2/v2"] != names["alias/phigate/rel-1-2/v1"]
    assert provider.current_version("rel-1-2") == 2
    _dek2, w2 = provider.generate_data_key("rel-1-2", CTX)
    assert w2.key_version == 2
    assert provider.unwrap(w1, CTX) == dek1  # old KMS key kept for unwrap
    w1b = provider.rewrap(w1, CTX)
    assert w1b.key_version == 2
    assert provider.unwrap(w1b, CTX) == dek1
    with pytest.raises(DecryptionError):
        provider.rewrap(w1, {"tenant": "9"})


def test_destroy_schedules_deletion_and_reports_window(provider, kms):
    provider.ensure_key("rel-1-2")
    provider.ensure_key("org-1")
    _, w1 = provider.generate_data_key("rel-1-2", CTX)
    provider.rotate("rel-1-2")
    _, w2 = provider.generate_data_key("rel-1-2", CTX)
    before = datetime.now(UTC)

    ev = provider.destroy_key("rel-1-2")

    assert (ev.key_id, ev.provider, ev.versions, ev.pending_window_days) == ("rel-1-2", "awskms", (1, 2), 7)
    assert ev.method == "awskms:ScheduleKeyDeletion"
    assert before + timedelta(days=7) - timedelta(minutes=5) <= ev.deletion_scheduled_for
    assert ev.deletion_scheduled_for <= datetime.now(UTC) + timedelta(days=7, minutes=5)
    names = aliases(kms)
    for v in (1, 2):
        state = kms.describe_key(KeyId=names[f"alias/phigate/rel-1-2/v{v}"])["KeyMetadata"]["KeyState"]
        assert state == "PendingDeletion"
    for w in (w1, w2):
        with pytest.raises(KeyDestroyed):
            provider.unwrap(w, CTX)
    with pytest.raises(KeyDestroyed):
        provider.generate_data_key("rel-1-2", CTX)
    with pytest.raises(KeyDestroyed):
        provider.ensure_key("rel-1-2")
    with pytest.raises(KeyDestroyed):
        provider.rewrap(w1, CTX)
    assert provider.key_ids() == ["org-1"]
    again = provider.destroy_key("rel-1-2")  # idempotent: already pending
    assert again.versions == (1, 2) and again.deletion_scheduled_for == ev.deletion_scheduled_for
    with pytest.raises(KeyNotFound):
        provider.destroy_key("never")


def test_pending_window_configurable(kms):
    p = open_key_provider(URL, pending_window_days=30)
    p.ensure_key("org-1")
    assert p.destroy_key("org-1").pending_window_days == 30
    for bad in (6, 31):
        with pytest.raises(ConfigurationError):
            open_key_provider(URL, pending_window_days=bad)


@pytest.mark.parametrize("region", ["ap-south-1", "eu-west-1", "eu-central-1", "ca-central-1"])
def test_offshore_region_refused_at_open(aws_env, region):
    with pytest.raises(ResidencyError):
        open_key_provider(f"awskms://arn:aws:kms:{region}:{ACCOUNT}:alias/phigate")


def test_onshore_regions_configurable(aws_env):
    with pytest.raises(ResidencyError):
        open_key_provider(URL, onshore_regions=("us-west-2",))
    with mock_aws():
        p = open_key_provider(f"awskms://arn:aws:kms:eu-west-1:{ACCOUNT}:alias/phigate", onshore_regions=("eu-west-1",))
        assert p.region == "eu-west-1"
    gov = open_key_provider(f"awskms://arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:alias/phigate")
    assert gov.region == "us-gov-west-1"


@pytest.mark.parametrize(
    "url",
    [
        "awskms://arn:aws:kms:us-east-1:123:alias/phigate",
        "awskms://arn:aws:kms:us-east-1:123456789012:key/abc",
        "awskms://arn:aws:kms:us-east-1:123456789012:alias/",
        "awskms://arn:aws:kms:us-east-1:123456789012:alias/phigate?bogus=1",
        "awskms://not-an-arn",
    ],
)
def test_bad_urls_refused(aws_env, url):
    with pytest.raises(ConfigurationError):
        open_key_provider(url)


def test_unreachable_endpoint_fails_check(aws_env):
    p = open_key_provider(URL + "?endpoint_url=http://127.0.0.1:9")
    with pytest.raises(ProviderUnavailable):
        p.check()


def test_endpoint_url_against_moto_server(aws_env):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        p = open_key_provider(f"{URL}?endpoint_url=http://{host}:{port}")
        p.check()
        p.ensure_key("org-1")
        dek, wrapped = p.generate_data_key("org-1", CTX)
        assert p.unwrap(wrapped, CTX) == dek
    finally:
        server.stop()


def test_object_seal_and_signing_through_kms(provider):
    provider.ensure_key("rel-1-2")
    dek, wrapped = provider.generate_data_key("rel-1-2", CTX)
    ct = b"".join(encrypt_stream([b"claim attachment"], dek, CTX))
    assert b"".join(decrypt_stream([ct], provider.unwrap(wrapped, CTX), CTX)) == b"claim attachment"

    provider.ensure_key("gateway-secrets")
    blob = seal(provider, "gateway-secrets", b"JBSWY3DPEHPK3PXP", {"purpose": "totp", "user": "7"})
    assert unseal(provider, blob, {"purpose": "totp", "user": "7"}) == b"JBSWY3DPEHPK3PXP"

    signer = Signer.load_or_create(provider)
    again = Signer.load_or_create(provider)  # sealed key stored with the KMS key, reloaded
    assert again.public_key_raw() == signer.public_key_raw()
    assert verify_signature(signer.public_key_pem(), b"checkpoint", again.sign(b"checkpoint"))
