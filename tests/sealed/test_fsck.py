"""`phigate fsck` with every kind of object present: it never lists or removes an object in use.

Finding 1 of issue 11: a signed BAA copy stored through the API was listed as
unreferenced, `--repair` destroyed it and the next GET answered 500.
"""

from __future__ import annotations

import json

from gateway.sealed import service as sealed
from gateway.sealed.keys import relationship_key
from tests.transfers.conftest import PDF, events, live_sealed, sealed_of

SIGNED = b"%PDF-1.7\nBUSINESS ASSOCIATE AGREEMENT, synthetic, signed\n" * 300 + b"%%EOF\n"


def put_copy(session, baa_id, data):
    return session.client.put(
        f"/api/v1/baas/{baa_id}/signed-copy", content=data, headers={"Content-Type": "application/pdf"}
    )


def crashed_upload(components, party, *, hours_ago: int = 0):
    """A pending object whose upload died after writing it (the process was killed)."""
    from datetime import timedelta

    from gateway.sealed.models import SealedObject

    key_id = relationship_key(party.practice.id, party.vendor.id)
    components.keys.ensure_key(key_id)
    p = sealed.reserve(
        components,
        sealed.transfer_file(
            key_id=key_id,
            practice_id=party.practice.id,
            vendor_id=party.vendor.id,
            transfer_id="t" * 32,
            file_id="f" * 32,
        ),
    )
    sealed.write(components, p, iter([PDF]))
    if hours_ago:
        with components.db.transaction() as db:
            row = db.get(SealedObject, p.id)
            row.created_at -= timedelta(hours=hours_ago)
    return p


def test_fsck_knows_every_kind_and_repair_never_removes_an_object_in_use(
    party, session_for, components, settings, db, phigate
):
    admin, staff, approver = session_for(party.admin), session_for(party.staff), session_for(party.approver)
    biller = session_for(party.biller)
    # Every kind, in every state: a BAA copy replaced once, a file sent, a file sent back, a crashed
    # upload, and an object nothing names.
    assert put_copy(admin, party.baa_id, SIGNED + b"first").status_code == 200
    assert put_copy(admin, party.baa_id, SIGNED).status_code == 200
    tid = staff.upload(party.vendor.id, name="claim.pdf").json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    back = biller.upload(party.practice.id, name="done.pdf").json()["id"]
    crashed = crashed_upload(components, party, hours_ago=24)
    components.store.put("5" * 32, iter([b"stray ciphertext"]))

    r = phigate("fsck")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    copy = sealed_of(db, party.baa_id, "baa_copy")
    assert report["unreferenced"] == ["5" * 32]
    assert report["stale_pending"] == [crashed.object_key]
    assert report["missing"] == [] and report["unfinished_destruction"] == []
    assert report["by_kind"]["baa_copy"] == {"stored": 1, "destroyed": 1}
    assert report["by_kind"]["transfer_file"] == {"stored": 2, "pending": 1}

    r = phigate("fsck", "--repair")
    assert r.returncode == 0, r.stderr
    assert sorted(json.loads(r.stdout)["removed"]) == sorted(["5" * 32, crashed.object_key])
    # Every object in use is still there and opens.
    r = admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy")
    assert r.status_code == 200 and r.content == SIGNED
    assert sealed_of(db, party.baa_id, "baa_copy").object_key == copy.object_key
    assert biller.download(tid, fid).content == PDF
    back_file = staff.client.get(f"/api/v1/transfers/{back}").json()["files"][0]["id"]
    assert staff.download(back, back_file).content == PDF
    assert sorted(o.kind.value for o in live_sealed(db)) == ["baa_copy", "transfer_file", "transfer_file"]
    assert sorted(e.details["why"] for e in events(db, "storage.orphan.destroyed")) == ["pending", "unreferenced"]
    # Nothing left to repair.
    r = phigate("fsck")
    assert r.returncode == 0 and json.loads(r.stdout)["removed"] == []


def test_an_upload_in_flight_is_left_alone(party, components, db):
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck

    in_flight = crashed_upload(components, party)  # written a moment ago: inside the in-flight window
    report = fsck(components, Actor.system(), repair=True)
    assert report.stale_pending == [] and report.removed == []
    assert sealed_of(db, "f" * 32).state.value == "pending"
    assert b"".join(components.store.get(in_flight.object_key))


def test_missing_object_in_use_is_reported_not_repaired(party, session_for, components, db):
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck

    admin = session_for(party.admin)
    assert put_copy(admin, party.baa_id, SIGNED).status_code == 200
    copy = sealed_of(db, party.baa_id, "baa_copy")
    components.store.destroy(copy.object_key)  # lost behind the gateway's back
    report = fsck(components, Actor.system(), repair=True)
    assert report.missing == [copy.object_key] and report.removed == []
    assert sealed_of(db, party.baa_id, "baa_copy").state.value == "stored"
    missing = events(db, "storage.object.missing")[-1]
    assert missing.severity.value == "high" and missing.details["object_keys"] == [copy.object_key]


def test_a_replaced_copy_whose_destruction_failed_is_finished_by_fsck(
    party, session_for, components, db, monkeypatch, fake_clock
):
    from gateway.audit.service import Actor
    from gateway.sealed.fsck import fsck
    from storage import StorageUnavailable

    admin = session_for(party.admin)
    assert put_copy(admin, party.baa_id, SIGNED + b"first").status_code == 200
    first = sealed_of(db, party.baa_id, "baa_copy")
    real = type(components.store).destroy

    def refuse(self, key):
        raise StorageUnavailable("simulated outage")

    monkeypatch.setattr(type(components.store), "destroy", refuse)
    assert put_copy(admin, party.baa_id, SIGNED).status_code == 200  # the new copy is stored all the same
    monkeypatch.setattr(type(components.store), "destroy", real)
    rows = {o.object_key: o.state.value for o in live_sealed(db)}
    assert rows[first.object_key] == "destroying"  # no read can reach it any more
    assert fsck(components, Actor.system(), repair=True).removed == []  # inside the window: left alone
    fake_clock.advance(hours=2)
    report = fsck(components, Actor.system(), repair=True)
    assert report.unfinished_destruction == [first.object_key] and report.removed == [first.object_key]
    assert components.store.verify_absent(first.object_key).absent
    again = session_for(party.admin)  # two hours on, the first session has timed out
    assert again.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy").content == SIGNED
