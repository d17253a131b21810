"""audit: TRUNCATE refused on the log's tables; the outbox that alerts leave through

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

* PostgreSQL: migration 0002 refuses UPDATE and DELETE of the log's rows with
  row-level triggers, but TRUNCATE fires no row trigger.  A statement-level
  BEFORE TRUNCATE trigger on each of the three tables refuses it the same way
  (whoever runs it, the owner included, unless they first disable the trigger,
  which only the owner or a superuser can: see docs/operations.md for the
  privileges to grant the gateway's own role).
* The `outbox` table: messages (alerts) committed with the action that caused
  them and delivered right after.  Flags raised before this revision and never
  delivered get their message, so the retry job sends them.
"""

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TABLES = ("audit_events", "audit_checkpoints", "audit_tree_nodes")

_PG_UP = [
    """
    CREATE FUNCTION phigate_audit_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only: TRUNCATE refused', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    *(
        f"CREATE TRIGGER {t}_no_truncate BEFORE TRUNCATE ON {t} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION phigate_audit_no_truncate()"
        for t in _TABLES
    ),
]
_PG_DOWN = [
    *(f"DROP TRIGGER IF EXISTS {t}_no_truncate ON {t}" for t in _TABLES),
    "DROP FUNCTION IF EXISTS phigate_audit_no_truncate()",
]


def _payload(row) -> dict:
    """The alert's message, as gateway.auditor.alerts.alert_payload() builds it."""
    raised = row["raised_at"]
    if isinstance(raised, str):
        raised = datetime.fromisoformat(raised)
    if raised.tzinfo is None:
        raised = raised.replace(tzinfo=UTC)
    org_ids = row["org_ids"]
    if isinstance(org_ids, str):
        org_ids = json.loads(org_ids)
    return {
        "id": row["id"],
        "rule": row["rule"],
        "severity": row["severity"],
        "subject": row["subject"],
        "summary": row["summary"],
        "count": row["count"],
        "first_seq": row["first_seq"],
        "last_seq": row["last_seq"],
        "org_ids": org_ids or [],
        "raised_at": raised.astimezone(UTC).isoformat(),
        "source": "phigate",
    }


def upgrade() -> None:
    bind = op.get_bind()
    outbox = op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_topic"), ["topic"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbox_delivered_at"), ["delivered_at"], unique=False)

    alerts = sa.table(
        "audit_alerts",
        *(
            sa.column(c)
            for c in (
                "id",
                "rule",
                "severity",
                "subject",
                "summary",
                "count",
                "first_seq",
                "last_seq",
                "org_ids",
                "raised_at",
                "delivered_at",
            )
        ),
    )
    now = datetime.now(UTC)
    rows = bind.execute(sa.select(alerts).where(alerts.c.delivered_at.is_(None)).order_by(alerts.c.id)).mappings()
    pending = [{"topic": "audit.alert", "payload": _payload(row), "created_at": now, "attempts": 0} for row in rows]
    if pending:
        op.bulk_insert(outbox, pending)

    if bind.dialect.name == "postgresql":
        for statement in _PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DOWN:
            op.execute(statement)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_delivered_at"))
        batch_op.drop_index(batch_op.f("ix_outbox_topic"))
    op.drop_table("outbox")
