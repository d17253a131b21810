"""org timezone: each organisation's time zone and sign-in hours (unset: the operator's)

Revision ID: 0015_org_timezone
Revises: 0014_notifications
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_org_timezone"
down_revision = "0014_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("signin_hours", sa.String(length=5), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organisations") as batch:
        batch.drop_column("signin_hours")
        batch.drop_column("timezone")
