"""Checkpoints as C2SP signed notes (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).

    <origin>\\n
    <tree size, decimal>\\n
    <root hash, base64>\\n
    \\n
    \\u2014 <key name> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>\\n

The signature covers the note text: the three body lines (and any extension
lines after them, c2sp.org/tlog-checkpoint) including the final newline.  An
export's own note carries one extension line binding the export's header
(translog/export.py); a verifier that ignores extensions still sees a valid
checkpoint of the same tree.  key id = SHA-256(<key name> || 0x0A || 0x01 || 32-byte public key)[:4]
(0x01 = Ed25519).  The verifier key string is
`<key name>+<hex key id>+<base64(0x01 || public key)>`.  Pure functions: the
signing key comes in as a `Signer`, the verifying key as PEM, raw bytes or a key object.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from translog.keys import PublicKey, Signer, load_public_key, verify_signature

DASH = "\u2014"
ALG_ED25519 = b"\x01"
_NAME = re.compile(r"^[^\s+]+$")


class NoteError(ValueError):
    """A checkpoint note that is malformed or whose signature does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root_hash: bytes
    note: str
    extensions: tuple[str, ...] = ()


def key_id(name: str, public_raw: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public_raw).digest()[:4]


def verifier_key(name: str, public_raw: bytes) -> str:
    return f"{name}+{key_id(name, public_raw).hex()}+{base64.b64encode(ALG_ED25519 + public_raw).decode()}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """(key name, raw public key) from a `name+hexid+base64` verifier key; checks the id."""
    try:
        name, hex_id, b64 = vkey.strip().split("+", 2)
        raw = base64.b64decode(b64, validate=True)
    except ValueError:
        raise NoteError("not a verifier key") from None
    if raw[:1] != ALG_ED25519 or len(raw) != 33 or key_id(name, raw[1:]).hex() != hex_id.lower():
        raise NoteError("not an Ed25519 verifier key")
    return name, raw[1:]


def body(origin: str, tree_size: int, root_hash: bytes, extensions: tuple[str, ...] = ()) -> str:
    if not _NAME.match(origin):
        raise NoteError("the origin must be non-empty without spaces or '+'")
    if any(not line or "\n" in line for line in extensions):
        raise NoteError("an extension line is non-empty and a single line")
    return "".join(f"{line}\n" for line in (origin, str(tree_size), base64.b64encode(root_hash).decode(), *extensions))


def sign(
    origin: str,
    tree_size: int,
    root_hash: bytes,
    signer: Signer,
    name: str | None = None,
    extensions: tuple[str, ...] = (),
) -> str:
    """A signed checkpoint note (with optional extension lines); the key name defaults to the origin."""
    name = name or origin
    text = body(origin, tree_size, root_hash, extensions)
    sig = signer.sign(text.encode())
    kid = key_id(name, signer.public_key_raw())
    return f"{text}\n{DASH} {name} {base64.b64encode(kid + sig).decode()}\n"


def parse(note: str) -> tuple[Checkpoint, list[tuple[str, bytes, bytes]]]:
    """Split a note into its checkpoint and its (name, key id, signature) lines, unverified."""
    text, sep, sigs = note.partition("\n\n")
    if not sep or not note.endswith("\n"):
        raise NoteError("a signed note has a body, a blank line and signature lines")
    lines = text.split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has an origin, a tree size and a root hash")
    origin, size, root = lines[0], lines[1], lines[2]
    if not _NAME.match(origin) or not re.fullmatch(r"0|[1-9][0-9]{0,18}", size):
        raise NoteError("malformed checkpoint origin or size")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except ValueError:
        raise NoteError("malformed root hash") from None
    if len(root_hash) != 32:
        raise NoteError("the root hash is not 32 bytes")
    signatures = []
    for line in sigs.rstrip("\n").split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != DASH:
            raise NoteError("malformed signature line")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except ValueError:
            raise NoteError("malformed signature") from None
        if len(raw) < 5:
            raise NoteError("malformed signature")
        signatures.append((parts[1], raw[:4], raw[4:]))
    return Checkpoint(origin, int(size), root_hash, note, tuple(lines[3:])), signatures


def verify(note: str, public_key: PublicKey, name: str | None = None) -> Checkpoint:
    """The checkpoint if `note` carries a valid signature by `public_key` (under `name`, default the origin)."""
    checkpoint, signatures = parse(note)
    name = name or checkpoint.origin
    raw = load_public_key(public_key).public_bytes_raw()
    kid = key_id(name, raw)
    signed_text = note.partition("\n\n")[0] + "\n"
    for sig_name, sig_kid, sig in signatures:
        if sig_name == name and sig_kid == kid and verify_signature(raw, signed_text.encode(), sig):
            return checkpoint
    raise NoteError("no valid signature by the given key")
