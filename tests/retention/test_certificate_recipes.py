"""Certificates are RFC 8785 documents (format /2); format /1 ones still verify; docs/destruction-certificate.md's
recipes (Python and Node), run verbatim, accept both and refuse an altered file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.audit.service import Actor
from gateway.orgs.models import Organisation
from retention.certificates import FORMAT, verify_document
from retention.models import Certificate
from retention.offboarding import offboard
from tests.support.recipes import Recipe

FIXTURES = Path(__file__).resolve().parents[1] / "translog" / "fixtures"
V1 = FIXTURES / "certificate-v1.json"
KEY = FIXTURES / "signing-key.pem"


@pytest.fixture(params=["python", "node"])
def verifier(request, tmp_path) -> Recipe:
    node = request.getfixturevalue("node") if request.param == "node" else None
    return Recipe("destruction-certificate.md", "verify-certificate", request.param, tmp_path, node)


@pytest.fixture
def issued(components, party, seeded, tmp_path):
    """A certificate issued now for organisations with non-ASCII names, and the signing key's PEM file."""
    from gateway.audit.checkpoint import get_signer

    with components.db.transaction() as db:
        db.get(Organisation, party.practice.id).name = "Praxis Müller – Zürich"
        db.get(Organisation, party.vendor.id).name = "Facturación Ñandú 請求"
    seeded(2)
    [job] = offboard(components, Actor.system(), party.vendor.id, reason="Vertrag beendet – «fin»").jobs
    with components.db.sessions() as db:
        document = db.get(Certificate, job.certificate_id).document
    pem = tmp_path / "key.pem"
    pem.write_bytes(get_signer(components).public_key_pem())
    path = tmp_path / "certificate.json"
    path.write_bytes(document)
    return path, pem


def test_a_new_certificate_is_rfc8785_and_the_recipes_verify_it(issued, verifier):
    import rfc8785

    path, pem = issued
    data = path.read_bytes()
    doc = json.loads(data)
    assert doc["certificate"]["format"] == FORMAT == "phigate-destruction-certificate/2"
    assert rfc8785.dumps(doc) == data and "Müller".encode() in data
    assert verify_document(data, pem.read_bytes())[0].ok
    r = verifier.run(path, pem)
    assert r.returncode == 0 and r.stdout.startswith("OK: certificate "), r.stderr


def test_the_recipes_refuse_an_altered_certificate(issued, verifier, tmp_path):
    path, pem = issued
    data = path.read_bytes()
    doc = json.loads(data)
    resized = tmp_path / "resized.json"
    resized.write_bytes(data.replace(b'"size":', b'"size":1', 1))
    escaped = tmp_path / "escaped.json"  # the same content, ASCII-escaped: not the canonical form
    escaped.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    # Python's recipe lets cryptography's InvalidSignature propagate; Node's says so itself.
    for bad, why in (
        (resized, ("the signature does not verify", "InvalidSignature")),
        (escaped, ("not in canonical form",)),
    ):
        assert not verify_document(bad.read_bytes(), pem.read_bytes())[0].ok
        r = verifier.run(bad, pem)
        assert r.returncode != 0 and any(w in r.stderr for w in why), (bad.name, r.stderr)


def test_a_certificate_downgraded_to_format_1_fails(issued):
    path, pem = issued
    data = path.read_bytes().replace(b"phigate-destruction-certificate/2", b"phigate-destruction-certificate/1")
    result = verify_document(data, pem.read_bytes())[0]
    assert not result.ok and "the signature does not verify" in result.problems


def test_a_format_1_certificate_still_verifies(verifier):
    """Issued by the gateway before certificates were RFC 8785, with non-ASCII organisation names."""
    data = V1.read_bytes()
    assert json.loads(data)["certificate"]["format"] == "phigate-destruction-certificate/1"
    assert "Zürich".encode() in data
    result, _body = verify_document(data, KEY.read_bytes())
    assert result.ok and result.objects == 2, result.problems
    r = verifier.run(V1, KEY)
    assert r.returncode == 0 and r.stdout.startswith("OK: certificate "), r.stderr
    tampered = data.replace("Zürich".encode(), b"Zurich")
    assert not verify_document(tampered, KEY.read_bytes())[0].ok


def test_a_certificate_whose_format_is_not_a_string_fails_without_crashing():
    """A format that could not even be looked up (a list) is reported, not raised as TypeError."""
    data = V1.read_bytes()
    listed = data.replace(b'"phigate-destruction-certificate/1"', b'["phigate-destruction-certificate/1"]', 1)
    assert listed != data
    result, body = verify_document(listed, KEY.read_bytes())
    assert not result.ok
    assert "unknown format ['phigate-destruction-certificate/1']" in result.problems
    assert "the signature does not verify" in result.problems
    assert body is not None and body["format"] == ["phigate-destruction-certificate/1"]
