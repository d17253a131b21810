"""PostgreSQL pooled connections are pinged only after sitting idle (gateway/db.py, PING_AFTER_IDLE_SECONDS)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from gateway import db as db_module
from gateway.db import Database


@pytest.fixture
def pooled(components):
    """A Database of its own (its own pool) whose one pooled connection's server process is then killed."""
    if components.db.dialect != "postgresql":
        pytest.skip("SQLite has no server connection to lose")
    database = Database(components.settings.effective_database_url)
    with database.transaction() as db:
        pid = db.scalar(text("SELECT pg_backend_pid()"))
    with components.db.engine.connect() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        conn.commit()
    yield database, pid
    database.dispose()


def test_a_dead_connection_idle_past_the_limit_is_replaced_before_use(pooled, monkeypatch):
    database, dead = pooled
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # it has sat idle long enough
    with database.transaction() as db:
        assert db.scalar(text("SELECT pg_backend_pid()")) != dead


def test_a_connection_handed_back_a_moment_ago_is_used_without_a_ping(pooled, monkeypatch):
    """The documented price: a server lost within that moment fails one transaction, then the pool recovers."""
    database, dead = pooled
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)
    with pytest.raises(DBAPIError), database.transaction() as db:
        db.scalar(text("SELECT 1"))
    with database.transaction() as db:
        assert db.scalar(text("SELECT pg_backend_pid()")) != dead
