"""Offboarding a vendor: BAAs, users, every file, the key, one certificate per scope; refusals leave nothing done."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from gateway.audit.service import Actor
from gateway.baas.models import Baa, BaaStatus
from gateway.sealed.keys import relationship_key
from gateway.transfers.models import Direction, Download, FileState, Transfer, TransferFile, TransferStatus
from gateway.users.models import User
from retention.certificates import verify_document
from retention.errors import InFlight, NothingToOffboard
from retention.models import Certificate, DestructionJob
from retention.offboarding import offboard
from tests.retention.conftest import events
from tests.transfers.conftest import sealed_of


def _files(db, **where):
    db.expire_all()
    q = select(TransferFile).join(Transfer)
    for k, v in where.items():
        q = q.where(getattr(Transfer, k) == v)
    out = list(db.scalars(q))
    db.commit()
    return out


def test_offboarding_destroys_everything_sent_and_certifies(components, party, seeded, db):
    from gateway import clock
    from gateway.transfers.models import Download

    approved = seeded(3)
    pending = seeded(1, status=TransferStatus.awaiting_approval)
    revoked = seeded(1, status=TransferStatus.revoked, files_per_transfer=2)
    returned = seeded(2, direction=Direction.inbound, status=TransferStatus.delivered)
    # A download that finished long ago is not "in flight".
    f0 = _files(db, id=approved[0])[0]
    db.add(
        Download(
            transfer_id=approved[0],
            file_id=f0.id,
            user_id=party.biller.id,
            started_at=clock.now(),
            range_start=0,
            range_end=f0.size,
            bytes_sent=f0.size,
            outcome="completed",
        )
    )
    db.commit()

    report = offboard(components, Actor.system(), party.vendor.name, reason="contract ended")

    assert report.baas_terminated == 1 and report.users_disabled == 2
    [job] = report.jobs
    assert job.destroyed == 6 and job.crypto_shred_only == 0
    sent = _files(db, vendor_id=party.vendor.id, direction=Direction.outbound)
    assert len(sent) == 6
    for f in sent:
        obj = sealed_of(db, f.id)
        assert f.state == FileState.destroyed and f.name_sealed is None
        assert obj.state.value == "destroyed" and obj.wrapped_dek is None and obj.destroyed_at is not None
        assert f.destroyed_at is not None and components.store.verify_absent(obj.object_key).absent
    # The vendor's returned files belong to the practice: kept, still readable.
    kept = _files(db, direction=Direction.inbound)
    assert sorted({f.transfer_id for f in kept}) == sorted(returned)
    for f in kept:
        obj = sealed_of(db, f.id)
        assert f.state == FileState.stored and obj.state.value == "stored" and obj.wrapped_dek is not None
        assert not components.store.verify_absent(obj.object_key).absent
    db.expire_all()
    assert {t.status for t in db.scalars(select(Transfer).where(Transfer.id.in_(approved + pending + revoked)))} == {
        TransferStatus.destroyed
    }
    assert db.get(Baa, party.baa_id).status == BaaStatus.terminated
    assert not any(u.active for u in db.scalars(select(User).where(User.org_id == party.vendor.id)))
    assert job.key_evidence["destroyed"] is True
    assert job.key_evidence["key_id"] == relationship_key(party.practice.id, party.vendor.id)
    assert relationship_key(party.practice.id, party.vendor.id) not in components.keys.key_ids()
    cert = db.get(Certificate, job.certificate_id)
    db.commit()
    result, body = verify_document(cert.document)
    assert result.ok, result.problems
    assert body["scope"]["vendor_id"] == party.vendor.id and body["scope"]["baa_references"] == ["BAA-TEST-1"]
    assert body["scope"]["reason"] == "contract ended"
    assert body["sanitization"]["method"] == (
        "cryptographic erase of per-object data keys and deletion of every stored object version"
    )
    assert sorted(e["object_id"] for e in body["objects"]) == sorted(f.id for f in sent)
    assert all(e["verification"] == "verified absent" for e in body["objects"])
    assert body["key_evidence"]["destroyed"] is True and body["key_evidence"]["deletion_scheduled_for"]
    assert body["audit_checkpoint"]["tree_size"] > 0 and body["audit_checkpoint"]["signed_note"]
    for step in ("destroying", "storage_destroyed", "crypto_shredded", "destroyed"):
        assert len(events(db, f"retention.object.{step}")) == 6
    assert len(events(db, "retention.certificate.issued")) == 1
    assert len(events(db, "transfer.destroyed")) == 5


def test_offboarding_twice_is_idempotent(components, party, seeded, db):
    seeded(2)
    first = offboard(components, Actor.system(), party.vendor.id, reason="contract ended")
    again = offboard(components, Actor.system(), party.vendor.id, reason="contract ended")
    assert again.jobs == [] and again.already_done == [first.jobs[0].certificate_id]
    assert db.scalar(select(func.count()).select_from(Certificate)) == 1


def test_returned_files_destroyed_when_the_admin_chooses(components, party, seeded, db):
    seeded(1)
    seeded(2, direction=Direction.inbound, status=TransferStatus.delivered)
    [job] = offboard(components, Actor.system(), party.vendor.id, reason="contract ended", include_returned=True).jobs
    assert job.destroyed == 3
    assert all(f.state == FileState.destroyed for f in _files(db, vendor_id=party.vendor.id))


def test_unknown_vendor_changes_nothing(components, party, seeded, db):
    seeded(1)
    before = len(events(db))
    from gateway.errors import NotFound

    for ref in ("no-such-vendor", party.practice.id):  # a practice is not a vendor either
        with pytest.raises(NotFound) as err:
            offboard(components, Actor.system(), ref, reason="x")
        assert err.value.code == "vendor_not_found"
    assert len(events(db)) == before
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    assert db.scalar(select(func.count()).select_from(DestructionJob)) == 0


def test_vendor_without_relationship_is_refused(components, factory, party, db):
    other = factory.org("vendor")
    with pytest.raises(NothingToOffboard):
        offboard(components, Actor.system(), other.id, reason="x")
    with pytest.raises(NothingToOffboard):
        offboard(components, Actor.system(), party.vendor.id, practice_ref=factory.org("practice").id, reason="x")


@pytest.mark.parametrize("what", ["download", "upload"])
def test_transfers_in_flight_refused_with_nothing_done(components, party, seeded, db, what):
    from gateway import clock

    [tid] = seeded(1)
    if what == "download":
        f = _files(db, id=tid)[0]
        db.add(
            Download(
                transfer_id=tid,
                file_id=f.id,
                user_id=party.biller.id,
                started_at=clock.now(),
                range_start=0,
                range_end=f.size,
                bytes_sent=10,
                outcome="started",
            )
        )
    else:
        from gateway.sealed import service as sealed

        db.commit()
        sealed.reserve(
            components,
            sealed.transfer_file(
                key_id="rel-x",
                practice_id=party.practice.id,
                vendor_id=party.vendor.id,
                transfer_id="t" * 32,
                file_id="f" * 32,
            ),
        )
    db.commit()
    before = len(events(db))
    with pytest.raises(InFlight) as err:
        offboard(components, Actor.system(), party.vendor.id, reason="contract ended")
    assert err.value.code == "transfers_in_flight" and f"1 {what}s" in err.value.message
    assert len(events(db)) == before
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    assert all(u.active for u in db.scalars(select(User).where(User.org_id == party.vendor.id)))
    assert all(f.state == FileState.stored for f in _files(db, id=tid))
    assert db.scalar(select(func.count()).select_from(DestructionJob)) == 0
    db.commit()


def test_one_practice_only_keeps_the_vendor_serving_others(components, factory, party, seeded, db):
    from tests.retention.conftest import record_baa
    from tests.retention.seed import seed

    other = factory.org("practice")
    record_baa(components, other, party.vendor)
    other_staff = factory.user("practice_staff", other)
    kept = seed(components, other.id, party.vendor.id, other_staff.id, 2)
    seeded(2)
    report = offboard(components, Actor.system(), party.vendor.id, practice_ref=party.practice.name, reason="x")
    assert report.users_disabled == 0 and [j.practice_id for j in report.jobs] == [party.practice.id]
    assert all(f.state == FileState.stored for f in _files(db, practice_id=other.id))
    assert len(kept) == 2
    # Then the vendor leaves the other practice too: now its people lose access.
    report = offboard(components, Actor.system(), party.vendor.id, reason="y")
    assert report.users_disabled == 2 and len(report.jobs) == 1 and report.already_done


def test_cli_offboard_prints_report_and_certificate_verifies(phigate, components, party, seeded, tmp_path, db):
    seeded(2)
    done = phigate("offboard", party.vendor.name, "--reason", "contract ended")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    cert_id = report["scopes"][0]["certificate_id"]
    out = tmp_path / "cert.json"
    key = tmp_path / "key.pem"
    assert phigate("certificate", "export", cert_id, "--out", str(out)).returncode == 0
    pk = phigate("certificate", "public-key")
    key.write_text(pk.stdout)
    ok = phigate("certificate", "verify", str(out), "--public-key", str(key), "--check-storage")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["storage_checked"] == 2
    unknown = phigate("offboard", "nobody-at-all", "--reason", "x")
    assert unknown.returncode == 1 and "vendor_not_found" in unknown.stderr


def test_storage_outage_stops_the_job_and_a_rerun_finishes_it(components, party, seeded, db, monkeypatch):
    from retention.jobs import JobIncomplete
    from storage import StorageUnavailable

    seeded(3)
    real = type(components.store).destroy
    failing = {"on": True}

    def destroy(self, key):
        if failing["on"]:
            raise StorageUnavailable("simulated outage")
        return real(self, key)

    monkeypatch.setattr(type(components.store), "destroy", destroy)
    with pytest.raises(JobIncomplete):
        offboard(components, Actor.system(), party.vendor.id, reason="contract ended")
    files = _files(db, vendor_id=party.vendor.id)
    # Nothing claimed destroyed: every file still has its key, and no certificate exists.
    assert all(f.state == FileState.destroying for f in files)
    assert all(
        sealed_of(db, f.id).state.value == "destroying" and sealed_of(db, f.id).wrapped_dek is not None for f in files
    )
    assert db.scalar(select(func.count()).select_from(Certificate)) == 0
    assert events(db, "retention.job.interrupted")
    failing["on"] = False
    [job] = offboard(components, Actor.system(), party.vendor.id, reason="contract ended").jobs
    assert job.destroyed == 3
    assert all(f.state == FileState.destroyed for f in _files(db, vendor_id=party.vendor.id))


def test_a_vendor_offboarded_once_can_be_taken_on_again_under_a_new_key(
    components, party, session_for, db, factory, fake_clock
):
    """Offboarding destroys the pair's key for good; a new BAA starts a new key generation."""
    from gateway.audit.service import Actor as A
    from gateway.sealed.keys import live_relationship_key
    from tests.transfers.conftest import PDF, record_baa

    first_key = relationship_key(party.practice.id, party.vendor.id)
    staff = session_for(party.staff)
    assert staff.upload(party.vendor.id).status_code == 201
    offboard(components, A.system(), party.vendor.name, reason="contract ended")
    assert first_key not in components.keys.key_ids()

    # Months later: a new BAA and a new biller; files go out under generation 1.
    record_baa(components, party.practice, party.vendor)
    biller = factory.user("biller", party.vendor)
    fake_clock.advance(seconds=30)
    staff, approver = session_for(party.staff), session_for(party.approver)
    r = staff.upload(party.vendor.id)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    new_key = db.get(Transfer, tid).key_id
    db.commit()
    assert new_key == first_key + "-g1" == live_relationship_key(components.keys, party.practice.id, party.vendor.id)
    fid = approver.approve(tid).json()["files"][0]["id"]
    assert session_for(biller).download(tid, fid).content == PDF

    # Offboarding again destroys generation 1 and says so on the certificate.
    report = offboard(components, A.system(), party.vendor.name, reason="second contract ended")
    [job] = report.jobs
    assert job.key_evidence["destroyed"] is True and job.key_evidence["key_id"] == new_key
    assert new_key not in components.keys.key_ids()
