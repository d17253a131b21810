"""The log's tables on PostgreSQL: TRUNCATE is refused like UPDATE and DELETE, and the documented role for the
gateway (docs/operations.md) can append but cannot truncate, alter, disable triggers or drop."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode
from gateway.audit.sequencer import seq_of
from gateway.audit.service import Actor, record_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
AUDIT_TABLES = ("audit_events", "audit_checkpoints", "audit_tree_nodes")


@pytest.fixture
def pg(components):
    if components.db.dialect != "postgresql":
        pytest.skip("TRUNCATE and roles are PostgreSQL's (SQLite has neither)")
    return components


def _counts(components) -> dict[str, int]:
    with components.db.snapshot() as db:
        return {
            model.__tablename__: db.scalar(select(func.count()).select_from(model))
            for model in (AuditEvent, AuditCheckpoint, AuditTreeNode)
        }


def _filled(components, append, checkpoint) -> dict[str, int]:
    append(300)  # more than one 256-leaf subtree: the checkpoint stores a tree node
    checkpoint()
    counts = _counts(components)
    assert all(counts.values()), counts
    return counts


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE audit_events",
        "TRUNCATE audit_checkpoints",
        "TRUNCATE audit_tree_nodes",
        "TRUNCATE audit_events, audit_checkpoints, audit_tree_nodes RESTART IDENTITY CASCADE",
        "TRUNCATE users, audit_events CASCADE",
    ],
)
def test_truncate_of_the_log_is_refused(components, append, checkpoint, verify, statement):
    before = _filled(components, append, checkpoint)
    if components.db.dialect == "sqlite":
        # SQLite has no TRUNCATE (its DELETE without WHERE is the same) and no triggers guard the
        # embedded file: there the signed checkpoints catch the emptied table.
        with components.db.engine.begin() as conn:
            conn.execute(text("DELETE FROM audit_events"))
        report = verify()
        assert not report.ok and report.first_bad_seq == 1
        return
    pg = components
    # pg.db.engine connects as the database's owner, a superuser in the tests.
    with pytest.raises(DBAPIError) as refused, pg.db.engine.begin() as conn:
        conn.execute(text(statement))
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
    assert "append-only: TRUNCATE refused" in str(refused.value.orig)
    assert _counts(pg) == before


def _privileges_block() -> str:
    section = DOCS.read_text().split("## PostgreSQL roles and privileges", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


@pytest.fixture
def app_role(pg):
    """A login role set up with docs/operations.md's statements, run verbatim (the role name substituted)."""
    from tests.support.pgdb import PG_ADMIN_URL

    name = f"phigate_app_{secrets.token_hex(4)}"
    database = pg.settings.database_url.rsplit("/", 1)[1]
    owner = pg.settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN")
        conn.execute(_privileges_block().replace("phigate_app", name))
    base = PG_ADMIN_URL.rsplit("/", 1)[0].split("://", 1)[1].split("@", 1)[1]
    yield f"postgresql+psycopg://{name}@{base}/{database}"
    with psycopg.connect(owner, autocommit=True) as conn:
        conn.execute(f"DROP OWNED BY {name}")
        conn.execute(f"DROP ROLE {name}")


def test_the_documented_gateway_role_appends_but_cannot_erase(pg, app_role, append, checkpoint):
    from gateway.audit.checkpoint import maybe_checkpoint
    from gateway.components import Components

    before = _filled(pg, append, checkpoint)
    gateway = Components(pg.settings.model_copy(update={"database_url": app_role}))
    try:
        # What the gateway does with the log works under the role: append, sign a checkpoint.
        with gateway.db.transaction() as db:
            event = record_event(db, Action.KEYS_REWRAPPED, actor=Actor.system())
        seq = seq_of(gateway.db, event)
        assert maybe_checkpoint(gateway, force=True).tree_size == seq
        # What would erase or rewrite it does not.
        refused = {
            "TRUNCATE audit_events": "permission denied",
            "UPDATE audit_events SET action = 'x' WHERE seq = 1": "permission denied",
            "DELETE FROM audit_events WHERE seq = 1": "append-only",
            "DELETE FROM audit_checkpoints": "permission denied",
            # The queue of events not yet integrated: its rows leave only into the log.
            "UPDATE audit_queue SET action = 'x'": "permission denied",
            "TRUNCATE audit_queue": "permission denied",
            "ALTER TABLE audit_events DISABLE TRIGGER ALL": "must be owner",
            "DROP TABLE audit_events": "must be owner",
            "UPDATE alembic_version SET version_num = 'x'": "permission denied",
        }
        for statement, why in refused.items():
            with pytest.raises(DBAPIError) as exc, gateway.db.engine.begin() as conn:
                conn.execute(text(statement))
            assert why in str(exc.value.orig), (statement, str(exc.value.orig))
    finally:
        gateway.close()
    after = _counts(pg)
    assert after["audit_events"] == before["audit_events"] + 1
    assert after["audit_checkpoints"] == before["audit_checkpoints"] + 1
