"""Tables of retention and offboarding: policies, legal holds, destruction jobs, per-object
records, certificates, and the runner lock.

A `DestructionJob` covers one scope: one practice-vendor pair.  Each object it
destroys gets one `DestructionRecord` (unique per file: an object is destroyed
exactly once, whatever crashes and reruns happen), which carries the evidence
copied onto the certificate.  A finished job has exactly one `Certificate`.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, Enum, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class RetentionPolicy(Base):
    """A practice's policy (vendor_id NULL) or its override for one vendor."""

    __tablename__ = "retention_policies"
    __table_args__ = (UniqueConstraint("practice_id", "vendor_id", name="uq_retention_policies_pair"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), nullable=True)
    # Days ciphertext is kept after the access window ends, or the transfer is rejected or revoked.
    keep_days: Mapped[int] = mapped_column(Integer)
    # The longest access window an approver may grant (None: the gateway's setting).
    max_access_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(32), nullable=True)


class HoldScope(str, enum.Enum):
    transfer = "transfer"
    vendor = "vendor"
    practice = "practice"


class LegalHold(Base):
    """Suspends destruction of everything in its scope until released."""

    __tablename__ = "legal_holds"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope: Mapped[HoldScope] = mapped_column(Enum(HoldScope, native_enum=False, length=16))
    target_id: Mapped[str] = mapped_column(String(32), index=True)
    # A matter or case number; documented as "no PHI here" (like a transfer's purpose).
    reference: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    released_by: Mapped[str | None] = mapped_column(String(32), nullable=True)

    @property
    def active(self) -> bool:
        return self.released_at is None


class JobKind(str, enum.Enum):
    retention = "retention"
    offboarding = "offboarding"


class JobStatus(str, enum.Enum):
    running = "running"
    complete = "complete"


class DestructionJob(Base):
    """One destruction run over one practice-vendor scope; resumable until complete."""

    __tablename__ = "destruction_jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, length=16))
    status: Mapped[JobStatus] = mapped_column(Enum(JobStatus, native_enum=False, length=16), index=True)
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    reason: Mapped[str] = mapped_column(String(500))
    baa_references: Mapped[list] = mapped_column(JSON, default=list)
    operator: Mapped[dict] = mapped_column(JSON, default=dict)
    # Offboarding: destroy the files the vendor sent back too (the administrator's choice).
    include_returned: Mapped[bool] = mapped_column(Boolean, default=False)
    # Offboarding: the relationship KEK's destruction evidence, or why it was kept.
    key_evidence: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # Holds that kept objects of this scope: [{"hold_id", "scope", "objects"}].
    held: Mapped[list] = mapped_column(JSON, default=list)
    supplements: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Retention: files whose window ended (or which were rejected or revoked) before this are due.
    cutoff: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class DestructionRecord(Base):
    """The evidence for one destroyed object; one row per file, ever."""

    __tablename__ = "destruction_records"

    file_id: Mapped[str] = mapped_column(ForeignKey("transfer_files.id"), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("destruction_jobs.id"), index=True)
    transfer_id: Mapped[str] = mapped_column(String(32), index=True)
    object_key: Mapped[str] = mapped_column(String(64))
    storage_location: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Last step done: destroying -> storage_destroyed -> crypto_shredded -> destroyed.
    step: Mapped[str] = mapped_column(String(24))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    storage: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    crypto_shred_only: Mapped[bool] = mapped_column(Boolean, default=False)


class Certificate(Base):
    """A signed destruction certificate: the canonical JSON document as issued."""

    __tablename__ = "destruction_certificates"
    __table_args__ = (UniqueConstraint("job_id", name="uq_destruction_certificates_job_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("destruction_jobs.id"))
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, length=16))
    practice_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    objects: Mapped[int] = mapped_column(Integer)
    crypto_shred_only: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    key_fingerprint: Mapped[str] = mapped_column(String(64))
    document: Mapped[bytes] = mapped_column(LargeBinary)


class RunnerLock(Base):
    """A named lease: only one destruction runner works at a time, across replicas."""

    __tablename__ = "runner_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    lease_until: Mapped[datetime] = mapped_column(UTCDateTime())
