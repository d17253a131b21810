"""Migration 0007 on a database that holds wave-1 alerts: flags never delivered get their outbox message and
leave with the next retry; delivered ones are left alone; on PostgreSQL the TRUNCATE triggers arrive."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text


@pytest.fixture
def fresh_url(lane, tmp_path):
    """An empty database of the lane's kind, dropped afterwards."""
    from tests.support.pgdb import create_database

    if lane[0] == "sqlite":
        yield f"sqlite:///{tmp_path / 'wave1.db'}"
        return
    url, drop = create_database()
    yield url
    drop()


def _insert_alert(conn, id_, delivered: bool):
    conn.execute(
        text(
            "INSERT INTO audit_alerts (id, rule, subject, window_key, severity, raised_at, summary, count, first_seq, "
            "last_seq, org_ids, details, delivered_at) VALUES (:id, 'download_burst', 'u1', :key, 'high', :at, "
            "'20 downloads by one user within 10 minutes', 20, 1, 20, :orgs, '{}', :delivered)"
        ),
        {
            "id": id_,
            "key": f"w{id_}",
            "at": datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
            "orgs": json.dumps(["o1"]),
            "delivered": datetime(2026, 11, 30, 12, 1, tzinfo=UTC) if delivered else None,
        },
    )


def test_undelivered_wave_1_alerts_get_their_outbox_message(fresh_url, settings, tmp_path):
    from gateway.auditor import alerts
    from gateway.components import Components
    from gateway.migrate import upgrade

    upgrade(fresh_url, "0005")
    engine = create_engine(fresh_url)
    with engine.begin() as conn:
        _insert_alert(conn, 1, delivered=True)
        _insert_alert(conn, 2, delivered=False)
    upgrade(fresh_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT topic, payload, attempts, delivered_at FROM outbox")).all()
        triggers = (
            conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%no_truncate' ORDER BY tgname"))
            .scalars()
            .all()
            if engine.dialect.name == "postgresql"
            else None
        )
    engine.dispose()
    [(topic, payload, attempts, delivered_at)] = rows
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert topic == alerts.TOPIC and attempts == 0 and delivered_at is None
    assert payload == {
        "id": 2,
        "rule": "download_burst",
        "severity": "high",
        "subject": "u1",
        "summary": "20 downloads by one user within 10 minutes",
        "count": 20,
        "first_seq": 1,
        "last_seq": 20,
        "org_ids": ["o1"],
        "raised_at": "2026-11-30T12:00:00+00:00",
        "source": "phigate",
    }
    if triggers is not None:
        # The log's three tables (0007) and the queue of events not yet in it (0016_audit_queue).
        assert triggers == [
            "audit_checkpoints_no_truncate",
            "audit_events_no_truncate",
            "audit_queue_no_truncate",
            "audit_tree_nodes_no_truncate",
        ]

    # The retry job sends it, and the alert row says so.
    sink = tmp_path / "alerts.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(settings.model_copy(update={"database_url": fresh_url, "audit_alert_sink": f"file://{sink}"}))
        alerts.install(c)  # as the app and the CLI compose a process
    try:
        assert c.outbox.deliver() == 1
        with c.db.snapshot() as db:
            from gateway.audit.models import AuditAlert

            assert db.get(AuditAlert, 2).delivered_at is not None
    finally:
        c.close()
    assert [json.loads(x)["id"] for x in sink.read_text().splitlines()] == [2]


def test_the_migration_downgrades_cleanly(fresh_url):
    from alembic import command

    from gateway.migrate import alembic_config, upgrade

    upgrade(fresh_url)
    command.downgrade(alembic_config(fresh_url), "0005")
    engine = create_engine(fresh_url)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0005"
    engine.dispose()
    upgrade(fresh_url)  # and up again: nothing of 0007 was left behind
