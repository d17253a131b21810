"""The registry of sealed objects: one row for every encrypted object the gateway stores.

A row is written (state `pending`) before the first byte of its object goes to
storage, so a crash can never leave an object nothing can find.  It records what
the object is (`kind`, `owner_id`), whose it is (practice and vendor), which key
seals it (key id, relationship generation, KEK version of the wrapped DEK), the
exact encryption context bound into every segment, where it lives, its sizes and
digest, and its state with times.  fsck, rewrap, retention and offboarding walk
this table, so a new kind of object cannot be forgotten by one of them.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Enum, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class SealedKind(str, enum.Enum):
    # A file of a transfer; owner_id is the file id.
    transfer_file = "transfer_file"
    # The signed copy of a BAA; owner_id is the BAA id (a replaced copy is destroyed).
    baa_copy = "baa_copy"
    # A resumable upload (gateway/uploads); owner_id is the upload id. Pending while bytes
    # arrive (held until the upload expires), stored once assembled; it becomes a
    # transfer_file (owner: the file id) when a transfer is made of it.
    upload = "upload"
    # A piece of an unfinished upload's ciphertext; owner_id is the upload id. Always
    # pending (held until the upload expires); destroyed when the upload is assembled.
    upload_part = "upload_part"


class SealedState(str, enum.Enum):
    pending = "pending"  # being written, or left by a crash: fsck clears it after the in-flight window
    stored = "stored"  # in use: nothing may destroy it
    destroying = "destroying"  # destruction decided and under way: no read may start
    destroyed = "destroyed"  # every stored version gone (or Object Lock kept it) and the DEK erased


class SealedObject(Base):
    __tablename__ = "sealed_objects"
    __table_args__ = (UniqueConstraint("object_key"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[SealedKind] = mapped_column(Enum(SealedKind, native_enum=False, length=24), index=True)
    # Wave-1 pending rows (crashed uploads) carried no owner, practice, key or context;
    # every row written since has them.
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True, nullable=True)
    practice_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True, nullable=True)
    vendor_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True, nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(100), index=True, nullable=True)
    # The relationship key's generation (`rel-...-gN`: N; 0 for the first and for practice keys).
    key_generation: Mapped[int] = mapped_column(Integer, default=0)
    # The KEK version that wraps `wrapped_dek`; kept equal to it by every write, so rotation
    # can count what still depends on an old version without parsing blobs.
    key_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Bound into every segment's AAD and into the DEK wrapping: the object opens only with it.
    context: Mapped[dict | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # Erased when the object is destroyed (crypto-shredding).
    wrapped_dek: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    object_key: Mapped[str] = mapped_column(String(64))
    # The store's location id; NULL only for a wave-1 BAA copy, which was kept in the configured store.
    storage_location: Mapped[str | None] = mapped_column(String(200), nullable=True)
    plaintext_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ciphertext_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A pending object kept past the in-flight window (an unfinished resumable upload):
    # fsck leaves it alone until this time, then destroys it like any stale pending object.
    held_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    state: Mapped[SealedState] = mapped_column(Enum(SealedState, native_enum=False, length=16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stored_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    destroying_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
