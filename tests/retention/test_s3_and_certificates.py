"""On a versioned S3 bucket over HTTP (moto server): every version and delete marker gone; Object Lock ->
crypto-shred only.  Certificates: a changed byte fails, another key fails, the PDF carries the essentials."""

from __future__ import annotations

import base64
import hashlib
import json
import warnings

import pytest
from sqlalchemy import select

from gateway.audit.service import Actor
from gateway.transfers.models import FileState, Transfer, TransferFile
from retention.certificates import check_storage, verify_document
from retention.models import Certificate
from retention.offboarding import offboard
from tests.retention.conftest import make_bucket, s3_url
from tests.retention.seed import seed


@pytest.fixture
def s3c(components, s3_endpoint, aws_env):
    from gateway.components import Components

    def make(object_lock: bool = False):
        bucket = make_bucket(s3_endpoint, object_lock=object_lock)
        settings = components.settings.model_copy(update={"storage_url": s3_url(s3_endpoint, bucket)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            c = Components(settings)
        made.append(c)
        return c, bucket

    made = []
    yield make
    for c in made:
        c.close()


def _versions(raw, bucket, key):
    resp = raw.list_object_versions(Bucket=bucket, Prefix=key)
    return [v for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []) if v["Key"] == key]


def _files(db, vendor_id):
    """Each file with its sealed object's key and wrapped key (from the registry)."""
    from types import SimpleNamespace

    from tests.transfers.conftest import sealed_of

    db.expire_all()
    files = list(
        db.scalars(select(TransferFile).join(Transfer).where(Transfer.vendor_id == vendor_id).order_by(TransferFile.id))
    )
    db.commit()
    out = []
    for f in files:
        obj = sealed_of(db, f.id)
        out.append(SimpleNamespace(id=f.id, state=f.state, object_key=obj.object_key, wrapped_dek=obj.wrapped_dek))
    return out


def test_versioned_bucket_every_version_and_delete_marker_destroyed(s3c, s3_endpoint, party, db):
    c, bucket = s3c()
    seed(c, party.practice.id, party.vendor.id, party.staff.id, 3)
    raw = s3_endpoint.client()
    files = _files(db, party.vendor.id)
    for f in files:  # older versions and delete markers behind each object, as a real bucket accumulates
        raw.put_object(Bucket=bucket, Key=f.object_key, Body=b"older ciphertext version")
        raw.delete_object(Bucket=bucket, Key=f.object_key)
        raw.put_object(Bucket=bucket, Key=f.object_key, Body=b"newer ciphertext version")
        raw.delete_object(Bucket=bucket, Key=f.object_key)
        assert len(_versions(raw, bucket, f.object_key)) == 5
    [job] = offboard(c, Actor.system(), party.vendor.id, reason="contract ended").jobs
    assert job.destroyed == 3 and job.crypto_shred_only == 0
    for f in files:
        assert _versions(raw, bucket, f.object_key) == []
    body = json.loads(db.get(Certificate, job.certificate_id).document)["certificate"]
    db.commit()
    for entry in body["objects"]:
        assert entry["verification"] == "verified absent"
        assert entry["storage"]["versions_deleted"] == 3 and entry["storage"]["delete_markers_deleted"] == 2
        assert any("ListObjectVersions" in check for check in entry["storage"]["checks"])
        assert entry["storage_location"] == c.store.location_id
    checked, problems, _ = check_storage(body, c.store)
    assert (checked, problems) == (3, [])
    # A copy that reappears (restored from a backup) is reported by --check-storage.
    raw.put_object(Bucket=bucket, Key=files[0].object_key, Body=b"restored")
    assert check_storage(body, c.store)[1]


def test_object_lock_certificate_says_crypto_shred_only(s3c, s3_endpoint, party, db):
    c, bucket = s3c(object_lock=True)
    seed(c, party.practice.id, party.vendor.id, party.staff.id, 2)
    raw = s3_endpoint.client()
    locked, free = _files(db, party.vendor.id)
    version = _versions(raw, bucket, locked.object_key)[0]["VersionId"]
    raw.put_object_legal_hold(Bucket=bucket, Key=locked.object_key, VersionId=version, LegalHold={"Status": "ON"})
    try:
        [job] = offboard(c, Actor.system(), party.vendor.id, reason="contract ended").jobs
        assert job.destroyed == 2 and job.crypto_shred_only == 1
        locked_now = next(f for f in _files(db, party.vendor.id) if f.id == locked.id)
        # The ciphertext is still there, but its data key and name are gone, and so is the KEK.
        assert _versions(raw, bucket, locked.object_key)
        assert locked_now.state == FileState.destroyed and locked_now.wrapped_dek is None
        assert job.key_evidence["destroyed"] is True
        body = json.loads(db.get(Certificate, job.certificate_id).document)["certificate"]
        db.commit()
        entry = {e["object_id"]: e for e in body["objects"]}
        assert entry[locked.id]["verification"] == "crypto-shred only"
        assert "legal hold" in entry[locked.id]["storage"]["blocked"][0]["reason"].lower()
        assert entry[free.id]["verification"] == "verified absent"
        assert body["crypto_shred_only"]["object_ids"] == [locked.id]
        assert "destroyed by crypto-shredding only" in body["crypto_shred_only"]["statement"]
        assert body["summary"]["crypto_shred_only"] == 1
        _checked, problems, notes = check_storage(body, c.store)
        assert problems == [] and "Object Lock" in notes[0]
    finally:
        raw.put_object_legal_hold(Bucket=bucket, Key=locked.object_key, VersionId=version, LegalHold={"Status": "OFF"})


@pytest.fixture
def certificate(components, party, seeded):
    seeded(2)
    [job] = offboard(components, Actor.system(), party.vendor.id, reason="contract ended").jobs
    with components.db.sessions() as db:
        return db.get(Certificate, job.certificate_id).document


def test_every_single_changed_byte_fails_verification(certificate):
    assert verify_document(certificate)[0].ok
    for pos in range(len(certificate)):  # every byte of the document
        for delta in (1, 0x20) if pos % 7 == 0 else (1,):
            tampered = bytearray(certificate)
            tampered[pos] = (tampered[pos] + delta) % 256
            assert not verify_document(bytes(tampered))[0].ok, pos


def test_edited_content_and_other_key_fail(certificate, components):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from crypto import Signer
    from gateway.audit.checkpoint import get_signer
    from retention.certificates import canonical, sign

    doc = json.loads(certificate)
    doc["certificate"]["objects"][0]["size"] += 1  # re-serialised canonically: only the signature can tell
    result = verify_document(canonical(doc))[0]
    assert not result.ok and "the signature does not verify" in result.problems
    mine = get_signer(components).public_key_pem()
    assert verify_document(certificate, mine)[0].ok
    other = Ed25519PrivateKey.generate()
    other_pem = other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert not verify_document(certificate, other_pem)[0].ok
    # Re-signed by someone else with their own key embedded: fails against the operator's published key.
    forged = sign(doc["certificate"], Signer(other))
    assert verify_document(forged)[0].ok and not verify_document(forged, mine)[0].ok


def test_cli_verify_rejects_a_tampered_file(certificate, phigate, tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_bytes(certificate)
    bad.write_bytes(certificate.replace(b'"size":', b'"size":1', 1))
    assert phigate("certificate", "verify", str(good)).returncode == 0
    done = phigate("certificate", "verify", str(bad))
    assert done.returncode == 1 and "INVALID" in done.stderr


def test_pdf_carries_id_summary_hash_and_fingerprint(certificate):
    from retention.pdf import render

    pdf = render(certificate)
    assert pdf.startswith(b"%PDF-")
    body = json.loads(certificate)
    text = _pdf_text(pdf)
    assert body["certificate"]["certificate_id"] in text
    assert hashlib.sha256(certificate).hexdigest() in text
    assert body["signature"]["public_key_fingerprint"] in text
    assert "Objects destroyed" in text and "cryptographic erase" in text
    assert base64.b64decode(body["signature"]["value"])  # well-formed


def _pdf_text(pdf: bytes) -> str:
    """The text of an fpdf2 PDF (its content streams are zlib-compressed)."""
    import re
    import zlib

    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            # A stream whose compressed bytes end in CR loses that byte to the pattern (a checksum byte, about one
            # certificate in 256): decompressobj gives the text without insisting on the checksum.
            data = zlib.decompressobj().decompress(stream)
        except zlib.error:
            continue
        out += [m.decode("latin-1") for m in re.findall(rb"\((.*?)(?<!\\)\)\s*Tj", data, re.S)]
    return "".join(out).replace("\\(", "(").replace("\\)", ")")


def test_kms_key_evidence_carries_the_scheduled_deletion_date(components, s3_endpoint, aws_env, party, db):
    """With AWS KMS (moto's server) as key provider, the certificate states when the KEK's material is gone."""
    import uuid
    from datetime import datetime, timedelta

    from gateway.components import Components
    from gateway.sealed.keys import relationship_key

    url = (
        f"awskms://arn:aws:kms:us-east-1:123456789012:alias/phg-{uuid.uuid4().hex[:8]}"
        f"?endpoint_url={s3_endpoint.endpoint_url}&pending_window_days=7"
    )
    c = Components(components.settings.model_copy(update={"key_provider_url": url}))
    try:
        seed(c, party.practice.id, party.vendor.id, party.staff.id, 2)
        [job] = offboard(c, Actor.system(), party.vendor.id, reason="contract ended").jobs
        evidence = job.key_evidence
        assert evidence["destroyed"] is True and evidence["method"] == "awskms:ScheduleKeyDeletion"
        assert evidence["key_id"] == relationship_key(party.practice.id, party.vendor.id)
        assert evidence["pending_window_days"] == 7
        scheduled = datetime.fromisoformat(evidence["deletion_scheduled_for"])
        assert scheduled - datetime.fromisoformat(evidence["destroyed_at"]) >= timedelta(days=6)
        document = db.get(Certificate, job.certificate_id).document
        db.commit()
        result, body = verify_document(document)
        assert result.ok and body["key_evidence"]["deletion_scheduled_for"] == evidence["deletion_scheduled_for"]
        from retention.pdf import render

        assert evidence["deletion_scheduled_for"] in _pdf_text(render(document))
    finally:
        c.close()
