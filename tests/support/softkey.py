"""A software WebAuthn authenticator for tests that drive the gateway over HTTP without a browser.

It builds what a browser and an authenticator would send (clientDataJSON, authenticator
data, the attestation object, ES256 signatures) byte for byte per WebAuthn Level 2, with
every knob an attacker controls: the origin and relying party id it signs for, the user
verification flag, the signature counter, and attestation ("none", or "packed" with a
certificate issued by a test CA). Synthetic keys only; nothing here is used by the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TestCA:
    """A root certificate and the attestation certificates it issues (an authenticator vendor, in tests)."""

    __test__ = False

    def __init__(self, name: str = "Synthetic Authenticator Root"):
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "Synthetic Authenticator"),
                        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
                    ]
                )
            )
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return key, cert.public_bytes(serialization.Encoding.DER)

    def root_der_b64(self) -> str:
        return base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()


@dataclass
class SoftAuthenticator:
    """One credential on one authenticator; `clone()` copies the private key, as an attacker would."""

    __test__ = False

    rp_id: str
    origin: str
    aaguid: bytes = bytes(16)
    sign_count: int = 0
    backup_eligible: bool = False
    backed_up: bool = False
    attestation_ca: TestCA | None = None
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    counts: bool = True  # False: an authenticator without a counter (always 0)

    def clone(self) -> SoftAuthenticator:
        return SoftAuthenticator(
            self.rp_id,
            self.origin,
            self.aaguid,
            self.sign_count,
            self.backup_eligible,
            self.backed_up,
            self.attestation_ca,
            self.key,
            self.credential_id,
            self.counts,
        )

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def _flags(self, uv: bool, extra: int = 0) -> int:
        return UP | (UV if uv else 0) | (BE if self.backup_eligible else 0) | (BS if self.backed_up else 0) | extra

    def _client_data(self, kind: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        ).encode()

    def create(
        self,
        options: dict,
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        uv: bool = True,
        fmt: str = "none",
        ca: TestCA | None = None,
    ) -> dict:
        """The answer of navigator.credentials.create() to `options` (the gateway's JSON)."""
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        rp_hash = hashlib.sha256((rp_id or self.rp_id).encode()).digest()
        attested = self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id + self._cose_key()
        auth_data = rp_hash + bytes([self._flags(uv, AT)]) + struct.pack(">I", self.sign_count) + attested
        statement: dict = {}
        if fmt == "packed":
            signer, cert = (ca or self.attestation_ca).issue()
            signature = signer.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
            statement = {"alg": -7, "sig": signature, "x5c": [cert]}
        attestation = cbor2.dumps({"fmt": fmt, "attStmt": statement, "authData": auth_data})
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
        }

    def get(self, options: dict, *, origin: str | None = None, rp_id: str | None = None, uv: bool = True) -> dict:
        """The answer of navigator.credentials.get() to `options`; the counter moves forward first."""
        if self.counts:
            self.sign_count += 1
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([self._flags(uv)])
            + struct.pack(">I", self.sign_count)
        )
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": self.id,
            "rawId": self.id,
            "type": "public-key",
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
            },
        }


def aaguid_text(aaguid: bytes) -> str:
    return str(uuid.UUID(bytes=aaguid))
