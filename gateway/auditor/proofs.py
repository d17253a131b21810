"""Inclusion and consistency proofs (RFC 9162 2.1.3 and 2.1.4) against signed checkpoints."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.audit.checkpoint import checkpoint_for, latest_checkpoint
from gateway.audit.models import AuditCheckpoint
from gateway.audit.tree import PrunedRange, TreeReader
from gateway.auditor.search import Scope, get_event
from gateway.errors import Conflict, InvalidInput, NotFound
from translog import merkle


def _checkpoint_at(db: Session, size: int | None) -> AuditCheckpoint:
    if size is None:
        cp = latest_checkpoint(db)
    else:
        cp = db.scalar(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.tree_size == size)
            .order_by(AuditCheckpoint.id.desc())
            .limit(1)
        )
    if cp is None:
        raise NotFound("No signed checkpoint of that size.", code="checkpoint_not_found")
    return cp


def inclusion_proof(db: Session, scope: Scope, seq: int, tree_size: int | None = None) -> dict:
    """Proof that event `seq` is leaf seq-1 of the tree signed at `tree_size` (default: the latest checkpoint)."""
    event = get_event(db, scope, seq)
    cp = _checkpoint_at(db, tree_size)
    if seq > cp.tree_size:
        raise Conflict("The event is newer than that checkpoint; ask for a checkpoint first.", code="not_yet_signed")
    reader = TreeReader(db, cp.tree_size)
    path = merkle.inclusion_path(seq - 1, cp.tree_size, reader.subtree)
    return {
        "seq": seq,
        "leaf_index": seq - 1,
        "tree_size": cp.tree_size,
        "leaf_hash": event.leaf_hash.hex(),
        "inclusion_path": [h.hex() for h in path],
        "root_hash": cp.root_hash.hex(),
        "checkpoint": cp.note,
    }


def consistency_proof(db: Session, first: int, second: int | None = None) -> dict:
    """Proof that the tree of `second` leaves (default: latest checkpoint) extends the tree of `first` leaves."""
    cp2 = _checkpoint_at(db, second)
    if not 0 < first <= cp2.tree_size:
        raise InvalidInput("first must be between 1 and the second tree size.", code="invalid_input")
    reader = TreeReader(db, cp2.tree_size)
    try:
        path = merkle.consistency_path(first, cp2.tree_size, reader.subtree)
        first_root = reader.subtree(0, first)
    except PrunedRange:
        raise Conflict("Events this proof needs were pruned by retention.", code="pruned") from None
    cp1 = checkpoint_for(db, first)
    return {
        "first": first,
        "second": cp2.tree_size,
        "consistency_path": [h.hex() for h in path],
        "first_root_hash": first_root.hex(),
        "second_root_hash": cp2.root_hash.hex(),
        "first_checkpoint": cp1.note if cp1 is not None and cp1.tree_size == first else None,
        "second_checkpoint": cp2.note,
    }
