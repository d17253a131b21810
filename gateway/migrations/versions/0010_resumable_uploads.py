"""resumable uploads (tus): uploads and their kept parts; sealed objects held past the in-flight window

Revision ID: 0010_resumable_uploads
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_resumable_uploads"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sealed_objects") as batch:
        batch.add_column(sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column(
            "direction", sa.Enum("outbound", "inbound", name="direction", native_enum=False, length=16), nullable=False
        ),
        sa.Column("practice_id", sa.String(length=32), nullable=False),
        sa.Column("vendor_id", sa.String(length=32), nullable=False),
        sa.Column("partner_id", sa.String(length=32), nullable=False),
        sa.Column("purpose", sa.String(length=100), nullable=False),
        sa.Column("note_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("file_id", sa.String(length=32), nullable=False),
        sa.Column("name_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("extension", sa.String(length=16), nullable=False),
        sa.Column("file_type", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.String(length=100), nullable=False),
        sa.Column("sealed_id", sa.String(length=32), nullable=False),
        sa.Column("stream_header", sa.LargeBinary(), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "open", "complete", "used", "cancelled", "expired", name="uploadstate", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("transfer_id", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_uploads_user_id_users")),
        sa.ForeignKeyConstraint(
            ["practice_id"], ["organisations.id"], name=op.f("fk_uploads_practice_id_organisations")
        ),
        sa.ForeignKeyConstraint(["vendor_id"], ["organisations.id"], name=op.f("fk_uploads_vendor_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("file_id", name=op.f("uq_uploads_file_id")),
    )
    for column in ("user_id", "practice_id", "vendor_id", "sealed_id", "state", "expires_at"):
        op.create_index(op.f(f"ix_uploads_{column}"), "uploads", [column], unique=False)
    op.create_table(
        "upload_parts",
        sa.Column("sealed_id", sa.String(length=32), nullable=False),
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("object_key", sa.String(length=64), nullable=False),
        sa.Column("first_segment", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.Column("ciphertext_size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name=op.f("fk_upload_parts_upload_id_uploads")),
        sa.PrimaryKeyConstraint("sealed_id", name=op.f("pk_upload_parts")),
    )
    op.create_index(op.f("ix_upload_parts_upload_id"), "upload_parts", ["upload_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_upload_parts_upload_id"), table_name="upload_parts")
    op.drop_table("upload_parts")
    for column in ("user_id", "practice_id", "vendor_id", "sealed_id", "state", "expires_at"):
        op.drop_index(op.f(f"ix_uploads_{column}"), table_name="uploads")
    op.drop_table("uploads")
    with op.batch_alter_table("sealed_objects") as batch:
        batch.drop_column("held_until")
