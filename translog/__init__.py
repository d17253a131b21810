"""A transparency log: RFC 9162 Merkle tree and proofs, C2SP signed checkpoints, the leaf form, exports.

This package imports nothing of the gateway's: the signing key comes in as a
`Signer`, verifying keys as PEM, raw bytes or key objects, and leaves and records
as iterables.  What an auditor's own tool (or `phigate audit verify-export`) needs
is here; the gateway stores the tree and feeds it.
"""

from translog.export import FORMAT as EXPORT_FORMAT
from translog.export import ExportReport, verify_export
from translog.jcs import NotCanonicalisable, canonical
from translog.keys import InvalidKey, PublicKey, Signer, fingerprint, load_public_key, verify_signature
from translog.leaf import FIELDS as LEAF_FIELDS
from translog.leaf import VERSION as LEAF_VERSION
from translog.leaf import format_time, leaf_hash_of, record_leaf_hash
from translog.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_path,
    inclusion_path,
    node_hash,
    root_from_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from translog.note import Checkpoint, NoteError, parse_verifier_key, verifier_key
from translog.note import sign as sign_checkpoint
from translog.note import verify as verify_checkpoint

__all__ = [
    "EMPTY_ROOT",
    "EXPORT_FORMAT",
    "LEAF_FIELDS",
    "LEAF_VERSION",
    "Checkpoint",
    "ExportReport",
    "Frontier",
    "InvalidKey",
    "NotCanonicalisable",
    "NoteError",
    "PublicKey",
    "Signer",
    "canonical",
    "consistency_path",
    "fingerprint",
    "format_time",
    "inclusion_path",
    "leaf_hash_of",
    "load_public_key",
    "node_hash",
    "parse_verifier_key",
    "record_leaf_hash",
    "root_from_inclusion",
    "root_of",
    "sign_checkpoint",
    "verifier_key",
    "verify_checkpoint",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_signature",
]
