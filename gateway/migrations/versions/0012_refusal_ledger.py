"""refusal ledger: the address window also counts unrecorded refusals and 429s

Revision ID: 0012
Revises: 0010_resumable_uploads
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0010_resumable_uploads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("address_throttles") as batch:
        batch.add_column(sa.Column("unrecorded", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("refused", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("address_throttles") as batch:
        batch.drop_column("refused")
        batch.drop_column("unrecorded")
