"""Helpers for the audit tests: appending events, tampering as a database superuser, signing keys."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import text

from gateway.audit.actions import Action


@pytest.fixture
def signer(components):
    from gateway.audit.checkpoint import get_signer

    return get_signer(components)


@pytest.fixture
def append(components):
    """append(n, **kw): record n events in one transaction through record_event()."""
    from gateway.audit.sequencer import integrate
    from gateway.audit.service import Actor, record_event

    def _append(n: int = 1, action: Action = Action.KEYS_REWRAPPED, **kw):
        kw.setdefault("actor", Actor(user_id="u1", org_id="o1", ip="192.0.2.1", user_agent="pytest"))
        with components.db.transaction() as db:
            events = [record_event(db, action, details={"i": i}, **kw) for i in range(n)]
        # Numbered by the integrator: at the commit on SQLite, by the leader's job (here, at once) on PostgreSQL.
        moved = integrate(components.db) or {}
        return [moved[e.id] if e.seq is None else e.seq for e in events]

    return _append


@pytest.fixture
def checkpoint(components):
    from gateway.audit.checkpoint import maybe_checkpoint

    return lambda: maybe_checkpoint(components, force=True)


@pytest.fixture
def verify(components, signer):
    from gateway.audit.checkpoint import origin
    from gateway.audit.verify import verify_log

    return lambda: verify_log(components.db, signer.public_key(), origin(components.settings), chunk=100)


@pytest.fixture
def verify_parallel(components, signer, monkeypatch):
    """verify_log with two worker processes and small segments (so a small log spans several)."""
    from gateway.audit import verify as verify_module
    from gateway.audit.checkpoint import origin

    monkeypatch.setattr(verify_module, "SEGMENT", 16)
    return lambda: verify_module.verify_log(
        components.db, signer.public_key(), origin(components.settings), chunk=7, workers=2
    )


@pytest.fixture
def superuser(components):
    """A context manager giving a raw connection that can rewrite the log, as an attacker with DB superuser.

    On PostgreSQL the append-only triggers are disabled explicitly for the block and restored after.
    """

    @contextmanager
    def _superuser():
        with components.db.engine.begin() as conn:
            pg = conn.dialect.name == "postgresql"
            if pg:
                conn.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
                conn.execute(text("ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only"))
            try:
                yield conn
            finally:
                if pg:
                    conn.execute(text("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only"))
                    conn.execute(text("ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only"))

    return _superuser


@pytest.fixture
def exported(client, login, components, factory, tmp_path):
    """A JSON Lines and a CSV export (filtered), the verifier key, and the PEM file, from the API.

    Its events hold non-ASCII text and a cell a spreadsheet would read as a formula, as real ones may."""
    from gateway.audit.actions import Action
    from gateway.audit.service import Actor, record_event

    practice = factory.org("practice")
    agents = ("pytest", "Navigateur/1.0 (é)", "=HYPERLINK(1)")
    with components.db.transaction() as db:
        for i in range(3):
            record_event(
                db,
                Action.TRANSFER_DOWNLOAD_COMPLETED,
                actor=Actor(org_id=practice.id, user_agent=agents[i]),
                target_type="transfer",
                target_id=f"t{i}",
                target_org_id=practice.id,
                details={"bytes": i, "code": "Größe-✓ 請求"},
            )
    login(client, factory.user("auditor", factory.org("operator")))
    key = client.get("/api/v1/audit/public-key").json()
    pem = tmp_path / "key.pem"
    pem.write_text(key["public_key_pem"])
    files = {}
    for fmt in ("jsonl", "csv"):
        r = client.get(f"/api/v1/audit/export.{fmt}", params={"action": "transfer.*"})
        assert r.status_code == 200
        files[fmt] = tmp_path / f"export.{fmt}"
        files[fmt].write_bytes(r.content)
    return files, key["verifier_key"], pem
