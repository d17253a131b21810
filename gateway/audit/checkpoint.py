"""Signed checkpoints: extend the tree incrementally, sign it, prune old events.

A checkpoint starts from the previous checkpoint's frontier (the compact range
of the tree it signed, stored with it), hashes only the leaves appended since,
stores the roots of newly completed perfect subtrees (for proofs), and signs
the new root with the onshore Ed25519 key in the C2SP checkpoint format.  It
first recomputes each new leaf from the event's fields and refuses to sign a
log whose rows do not match their leaf hashes.

Pruning (retention) signs a `prune_base` checkpoint at a bucket boundary S,
proves it is a prefix of the latest signed checkpoint, and only then deletes
events 1..S; verification then starts from that checkpoint's frontier.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, Table, func, insert, select, text
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode, CheckpointKind, Severity
from gateway.audit.sequencer import integrate
from gateway.audit.service import Actor, record_event
from gateway.audit.tree import (
    BUCKET,
    NODE_MIN_LEVEL,
    LogBroken,
    TreeReader,
    checked_chunks,
    prune_base,
    tree_size,
)
from gateway.config import Settings
from translog import merkle, note

log = logging.getLogger("phigate.audit")

CHECKPOINT_LOCK_KEY = 0x5048_4741_4350_4E54 & 0x7FFF_FFFF_FFFF_FFFF


def origin(settings: Settings) -> str:
    return settings.audit_log_origin or f"phigate/{settings.instance_id}/audit"


def get_signer(components):
    """The onshore Ed25519 signing key (crypto.Signer), loaded once per Components."""
    signer = getattr(components, "_audit_signer", None)
    if signer is None:
        from crypto import Signer

        signer = Signer.load_or_create(components.keys)
        components._audit_signer = signer
    return signer


def latest_checkpoint(db: Session, kind: CheckpointKind | None = None) -> AuditCheckpoint | None:
    query = select(AuditCheckpoint).order_by(AuditCheckpoint.tree_size.desc(), AuditCheckpoint.id.desc()).limit(1)
    if kind is not None:
        query = query.where(AuditCheckpoint.kind == kind)
    return db.scalar(query)


def signed_checkpoint(db: Session) -> AuditCheckpoint:
    """The latest checkpoint, where the caller has just made sure one is signed."""
    cp = latest_checkpoint(db)
    if cp is None:
        raise LogBroken("the audit log has no signed checkpoint")
    return cp


def checkpoint_for(db: Session, size: int) -> AuditCheckpoint | None:
    """The smallest checkpoint covering a tree of `size` leaves."""
    return db.scalar(
        select(AuditCheckpoint)
        .where(AuditCheckpoint.tree_size >= size)
        .order_by(AuditCheckpoint.tree_size, AuditCheckpoint.id)
        .limit(1)
    )


def _lock(db: Session) -> None:
    if db.get_bind().dialect.name == "postgresql":
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHECKPOINT_LOCK_KEY})


def _trusted_frontier(cp: AuditCheckpoint, signer, name: str) -> merkle.Frontier:
    """The stored frontier of a checkpoint, after checking it against the checkpoint's signature."""
    try:
        signed = note.verify(cp.note, signer.public_key(), name)
    except note.NoteError:
        raise LogBroken(f"checkpoint {cp.id} (tree size {cp.tree_size}) has no valid signature") from None
    frontier = merkle.Frontier.from_json(cp.tree_size, cp.frontier)
    if signed.tree_size != cp.tree_size or frontier.root() != signed.root_hash:
        raise LogBroken(
            f"checkpoint {cp.id} (tree size {cp.tree_size}): stored frontier does not match its signed root"
        )
    return frontier


def _store_nodes(db: Session, nodes: list[tuple[int, int, bytes]]) -> None:
    if nodes:
        db.execute(
            insert(AuditTreeNode),
            [{"level": lv, "idx": idx, "leaf_end": (idx + 1) << lv, "hash": h} for lv, idx, h in nodes],
        )
        nodes.clear()


def create_checkpoint(
    db: Session, signer, settings: Settings, kind: CheckpointKind = CheckpointKind.on_demand, *, force: bool = False
) -> AuditCheckpoint | None:
    """Sign the current tree (the integrated events) in the caller's transaction; None when it did not grow."""
    _lock(db)
    name = origin(settings)
    size = tree_size(db)
    last = latest_checkpoint(db)
    if last is not None and last.tree_size == size and not force:
        return None
    if last is not None and last.tree_size > size:
        raise LogBroken(f"the newest checkpoint covers {last.tree_size} events but the log holds {size}", seq=size + 1)
    frontier = _trusted_frontier(last, signer, name) if last else merkle.Frontier()
    pending: list[tuple[int, int, bytes]] = []
    frontier.on_node = lambda lv, idx, h: pending.append((lv, idx, h))
    frontier.min_level = NODE_MIN_LEVEL
    for leaves, bad in checked_chunks(db.connection(), frontier.size, size, 10_000):
        frontier.extend(leaves)
        if bad is not None:
            expected = frontier.size + 1
            if bad[0] != expected:
                raise LogBroken(f"event {expected} is missing", seq=expected)
            raise LogBroken(f"event {bad[0]} does not match its leaf hash", seq=bad[0])
        if len(pending) >= 1000:
            _store_nodes(db, pending)
    if frontier.size != size:
        raise LogBroken(f"event {frontier.size + 1} is missing", seq=frontier.size + 1)
    _store_nodes(db, pending)
    root = frontier.root()
    cp = AuditCheckpoint(
        tree_size=size,
        root_hash=root,
        kind=kind,
        created_at=clock.now(),
        key_name=name,
        key_fingerprint=signer.fingerprint(),
        note=note.sign(name, size, root, signer),
        frontier=frontier.to_json(),
    )
    db.add(cp)
    db.flush()
    log.info("audit checkpoint %s: tree size %d", cp.id, size)
    return cp


def maybe_checkpoint(components, *, force: bool = False, now: datetime | None = None) -> AuditCheckpoint | None:
    """Sign a checkpoint when the interval has passed and the log grew (or when forced); commits.

    Queued events are integrated first, in a transaction of their own, so the checkpoint covers every
    event committed before it started and integration never waits for the tree to be built.
    """
    settings = components.settings
    now = now or clock.now()
    integrate(components.db)
    with components.db.transaction() as db:
        last = latest_checkpoint(db)
        interval = timedelta(seconds=settings.audit_checkpoint_interval_seconds)
        if not force and last is not None and last.created_at + interval > now:
            return None
        kind = CheckpointKind.on_demand if force else CheckpointKind.periodic
        return create_checkpoint(db, get_signer(components), settings, kind)


def prune(components, actor: Actor, *, now: datetime | None = None) -> int:
    """Delete events older than the retention period behind a signed prune checkpoint; returns the new base."""
    settings = components.settings
    now = now or clock.now()
    cutoff = now - timedelta(days=round(365.25 * settings.audit_retention_years))
    signer = get_signer(components)
    maybe_checkpoint(components, force=True)
    with components.db.transaction() as db:
        _lock(db)
        size = tree_size(db)
        first_young = db.scalar(select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= cutoff))
        # Keep the newest event always; cut at a bucket boundary so proofs for kept
        # events never need a pruned leaf.
        base = min(first_young - 1 if first_young else size, size - 1)
        base -= base % BUCKET
        old_base = prune_base(db)
        if base <= old_base:
            return old_base
        latest = signed_checkpoint(db)
        reader = TreeReader(db, latest.tree_size)
        prefix = merkle.Frontier(
            base, [((e - s).bit_length() - 1, reader.subtree(s, e)) for s, e in merkle.frontier_ranges(base)]
        )
        root = prefix.root()
        proof = merkle.consistency_path(base, latest.tree_size, reader.subtree)
        # Sign the base only if it provably is a prefix of the log we signed before.
        if not merkle.verify_consistency(base, latest.tree_size, root, latest.root_hash, proof):
            raise LogBroken("the events to prune are not consistent with the latest checkpoint")
        name = origin(settings)
        db.add(
            AuditCheckpoint(
                tree_size=base,
                root_hash=root,
                kind=CheckpointKind.prune_base,
                created_at=now,
                key_name=name,
                key_fingerprint=signer.fingerprint(),
                note=note.sign(name, base, root, signer),
                frontier=prefix.to_json(),
            )
        )
        db.flush()
        if db.get_bind().dialect.name == "postgresql":
            # The append-only trigger lets a DELETE through only inside this transaction
            # and only below the prune checkpoint just written.
            db.execute(text("SET LOCAL phigate.audit_prune = 'on'"))
        events = cast(Table, AuditEvent.__table__)
        deleted = cast(CursorResult, db.execute(events.delete().where(AuditEvent.seq <= base))).rowcount
        if db.get_bind().dialect.name == "postgresql":
            db.execute(text("SET LOCAL phigate.audit_prune = 'off'"))
        record_event(
            db,
            Action.AUDIT_LOG_PRUNED,
            actor=actor,
            severity=Severity.warning,
            details={
                "pruned_through_seq": base,
                "events_deleted": deleted,
                "cutoff": cutoff.date().isoformat(),
                "retention_years": settings.audit_retention_years,
            },
        )
    return base
