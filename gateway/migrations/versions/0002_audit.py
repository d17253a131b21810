"""audit: tamper-evident log (leaf hashes, gap-free sequence, tree nodes, signed checkpoints, alerts)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_BigInt = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# PostgreSQL: rows of the log, its nodes and its checkpoints can be neither updated nor
# deleted, whatever the application does.  The one exception is retention pruning,
# which must set phigate.audit_prune in its own transaction and may only delete events
# at or below a signed prune checkpoint.  (TRUNCATE is left to the table owner.)
_PG_UP = [
    """
    CREATE FUNCTION phigate_audit_events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND current_setting('phigate.audit_prune', true) = 'on'
         AND OLD.seq <= (SELECT coalesce(max(tree_size), 0) FROM audit_checkpoints WHERE kind = 'prune_base') THEN
        RETURN OLD;
      END IF;
      RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION phigate_audit_events_guard()
    """,
    """
    CREATE FUNCTION phigate_audit_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION phigate_audit_immutable()
    """,
    """
    CREATE TRIGGER audit_tree_nodes_append_only BEFORE UPDATE OR DELETE ON audit_tree_nodes
    FOR EACH ROW EXECUTE FUNCTION phigate_audit_immutable()
    """,
]
_PG_DOWN = [
    "DROP TRIGGER IF EXISTS audit_tree_nodes_append_only ON audit_tree_nodes",
    "DROP TRIGGER IF EXISTS audit_checkpoints_append_only ON audit_checkpoints",
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    "DROP FUNCTION IF EXISTS phigate_audit_immutable()",
    "DROP FUNCTION IF EXISTS phigate_audit_events_guard()",
]


def _backfill(bind) -> None:
    """Give events written before this revision gap-free numbers and leaf hashes."""
    from gateway.db import UTCDateTime
    from translog.leaf import format_time, leaf_hash_of

    events = sa.table(
        "audit_events",
        *(
            sa.column(c)
            for c in (
                "seq",
                "action",
                "outcome",
                "severity",
                "actor_user_id",
                "actor_org_id",
                "ip",
                "user_agent",
                "target_type",
                "target_id",
                "target_org_id",
                "details",
                "leaf_hash",
            )
        ),
        sa.column("occurred_at", UTCDateTime()),
    )
    for name in ("actor_user_id", "actor_org_id", "ip", "user_agent", "target_type", "target_id", "target_org_id"):
        bind.execute(events.update().where(events.c[name] == "").values({name: None}))
    rows = bind.execute(sa.select(events.c.seq).order_by(events.c.seq)).scalars().all()
    for new, old in enumerate(rows, 1):
        if new != old:
            bind.execute(events.update().where(events.c.seq == old).values(seq=new))
    for row in bind.execute(sa.select(events).order_by(events.c.seq)).mappings().all():
        details = row["details"]
        if isinstance(details, str):
            details = json.loads(details)
        leaf = leaf_hash_of(
            row["seq"],
            format_time(row["occurred_at"]),
            row["action"],
            row["outcome"],
            row["severity"],
            row["actor_user_id"],
            row["actor_org_id"],
            row["ip"],
            row["user_agent"],
            row["target_type"],
            row["target_id"],
            row["target_org_id"],
            details or {},
        )
        bind.execute(events.update().where(events.c.seq == row["seq"]).values(leaf_hash=leaf))


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("leaf_hash", sa.LargeBinary(length=32), nullable=True))
    if pg:
        # Numbers come from record_event() under a lock, never from a sequence (which leaves gaps).
        op.execute("ALTER TABLE audit_events ALTER COLUMN seq DROP DEFAULT")
        op.execute("DROP SEQUENCE IF EXISTS audit_events_seq_seq")
    _backfill(bind)
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("leaf_hash", existing_type=sa.LargeBinary(length=32), nullable=False)

    op.create_table(
        "audit_tree_nodes",
        sa.Column("level", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", _BigInt, autoincrement=False, nullable=False),
        sa.Column("leaf_end", _BigInt, nullable=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("level", "idx", name=op.f("pk_audit_tree_nodes")),
    )
    with op.batch_alter_table("audit_tree_nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_tree_nodes_leaf_end"), ["leaf_end"], unique=False)

    op.create_table(
        "audit_checkpoints",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tree_size", _BigInt, nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("periodic", "on_demand", "prune_base", name="checkpointkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String(length=200), nullable=False),
        sa.Column("key_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("frontier", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
    )
    with op.batch_alter_table("audit_checkpoints", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_checkpoints_tree_size"), ["tree_size"], unique=False)

    op.create_table(
        "audit_alerts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("window_key", sa.String(length=64), nullable=False),
        sa.Column(
            "severity", sa.Enum("info", "warning", "high", name="severity", native_enum=False, length=8), nullable=False
        ),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.String(length=300), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seq", _BigInt, nullable=False),
        sa.Column("last_seq", _BigInt, nullable=False),
        sa.Column("org_ids", sa.JSON(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivery_error", sa.String(length=300), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_alerts")),
        sa.UniqueConstraint("rule", "subject", "window_key", name="uq_audit_alerts_rule_subject_window"),
    )
    with op.batch_alter_table("audit_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_alerts_raised_at"), ["raised_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_alerts_rule"), ["rule"], unique=False)

    if pg:
        for statement in _PG_UP:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _PG_DOWN:
            op.execute(statement)
    op.drop_table("audit_alerts")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_tree_nodes")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("leaf_hash")
