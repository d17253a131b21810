"""audit queue: events commit with their action into a queue; one integrator gives them their place in the log

Revision ID: 0016_audit_queue
Revises: 0015_org_timezone
Create Date: 2026-12-01

* `audit_queue`: every field of an event but `seq` and `leaf_hash`, with an
  autoincrement id that only orders the queue (gateway/audit/sequencer.py).
* PostgreSQL: like the log's own tables, the queue refuses UPDATE and TRUNCATE,
  and a DELETE only goes through for a row the log already holds (the integrator
  inserts the event, then deletes its queue row, in one transaction): an event
  cannot leave the queue except into the log.
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_audit_queue"
down_revision = "0015_org_timezone"
branch_labels = None
depends_on = None

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PG_UP = [
    """
    CREATE FUNCTION phigate_audit_queue_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_events e
        WHERE e.occurred_at = OLD.occurred_at AND e.action = OLD.action
          AND e.outcome = OLD.outcome AND e.severity = OLD.severity
          AND e.actor_user_id IS NOT DISTINCT FROM OLD.actor_user_id
          AND e.actor_org_id IS NOT DISTINCT FROM OLD.actor_org_id
          AND e.ip IS NOT DISTINCT FROM OLD.ip
          AND e.user_agent IS NOT DISTINCT FROM OLD.user_agent
          AND e.target_type IS NOT DISTINCT FROM OLD.target_type
          AND e.target_id IS NOT DISTINCT FROM OLD.target_id
          AND e.target_org_id IS NOT DISTINCT FROM OLD.target_org_id
          AND e.details::jsonb = OLD.details::jsonb
      ) THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_queue: % refused (an event leaves the queue only into the log)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER audit_queue_guard BEFORE UPDATE OR DELETE ON audit_queue
    FOR EACH ROW EXECUTE FUNCTION phigate_audit_queue_guard()
    """,
    # The function of migration 0007.
    """
    CREATE TRIGGER audit_queue_no_truncate BEFORE TRUNCATE ON audit_queue
    FOR EACH STATEMENT EXECUTE FUNCTION phigate_audit_no_truncate()
    """,
]
_PG_DOWN = [
    "DROP TRIGGER IF EXISTS audit_queue_no_truncate ON audit_queue",
    "DROP TRIGGER IF EXISTS audit_queue_guard ON audit_queue",
    "DROP FUNCTION IF EXISTS phigate_audit_queue_guard()",
]


def upgrade() -> None:
    op.create_table(
        "audit_queue",
        sa.Column("id", _BigInt, autoincrement=True, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum("success", "failure", "denied", name="outcome", native_enum=False, length=8),
            nullable=False,
        ),
        sa.Column(
            "severity", sa.Enum("info", "warning", "high", name="severity", native_enum=False, length=8), nullable=False
        ),
        sa.Column("actor_user_id", sa.String(length=32), nullable=True),
        sa.Column("actor_org_id", sa.String(length=32), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("target_type", sa.String(length=32), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("target_org_id", sa.String(length=32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_queue")),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DOWN:
            op.execute(statement)
    op.drop_table("audit_queue")
