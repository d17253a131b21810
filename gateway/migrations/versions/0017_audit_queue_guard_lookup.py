"""The queue guard finds the event by its instant first, whatever the planner knows about the log.

Migration 0016's guard looked the deleted queue row up in `audit_events` with one query over
every field. With no statistics yet (a log bulk-loaded and not analysed), PostgreSQL combined
the `action` index with the `occurred_at` one and read every event of that action for each
row the integrator moved: 166,667 index entries per event in a log of a million, so
integration slowed in proportion to the log (and a smaller log was scanned whole). Here
the events of that instant are read first, in a MATERIALIZED CTE planned on its own where
only `occurred_at` can use an index, with sequential scans off inside the function, and
the other fields compared on those few rows. The rule is unchanged.
"""

from alembic import op

revision = "0017_audit_queue_guard_lookup"
down_revision = "0016_audit_queue"
branch_labels = None
depends_on = None

_BY_INSTANT = """
    CREATE OR REPLACE FUNCTION phigate_audit_queue_guard() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off AS $$
    BEGIN
      IF TG_OP = 'DELETE' AND EXISTS (
        WITH same_instant AS MATERIALIZED (SELECT * FROM audit_events WHERE occurred_at = OLD.occurred_at)
        SELECT 1 FROM same_instant e
        WHERE e.action = OLD.action
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
    """
# Migration 0016's function, for the downgrade.
_ONE_QUERY = """
    CREATE OR REPLACE FUNCTION phigate_audit_queue_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
    """


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_BY_INSTANT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_ONE_QUERY)
