"""baa signed copy: an encrypted PDF per BAA

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = (
    ("copy_object_key", sa.String(length=64)),
    ("copy_key_id", sa.String(length=100)),
    ("copy_wrapped_dek", sa.LargeBinary()),
    ("copy_size", sa.BigInteger()),
    ("copy_sha256", sa.String(length=64)),
    ("copy_uploaded_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("baas", schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("baas", schema=None) as batch_op:
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
