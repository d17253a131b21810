"""The audit log's tables: queued events, events (Merkle leaves), stored tree nodes, signed checkpoints, alerts."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Enum, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime

_BigInt = BigInteger().with_variant(Integer, "sqlite")


class Outcome(str, enum.Enum):
    success = "success"
    failure = "failure"
    denied = "denied"


class Severity(str, enum.Enum):
    info = "info"
    warning = "warning"
    high = "high"


class AuditEvent(Base):
    """One security-relevant action. No PHI: files by id, size and hash only.

    `seq` is gap-free from 1 and assigned under a lock (see service.py); leaf
    `seq - 1` of the Merkle tree is this event, with `leaf_hash` =
    SHA-256(0x00 || canonical serialisation) (see canonical.py).  On PostgreSQL a
    trigger refuses UPDATE and DELETE of rows (migration 0002).
    """

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[Outcome] = mapped_column(Enum(Outcome, native_enum=False, length=8))
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=8))
    actor_user_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    actor_org_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), index=True, nullable=True)
    target_org_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditQueued(Base):
    """An event committed with its action but not yet given its place in the log (see sequencer.py).

    Every field of `AuditEvent` but the two the integrator assigns: `seq` and `leaf_hash`.
    `id` orders the queue only; it has gaps (rolled-back actions) and is never a leaf index.
    On PostgreSQL a trigger refuses UPDATE, and DELETE of a row the log does not hold yet
    (migration 0016_audit_queue).
    """

    __tablename__ = "audit_queue"
    # Ids are never reused (SQLite would reuse the largest once the queue is emptied).
    __table_args__ = ({"sqlite_autoincrement": True},)
    # `seq` below is a plain attribute, not a column: the caller's handle learns its number when integrated.
    __allow_unmapped__ = True

    id: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[Outcome] = mapped_column(Enum(Outcome, native_enum=False, length=8))
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=8))
    actor_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    actor_org_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(256), nullable=True)
    target_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    target_org_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    details: Mapped[dict] = mapped_column(JSON, default=dict)

    seq: int | None = None  # the leaf index, once this process has seen the event integrated


class AuditTreeNode(Base):
    """Root of a perfect subtree of 2**level leaves (level >= NODE_MIN_LEVEL), written at checkpoint time.

    Perfect subtrees never change once complete, so proofs for any tree size
    read O(log n) of these plus at most two small runs of leaf hashes.
    `leaf_end` = (idx + 1) * 2**level orders nodes by completion for verify.
    """

    __tablename__ = "audit_tree_nodes"

    level: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    idx: Mapped[int] = mapped_column(_BigInt, primary_key=True, autoincrement=False)
    leaf_end: Mapped[int] = mapped_column(_BigInt, index=True)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class CheckpointKind(str, enum.Enum):
    periodic = "periodic"
    on_demand = "on_demand"
    # Signed when events are pruned: the log's kept part starts after tree_size.
    prune_base = "prune_base"


class AuditCheckpoint(Base):
    """A signed C2SP checkpoint (signed note) of the tree at `tree_size`, with the frontier that continues it."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tree_size: Mapped[int] = mapped_column(_BigInt, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    kind: Mapped[CheckpointKind] = mapped_column(Enum(CheckpointKind, native_enum=False, length=16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    key_name: Mapped[str] = mapped_column(String(200))
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)
    # Compact range of [0, tree_size): [[level, hex hash], ...] largest subtree first.
    frontier: Mapped[list] = mapped_column(JSON)


class AuditAlert(Base):
    """A flag raised by an alert rule over recent events; unique per rule, subject and window."""

    __tablename__ = "audit_alerts"
    __table_args__ = (UniqueConstraint("rule", "subject", "window_key", name="uq_audit_alerts_rule_subject_window"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    window_key: Mapped[str] = mapped_column(String(64))
    severity: Mapped[Severity] = mapped_column(Enum(Severity, native_enum=False, length=8))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    summary: Mapped[str] = mapped_column(String(300))
    count: Mapped[int] = mapped_column(Integer)
    first_seq: Mapped[int] = mapped_column(_BigInt)
    last_seq: Mapped[int] = mapped_column(_BigInt)
    # The orgs involved, so a practice auditor sees only flags about their organisation.
    org_ids: Mapped[list] = mapped_column(JSON, default=list)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    delivery_error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
