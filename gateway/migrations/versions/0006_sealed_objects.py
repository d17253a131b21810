"""sealed objects: one registry for every encrypted object; downloads resume from what was delivered

Moves what wave 1 kept beside each kind of object (transfer files, pending uploads,
BAA signed copies) into `sealed_objects`, without touching any stored object: the
wrapped data keys, object keys and encryption contexts are copied exactly, so every
existing object opens as before.  Then the moved columns and `pending_objects` go.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

SEGMENT_SIZE = 1 << 20  # every wave-1 object was written with the default segment size
HEADER_SIZE, TAG_SIZE = 81, 16

sealed = sa.table(
    "sealed_objects",
    sa.column("id", sa.String),
    sa.column("kind", sa.String),
    sa.column("owner_id", sa.String),
    sa.column("practice_id", sa.String),
    sa.column("vendor_id", sa.String),
    sa.column("key_id", sa.String),
    sa.column("key_generation", sa.Integer),
    sa.column("key_version", sa.Integer),
    sa.column("context", sa.JSON(none_as_null=True)),
    sa.column("wrapped_dek", sa.LargeBinary),
    sa.column("object_key", sa.String),
    sa.column("storage_location", sa.String),
    sa.column("plaintext_size", sa.BigInteger),
    sa.column("sha256", sa.String),
    sa.column("ciphertext_size", sa.BigInteger),
    sa.column("state", sa.String),
    # Times are copied as the database returned them (untyped): exactly the stored value on both dialects.
    sa.column("created_at"),
    sa.column("stored_at"),
    sa.column("destroying_at"),
    sa.column("destroyed_at"),
)


def _new_id() -> str:
    return secrets.token_hex(16)


def _key_version(wrapped: bytes | None) -> int | None:
    """The KEK version inside a wrapped DEK (crypto.WrappedKey format 1), read without importing the app."""
    if not wrapped:
        return None
    from crypto import WrappedKey

    return WrappedKey.from_bytes(bytes(wrapped)).key_version


def _generation(key_id: str | None) -> int:
    if key_id and key_id.startswith("rel-") and "-g" in key_id[4:]:
        tail = key_id.rsplit("-g", 1)[1]
        return int(tail) if tail.isdigit() else 0
    return 0


def _ciphertext_size(plaintext: int) -> int:
    segments = max(1, -(-plaintext // SEGMENT_SIZE))
    return HEADER_SIZE + plaintext + segments * TAG_SIZE


def upgrade() -> None:
    op.create_table(
        "sealed_objects",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("transfer_file", "baa_copy", name="sealedkind", native_enum=False, length=24),
            nullable=False,
        ),
        sa.Column("owner_id", sa.String(length=32), nullable=True),
        sa.Column("practice_id", sa.String(length=32), nullable=True),
        sa.Column("vendor_id", sa.String(length=32), nullable=True),
        sa.Column("key_id", sa.String(length=100), nullable=True),
        sa.Column("key_generation", sa.Integer(), nullable=False),
        sa.Column("key_version", sa.Integer(), nullable=True),
        sa.Column("context", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True),
        sa.Column("object_key", sa.String(length=64), nullable=False),
        sa.Column("storage_location", sa.String(length=200), nullable=True),
        sa.Column("plaintext_size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=True),
        sa.Column(
            "state",
            sa.Enum("pending", "stored", "destroying", "destroyed", name="sealedstate", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroying_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("destroyed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["organisations.id"], name=op.f("fk_sealed_objects_practice_id_organisations")
        ),
        sa.ForeignKeyConstraint(
            ["vendor_id"], ["organisations.id"], name=op.f("fk_sealed_objects_vendor_id_organisations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sealed_objects")),
        sa.UniqueConstraint("object_key", name=op.f("uq_sealed_objects_object_key")),
    )
    with op.batch_alter_table("sealed_objects", schema=None) as batch_op:
        for column in ("kind", "owner_id", "practice_id", "vendor_id", "key_id", "state"):
            batch_op.create_index(batch_op.f(f"ix_sealed_objects_{column}"), [column], unique=False)

    bind = op.get_bind()
    _move_transfer_files(bind)
    _move_pending(bind)
    _move_baa_copies(bind)

    with op.batch_alter_table("transfer_files", schema=None) as batch_op:
        batch_op.drop_constraint("uq_transfer_files_object_key", type_="unique")
        for column in ("object_key", "storage_location", "ciphertext_size", "wrapped_dek"):
            batch_op.drop_column(column)
    with op.batch_alter_table("baas", schema=None) as batch_op:
        for column in ("copy_object_key", "copy_key_id", "copy_wrapped_dek"):
            batch_op.drop_column(column)
    op.drop_table("pending_objects")

    # A download is now one reservation that later requests resume from what was delivered.
    with op.batch_alter_table("downloads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivered_to", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("resumptions", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("active_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE downloads SET delivered_to = CASE WHEN outcome = 'completed' THEN range_end "
        "ELSE range_start + bytes_sent END, active_at = started_at"
    )


def _insert(bind, rows: list[dict]) -> None:
    if rows:
        bind.execute(sealed.insert(), rows)


def _move_transfer_files(bind) -> None:
    destroying = dict(bind.execute(sa.text("SELECT file_id, started_at FROM destruction_records")).all())
    result = bind.execute(
        sa.text(
            "SELECT f.id, f.transfer_id, f.object_key, f.storage_location, f.size, f.ciphertext_size, f.sha256, "
            "f.wrapped_dek, f.state, f.created_at, f.destroyed_at, t.practice_id, t.vendor_id, t.key_id "
            "FROM transfer_files f JOIN transfers t ON t.id = f.transfer_id ORDER BY f.id"
        )
    )
    batch = []
    for f in result.mappings():
        state = {"stored": "stored", "destroying": "destroying"}.get(f["state"], "destroyed")
        batch.append(
            {
                "id": _new_id(),
                "kind": "transfer_file",
                "owner_id": f["id"],
                "practice_id": f["practice_id"],
                "vendor_id": f["vendor_id"],
                "key_id": f["key_id"],
                "key_generation": _generation(f["key_id"]),
                "key_version": _key_version(f["wrapped_dek"]),
                # Exactly the context wave 1 bound into the object (gateway/transfers/upload.py file_context).
                "context": {
                    "practice": f["practice_id"],
                    "vendor": f["vendor_id"],
                    "transfer": f["transfer_id"],
                    "file": f["id"],
                },
                "wrapped_dek": f["wrapped_dek"],
                "object_key": f["object_key"],
                "storage_location": f["storage_location"],
                "plaintext_size": f["size"],
                "sha256": f["sha256"],
                "ciphertext_size": f["ciphertext_size"],
                "state": state,
                "created_at": f["created_at"],
                "stored_at": f["created_at"],
                "destroying_at": destroying.get(f["id"]) if state != "stored" else None,
                "destroyed_at": f["destroyed_at"],
            }
        )
        if len(batch) >= 500:
            _insert(bind, batch)
            batch = []
    _insert(bind, batch)


def _move_pending(bind) -> None:
    rows = []
    for p in bind.execute(
        sa.text("SELECT object_key, storage_location, created_at, reason FROM pending_objects")
    ).mappings():
        rows.append(
            {
                "id": _new_id(),
                "kind": "baa_copy" if p["reason"] == "baa-copy" else "transfer_file",
                "owner_id": None,
                "practice_id": None,
                "vendor_id": None,
                "key_id": None,
                "key_generation": 0,
                "key_version": None,
                "context": None,
                "wrapped_dek": None,
                "object_key": p["object_key"],
                "storage_location": p["storage_location"],
                "plaintext_size": None,
                "sha256": None,
                "ciphertext_size": None,
                "state": "pending",
                "created_at": p["created_at"],
                "stored_at": None,
                "destroying_at": None,
                "destroyed_at": None,
            }
        )
    _insert(bind, rows)


def _move_baa_copies(bind) -> None:
    # Wave 1 did not record where a BAA copy was stored; it went to the gateway's one store, which
    # every transfer file and pending object names.  With no such row the location stays unknown
    # (NULL: "the configured store").
    locations = {
        row[0]
        for row in bind.execute(
            sa.text(
                "SELECT DISTINCT storage_location FROM transfer_files UNION SELECT DISTINCT storage_location "
                "FROM pending_objects"
            )
        ).all()
    }
    location = locations.pop() if len(locations) == 1 else None
    rows = []
    for b in bind.execute(
        sa.text(
            "SELECT id, practice_id, vendor_id, copy_object_key, copy_key_id, copy_wrapped_dek, copy_size, "
            "copy_sha256, copy_uploaded_at FROM baas WHERE copy_object_key IS NOT NULL"
        )
    ).mappings():
        rows.append(
            {
                "id": _new_id(),
                "kind": "baa_copy",
                "owner_id": b["id"],
                "practice_id": b["practice_id"],
                "vendor_id": b["vendor_id"],
                "key_id": b["copy_key_id"],
                "key_generation": 0,
                "key_version": _key_version(b["copy_wrapped_dek"]),
                # Exactly the context wave 1 bound into the copy (gateway/baas/copies.py _context).
                "context": {"purpose": "baa-signed-copy", "baa": b["id"], "practice": b["practice_id"]},
                "wrapped_dek": b["copy_wrapped_dek"],
                "object_key": b["copy_object_key"],
                "storage_location": location,
                "plaintext_size": b["copy_size"],
                "sha256": b["copy_sha256"],
                "ciphertext_size": _ciphertext_size(b["copy_size"]) if b["copy_size"] is not None else None,
                "state": "stored",
                "created_at": b["copy_uploaded_at"],
                "stored_at": b["copy_uploaded_at"],
                "destroying_at": None,
                "destroyed_at": None,
            }
        )
    _insert(bind, rows)


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("downloads", schema=None) as batch_op:
        batch_op.drop_column("active_at")
        batch_op.drop_column("resumptions")
        batch_op.drop_column("delivered_to")
    op.create_table(
        "pending_objects",
        sa.Column("object_key", sa.String(length=64), nullable=False),
        sa.Column("storage_location", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("object_key", name=op.f("pk_pending_objects")),
    )
    with op.batch_alter_table("baas", schema=None) as batch_op:
        batch_op.add_column(sa.Column("copy_object_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("copy_key_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("copy_wrapped_dek", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("transfer_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("object_key", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("storage_location", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("ciphertext_size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("wrapped_dek", sa.LargeBinary(), nullable=True))
    for s in bind.execute(sa.select(sealed)).mappings():
        if s["state"] == "pending":
            bind.execute(
                sa.text(
                    "INSERT INTO pending_objects (object_key, storage_location, created_at, reason) "
                    "VALUES (:k, :l, :c, :r)"
                ),
                {
                    "k": s["object_key"],
                    "l": s["storage_location"] or "",
                    "c": s["created_at"],
                    "r": "baa-copy" if s["kind"] == "baa_copy" else "upload",
                },
            )
        elif s["kind"] == "transfer_file":
            bind.execute(
                sa.text(
                    "UPDATE transfer_files SET object_key = :k, storage_location = :l, "
                    "ciphertext_size = :cs, wrapped_dek = :w WHERE id = :id"
                ),
                {
                    "k": s["object_key"],
                    "l": s["storage_location"] or "",
                    "cs": s["ciphertext_size"] or 0,
                    "w": s["wrapped_dek"],
                    "id": s["owner_id"],
                },
            )
        elif s["state"] == "stored":
            bind.execute(
                sa.text(
                    "UPDATE baas SET copy_object_key = :k, copy_key_id = :key, copy_wrapped_dek = :w WHERE id = :id"
                ),
                {"k": s["object_key"], "key": s["key_id"], "w": s["wrapped_dek"], "id": s["owner_id"]},
            )
    with op.batch_alter_table("transfer_files", schema=None) as batch_op:
        for column, type_ in (
            ("object_key", sa.String(length=64)),
            ("storage_location", sa.String(length=200)),
            ("ciphertext_size", sa.BigInteger()),
        ):
            batch_op.alter_column(column, existing_type=type_, nullable=False)
        batch_op.create_unique_constraint("uq_transfer_files_object_key", ["object_key"])
    with op.batch_alter_table("sealed_objects", schema=None) as batch_op:
        for column in ("kind", "owner_id", "practice_id", "vendor_id", "key_id", "state"):
            batch_op.drop_index(batch_op.f(f"ix_sealed_objects_{column}"))
    op.drop_table("sealed_objects")
