"""The canonical serialisation of one audit event: what a Merkle leaf commits to.

    d(event) = json.dumps(array, sort_keys=True, ensure_ascii=True, allow_nan=False)
               i.e. Python's default JSON text: items separated by ", ", keys and
               values by ": ", object keys sorted, non-ASCII as \\u escapes, no NaN
               or infinity, encoded as ASCII:
      ["phigate-audit-v1", seq, occurred_at, action, outcome, severity,
       actor_user_id, actor_org_id, ip, user_agent, target_type, target_id,
       target_org_id, details]

    occurred_at = "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, always six fraction digits)
    leaf hash   = SHA-256(0x00 || d(event))         (RFC 9162 section 2.1.1)

The sequence number is inside the leaf, so moving an event to another position
changes its leaf hash.  `record_event()` stores `details` with its keys in
sorted order, so the database's own JSON text of the column (json.dumps) is
already the canonical text of that element: long scans splice the stored text
in (`leaf_hash_text`, and `leaf_hashes_text` for a whole batch of rows with one
JSON encoding call) instead of parsing and re-encoding it, and fall back to
parsing when a row was written any other way.  This module is all an outside
verifier needs to recompute a leaf from an exported record (see docs/audit.md).

This serialisation predates the switch to RFC 8785 (translog/jcs.py) and stays:
every stored leaf of every existing log commits to it, and a stored event does
not record a form of its own, so a second leaf form would leave a verifier
guessing which one each row uses.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

VERSION = "phigate-audit-v1"

# The event fields, in leaf order after the version tag.
FIELDS = (
    "seq",
    "occurred_at",
    "action",
    "outcome",
    "severity",
    "actor_user_id",
    "actor_org_id",
    "ip",
    "user_agent",
    "target_type",
    "target_id",
    "target_org_id",
    "details",
)

_encode = json.JSONEncoder(sort_keys=True, ensure_ascii=True, allow_nan=False).encode
_sha256 = hashlib.sha256


def format_time(value: datetime) -> str:
    """The canonical UTC timestamp text."""
    if value.tzinfo is None:
        raise ValueError("naive datetime in an audit event")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    text = value.isoformat()  # "...+00:00"; the C isoformat is much faster than strftime
    return text[:-6] + "Z" if value.microsecond else text[:-6] + ".000000Z"


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def details_text(details: dict[str, Any]) -> str:
    """The canonical JSON text of a details object."""
    return _encode(details)


def serialise(
    seq: int,
    occurred_at: str,
    action: str,
    outcome: str,
    severity: str,
    actor_user_id: str | None,
    actor_org_id: str | None,
    ip: str | None,
    user_agent: str | None,
    target_type: str | None,
    target_id: str | None,
    target_org_id: str | None,
    details: dict[str, Any],
) -> bytes:
    return _encode(
        [
            VERSION,
            seq,
            occurred_at,
            action,
            outcome,
            severity,
            actor_user_id,
            actor_org_id,
            ip,
            user_agent,
            target_type,
            target_id,
            target_org_id,
            details,
        ]
    ).encode("ascii")


def leaf_hash_of(*fields: Any) -> bytes:
    """SHA-256(0x00 || d(event)) for the fields in `FIELDS` order (occurred_at as canonical text)."""
    return _sha256(b"\x00" + serialise(*fields)).digest()


def leaf_hash_text(*fields: Any) -> bytes:
    """As `leaf_hash_of`, with details given as JSON text that is spliced in unchanged.

    Equal to `leaf_hash_of` exactly when the text is the canonical text of the details.
    """
    head = _encode([VERSION, *fields[:12]])
    details: str = fields[12]
    return _sha256(b"\x00" + (head[:-1] + ", " + details + "]").encode("ascii", "backslashreplace")).digest()


_ROW_PREFIX = f'["{VERSION}", '
# Between two rows of a batch encoded as one JSON array of arrays: no string can hold it,
# since every '"' inside a JSON string is escaped, and an array only opens at a row.
_ROW_BREAK = f"], {_ROW_PREFIX}"


def leaf_hashes_text(rows: Sequence[Sequence[Any]]) -> list[bytes]:
    """`leaf_hash_text` of many rows (the 12 fields, then details as JSON text, in each row).

    One JSON encoding call serialises the fields of every row at once; the result is
    split back into rows at `_ROW_BREAK`.  Equal to `leaf_hash_text` row by row.
    """
    if not rows:
        return []
    body = _encode([(VERSION, *row[:12]) for row in rows])
    heads = body[len(_ROW_PREFIX) + 1 : -2].split(_ROW_BREAK)
    prefix = "\x00" + _ROW_PREFIX
    return [
        _sha256(f"{prefix}{head}, {row[12]}]".encode("ascii", "backslashreplace")).digest()
        for head, row in zip(heads, rows, strict=True)
    ]


def record_leaf_hash(record: dict[str, Any]) -> bytes:
    """Leaf hash of an exported record (a dict holding every name in `FIELDS`)."""
    return leaf_hash_of(*(record[name] for name in FIELDS))
