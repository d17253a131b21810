"""Which key-encryption key seals which object, and the exact encryption context of each kind.

The contexts are part of the stored format: every segment's associated data and the
DEK wrapping bind them, so an object opens only with the context it was sealed
with.  They are recorded on the object's registry row when it is sealed and read
back from there; these builders are the only place that assembles them.
"""

from __future__ import annotations

import hashlib
import re

from crypto import KeyDestroyed, KeyNotFound

_GENERATION = re.compile(r"-g(\d+)$")


def relationship_key(practice_id: str, vendor_id: str) -> str:
    """The KEK for files a practice sends to one vendor; destroying it shreds every copy sent there.

    Derived from the pair (KMS aliases and key files limit ids to 64 characters).
    """
    return "rel-" + hashlib.sha256(f"{practice_id}:{vendor_id}".encode()).hexdigest()[:40]


def live_relationship_key(keys, practice_id: str, vendor_id: str) -> str:
    """The relationship KEK new files are sent under: the first generation not destroyed.

    Offboarding destroys the pair's key for good (a destroyed id is never re-created),
    so a practice that signs a new BAA with the same vendor later starts a new
    generation (`rel-...-g1`, `-g2`, ...); files of the old one stay crypto-shredded.
    Raises ProviderUnavailable when the key service cannot say.
    """
    base = relationship_key(practice_id, vendor_id)
    for generation in range(10_000):
        key_id = base if generation == 0 else f"{base}-g{generation}"
        try:
            keys.current_version(key_id)
        except KeyDestroyed:
            continue
        except KeyNotFound:
            return key_id  # not created yet: the next upload creates it
        return key_id
    raise RuntimeError("no free relationship key generation")  # pragma: no cover - 10,000 offboardings


def practice_key(practice_id: str) -> str:
    """The KEK for what a practice keeps: files sent back to it, its signed BAA copies."""
    return f"org-{practice_id}"


def generation_of(key_id: str) -> int:
    """The relationship generation a key id names (0 for the first generation and for practice keys)."""
    match = _GENERATION.search(key_id) if key_id.startswith("rel-") else None
    return int(match.group(1)) if match else 0


def transfer_file_context(*, practice_id: str, vendor_id: str, transfer_id: str, file_id: str) -> dict[str, str]:
    """Bound into every segment: a ciphertext moved to another file or tenant does not decrypt."""
    return {"practice": practice_id, "vendor": vendor_id, "transfer": transfer_id, "file": file_id}


def baa_copy_context(*, baa_id: str, practice_id: str) -> dict[str, str]:
    return {"purpose": "baa-signed-copy", "baa": baa_id, "practice": practice_id}


def upload_context(*, practice_id: str, vendor_id: str, upload_id: str, file_id: str) -> dict[str, str]:
    """A resumable upload's context: fixed before its first byte (no transfer exists yet) and kept
    by the transfer file it becomes (the registry row records it)."""
    return {"practice": practice_id, "vendor": vendor_id, "upload": upload_id, "file": file_id}
