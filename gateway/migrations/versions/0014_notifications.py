"""notifications: notices and per-user cadences; outbox messages a receiver refused for good

Revision ID: 0014_notifications
Revises: 0013_upload_assembly
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_notifications"
down_revision = "0013_upload_assembly"
branch_labels = None
depends_on = None

TOPICS = ("approvals", "received", "sent", "alerts")
CADENCES = ("immediately", "daily", "off")
KINDS = (
    "approval_requested",
    "transfer_available",
    "access_expiring",
    "transfer_approved",
    "transfer_rejected",
    "transfer_revoked",
    "transfer_downloaded",
    "alert_raised",
)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("refused_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "notification_preferences",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("topic", sa.Enum(*TOPICS, name="topic", native_enum=False, length=16), nullable=False),
        sa.Column("cadence", sa.Enum(*CADENCES, name="cadence", native_enum=False, length=16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notification_preferences_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "topic", name=op.f("pk_notification_preferences")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.Enum(*KINDS, name="kind", native_enum=False, length=32), nullable=False),
        sa.Column("org_id", sa.String(length=32), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("cadence", sa.Enum(*CADENCES, name="cadence", native_enum=False, length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dedupe_key", sa.String(length=100), nullable=True),
        sa.Column("outbox_id", sa.Integer(), nullable=True),
        sa.Column("emailed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("email_error", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_notifications_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_notifications_org_id_organisations")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("user_id", "dedupe_key", name=op.f("uq_notifications_user_id")),
    )
    for column in ("user_id", "created_at", "outbox_id"):
        op.create_index(op.f(f"ix_notifications_{column}"), "notifications", [column], unique=False)


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("notification_preferences")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("refused_at")
