"""resumable uploads write into the object itself: the store's assembly token, a writer lease, its parts

Revision ID: 0013_upload_assembly
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_upload_assembly"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("assembly", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("writer", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("writer_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "upload_assembly_parts",
        sa.Column("upload_id", sa.String(length=32), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("checksum", sa.String(length=80), nullable=True),
        sa.Column("etag", sa.String(length=200), nullable=True),
        sa.Column("first_segment", sa.Integer(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), nullable=False),
        sa.Column("end", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["upload_id"], ["uploads.id"], name=op.f("fk_upload_assembly_parts_upload_id_uploads")),
        sa.PrimaryKeyConstraint("upload_id", "number", name=op.f("pk_upload_assembly_parts")),
    )


def downgrade() -> None:
    op.drop_table("upload_assembly_parts")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("writer_until")
        batch.drop_column("writer")
        batch.drop_column("assembly")
