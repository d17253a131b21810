"""Migration 0006 on a database that holds wave-1 data: every object still opens, nothing is re-encrypted.

The database is migrated to 0005 (wave 1), wave-1 rows are written through SQL the
way wave 1 wrote them (a transfer file, a destroyed one, a pending object of a
crashed upload, a BAA signed copy, download rows) with real objects sealed under
the wave-1 contexts, then upgraded.  Afterwards the registry holds every object
with its exact context and wrapped key, the file downloads and the BAA copy opens
over HTTP, fsck and rewrap see every kind.
"""

from __future__ import annotations

import hashlib
import warnings
from datetime import timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import Table, func, select, text

from crypto import encrypt_stream, seal
from gateway.audit.models import AuditQueued
from gateway.audit.sequencer import integrate
from gateway.audit.service import Actor
from gateway.ids import new_id
from gateway.orgs.models import OrgKind
from gateway.sealed.keys import practice_key, relationship_key
from gateway.sealed.models import SealedKind, SealedObject, SealedState
from tests.conftest import Factory
from tests.lanes import lane_unavailable
from tests.support.pgdb import create_database
from tests.transfers.conftest import PDF, Session, record_baa

SIGNED = b"%PDF-1.7\nBUSINESS ASSOCIATE AGREEMENT, synthetic, signed\n" * 500 + b"%%EOF\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def wave1_url(request, tmp_path):
    """A database of its own, migrated to 0005 only."""
    import os

    from gateway.migrate import upgrade

    reason = lane_unavailable(request.param)
    if reason:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{request.param} lane unavailable under CI=true: {reason}")
        pytest.skip(f"{request.param} lane SKIPPED: {reason}")
    if request.param == "sqlite":
        url, drop = f"sqlite:///{tmp_path / 'wave1.db'}", None
    else:
        url, drop = create_database()
    upgrade(url, "0005")
    yield url
    if drop:
        drop()


def _when(c, value):
    return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if c.db.dialect == "sqlite" else value


def _wave1_org(c, kind: str, n: int, at) -> SimpleNamespace:
    """An organisation row with wave 1's columns only: today's model has columns revision 0005 lacks."""
    org = SimpleNamespace(id=new_id(), name=f"Wave1 {kind} {n}", kind=OrgKind(kind), active=True)
    with c.db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO organisations (id, name, kind, active, created_at) VALUES (:id, :name, :kind, :a, :at)"),
            {"id": org.id, "name": org.name, "kind": org.kind.value, "a": True, "at": _when(c, at)},
        )
    return org


def _seal_object(c, key_id: str, context: dict, data: bytes, object_key: str) -> tuple[bytes, int]:
    """What wave 1 did for each object: a data key under `key_id`, the stream encrypted with `context`."""
    dek, wrapped = c.keys.generate_data_key(key_id, context)
    info = c.store.put(object_key, encrypt_stream(iter([data]), dek, context), metadata={"format": "phg-stream-v1"})
    return wrapped.to_bytes(), info.size


def test_wave1_rows_move_into_the_registry_and_every_object_still_opens(wave1_url, keyring_url, tmp_path, fake_clock):
    from gateway.app import create_app
    from gateway.components import Components
    from gateway.config import Settings
    from gateway.keys import GATEWAY_SECRETS_KEY
    from gateway.migrate import upgrade

    s = Settings(
        _env_file=None,
        env="development",
        data_dir=tmp_path / "data",
        database_url=wave1_url,
        storage_url=f"file://{tmp_path / 'objects'}",
        key_provider_url=keyring_url,
        cookie_secure=False,
        instance_id="test",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = Components(s)
        c.keys.ensure_key(GATEWAY_SECRETS_KEY)
    # Today's users and BAAs are made with today's code, which records their events through the audit
    # queue (revision 0016): the queue is there for this set-up only, and gone again before the upgrade
    # that creates it (every event integrated into wave 1's audit_events: at its commit on SQLite, by the
    # integration below on PostgreSQL).
    queue = cast(Table, AuditQueued.__table__)
    queue.create(c.db.engine)
    try:
        factory = Factory(c, fake_clock)
        practice, vendor = (
            _wave1_org(c, "practice", 1, fake_clock.current),
            _wave1_org(c, "vendor", 2, fake_clock.current),
        )
        staff, approver = factory.user("practice_staff", practice), factory.user("practice_approver", practice)
        operator = _wave1_org(c, "operator", 3, fake_clock.current)
        biller, admin = factory.user("biller", vendor), factory.user("admin", operator)
        baa_id = record_baa(c, practice, vendor)
        # Times as wave 1's SQLAlchemy columns stored them (naive UTC text on SQLite).
        at = fake_clock.current
        now = _when(c, at)
        rel, own = relationship_key(practice.id, vendor.id), practice_key(practice.id)
        c.keys.ensure_key(rel)
        c.keys.ensure_key(own)

        # -- wave-1 rows, written as wave 1 wrote them -----------------------------------
        tid, fid, gone_id, key = "a" * 32, "b" * 32, "c" * 32, "d" * 32
        file_ctx = {"practice": practice.id, "vendor": vendor.id, "transfer": tid, "file": fid}
        wrapped, ct_size = _seal_object(c, rel, file_ctx, PDF, key)
        copy_ctx = {"purpose": "baa-signed-copy", "baa": baa_id, "practice": practice.id}
        copy_wrapped, _ = _seal_object(c, own, copy_ctx, SIGNED, "e" * 32)
        c.store.put("f" * 32, iter([b"half an upload"]))  # the object of a crashed upload
        name = seal(c.keys, rel, b"appeal.pdf", {"purpose": "file-name", "file": fid})
        with c.db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO transfers (id, direction, practice_id, vendor_id, status, purpose, key_id, created_by, "
                    "created_at, decided_by, decided_at, access_ends_at, download_limit) VALUES (:id, 'outbound', :p, "
                    ":v, 'approved', 'APPEAL-W1', :k, :by, :at, :ap, :at, :ends, 2)"
                ),
                {
                    "id": tid,
                    "p": practice.id,
                    "v": vendor.id,
                    "k": rel,
                    "by": staff.id,
                    "ap": approver.id,
                    "at": now,
                    "ends": _when(c, at + timedelta(days=7)),
                },
            )
            insert_file = text(
                "INSERT INTO transfer_files (id, transfer_id, position, object_key, storage_location, name_sealed, "
                "file_type, size, ciphertext_size, sha256, wrapped_dek, state, created_at, destroyed_at) VALUES "
                "(:id, :t, :pos, :key, :loc, :name, 'pdf', :size, :cts, :sha, :w, :state, :at, :gone)"
            )
            conn.execute(
                insert_file,
                {
                    "id": fid,
                    "t": tid,
                    "pos": 0,
                    "key": key,
                    "loc": c.store.location_id,
                    "name": name,
                    "size": len(PDF),
                    "cts": ct_size,
                    "sha": hashlib.sha256(PDF).hexdigest(),
                    "w": wrapped,
                    "state": "stored",
                    "at": now,
                    "gone": None,
                },
            )
            conn.execute(
                insert_file,
                {
                    "id": gone_id,
                    "t": tid,
                    "pos": 1,
                    "key": "9" * 32,
                    "loc": c.store.location_id,
                    "name": None,
                    "size": 10,
                    "cts": 107,
                    "sha": "0" * 64,
                    "w": None,
                    "state": "destroyed",
                    "at": now,
                    "gone": now,
                },
            )
            conn.execute(
                text(
                    "INSERT INTO pending_objects (object_key, storage_location, created_at, reason) "
                    "VALUES (:k, :loc, :at, 'upload')"
                ),
                {"k": "f" * 32, "loc": c.store.location_id, "at": _when(c, at - timedelta(hours=3))},
            )
            conn.execute(
                text(
                    "UPDATE baas SET copy_object_key = :k, copy_key_id = :key, copy_wrapped_dek = :w, "
                    "copy_size = :size, copy_sha256 = :sha, copy_uploaded_at = :at WHERE id = :id"
                ),
                {
                    "k": "e" * 32,
                    "key": own,
                    "w": copy_wrapped,
                    "size": len(SIGNED),
                    "sha": hashlib.sha256(SIGNED).hexdigest(),
                    "at": now,
                    "id": baa_id,
                },
            )
            # One download of the two allowed, done in wave 1.
            conn.execute(
                text(
                    "INSERT INTO downloads (id, transfer_id, file_id, user_id, started_at, range_start, range_end, "
                    "bytes_sent, outcome, resumed) VALUES (:id, :t, :f, :u, :at, 0, :n, :n, 'completed', false)"
                ),
                {"id": "1" * 32, "t": tid, "f": fid, "u": biller.id, "at": now, "n": len(PDF)},
            )

        integrate(c.db)  # on PostgreSQL the events wait in the queue for the leader's job: move them now
        with c.db.engine.begin() as conn:
            assert conn.scalar(select(func.count()).select_from(queue)) == 0
        queue.drop(c.db.engine)
        upgrade(wave1_url)

        # -- the registry holds every object, exactly ------------------------------------
        with c.db.snapshot() as db:
            rows = {r.object_key: r for r in db.scalars(select(SealedObject))}
            columns = set(db.execute(text("SELECT * FROM transfer_files")).keys())
        assert set(rows) == {key, "9" * 32, "e" * 32, "f" * 32}
        f = rows[key]
        assert (f.kind, f.owner_id, f.state, f.practice_id, f.vendor_id, f.key_id) == (
            SealedKind.transfer_file,
            fid,
            SealedState.stored,
            practice.id,
            vendor.id,
            rel,
        )
        assert f.context == file_ctx and f.wrapped_dek == wrapped and f.ciphertext_size == ct_size
        assert f.key_version == c.keys.current_version(rel) and f.storage_location == c.store.location_id
        assert (rows["9" * 32].state, rows["9" * 32].wrapped_dek) == (SealedState.destroyed, None)
        copy = rows["e" * 32]
        assert (copy.kind, copy.owner_id, copy.state, copy.context, copy.wrapped_dek) == (
            SealedKind.baa_copy,
            baa_id,
            SealedState.stored,
            copy_ctx,
            copy_wrapped,
        )
        assert copy.storage_location == c.store.location_id and copy.plaintext_size == len(SIGNED)
        assert (rows["f" * 32].state, rows["f" * 32].owner_id) == (SealedState.pending, None)
        # The moved columns are gone: nothing outside the registry holds a wrapped key or an object key.
        assert not {"object_key", "wrapped_dek", "storage_location", "ciphertext_size"} & columns

        # -- and everything still opens, through HTTP ------------------------------------
        app = create_app(s, c)
        biller_session, admin_session = Session(app, biller, fake_clock), Session(app, admin, fake_clock)
        r = biller_session.download(tid, fid)
        assert r.status_code == 200 and r.content == PDF
        r = biller_session.download(tid, fid)  # the second of two: the wave-1 download counted
        assert r.status_code == 403 and r.json()["error"]["code"] == "download_limit_reached"
        r = admin_session.client.get(f"/api/v1/baas/{baa_id}/signed-copy")
        assert r.status_code == 200 and r.content == SIGNED

        # -- fsck and rewrap know the migrated rows --------------------------------------
        from gateway.custody import rewrap_all, rotate
        from gateway.sealed.fsck import fsck

        report = fsck(c, Actor.system(), repair=True)
        assert report.removed == ["f" * 32] and report.unreferenced == [] and report.missing == []
        rotate(c, rel, Actor.system())
        rotate(c, own, Actor.system())
        assert rewrap_all(c, Actor.system()).objects_by_kind == {"transfer_file": 1, "baa_copy": 1}
        r = admin_session.client.get(f"/api/v1/baas/{baa_id}/signed-copy")
        assert r.status_code == 200 and r.content == SIGNED
        for sess in (biller_session, admin_session):
            sess.client.close()
    finally:
        c.close()
