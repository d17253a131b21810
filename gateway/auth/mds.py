"""Known authenticator models: the operator's FIDO Metadata Service (MDS3) file.

With `PHIGATE_PASSKEY_MDS_FILE` set, a passkey registers only if its authenticator
attests to a model listed there: its AAGUID is an entry, and its attestation
certificate chains to one of that entry's `attestationRootCertificates`.  The file is
the MDS3 BLOB's payload as JSON (`{"entries": [...]}`), which the operator fetches,
verifies and trims to the models the organisation issues; it is configuration the
operator vouches for, read at each registration (so an update needs no restart).
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


class MetadataFileInvalid(ValueError):
    """The metadata file cannot be used; registration is refused rather than let any model in."""


@dataclass(frozen=True)
class Model:
    aaguid: str
    description: str
    roots_pem: tuple[bytes, ...]


def load(path: Path) -> dict[str, Model]:
    """AAGUID (lower-case, hyphenated) -> model, for every entry with an AAGUID and at least one root."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetadataFileInvalid(f"cannot read the passkey metadata file: {type(exc).__name__}") from None
    entries = document.get("entries") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise MetadataFileInvalid("the passkey metadata file has no 'entries' list (MDS3 payload expected)")
    models: dict[str, Model] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("aaguid"):
            continue  # U2F and UAF entries carry no AAGUID: not passkeys
        statement = entry.get("metadataStatement") or {}
        try:
            aaguid = str(uuid.UUID(str(entry["aaguid"])))
            roots = tuple(
                x509.load_der_x509_certificate(base64.b64decode(cert)).public_bytes(Encoding.PEM)
                for cert in statement.get("attestationRootCertificates") or ()
            )
        except (ValueError, TypeError):
            raise MetadataFileInvalid("the passkey metadata file holds a malformed AAGUID or certificate") from None
        if roots:
            models[aaguid] = Model(aaguid, str(statement.get("description", ""))[:200], roots)
    return models
