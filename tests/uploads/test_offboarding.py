"""Offboarding a vendor destroys every unfinished upload between it and the practice, both ways (open or
completed and not yet a transfer): objects and staged tails gone, each audited with its job, counted in the
run report; an upload with another vendor is untouched."""

from __future__ import annotations

from sqlalchemy import select

from gateway.audit.service import Actor
from gateway.uploads.models import Upload, UploadState
from retention.offboarding import offboard
from tests.transfers.conftest import events, live_sealed, record_baa
from tests.uploads.conftest import MiB, synthetic_pdf


def test_offboarding_destroys_unfinished_uploads_both_ways(components, party, factory, tus_for, db):
    staff, biller = tus_for(party.staff), tus_for(party.biller)
    data = synthetic_pdf(3 * MiB, b"offboard")
    outbound = staff.create(len(data), partner_id=party.vendor.id).headers["Location"]
    assert staff.patch(outbound, 0, data[: 2 * MiB]).status_code == 204
    inbound = biller.create(len(data), partner_id=party.practice.id, filename="remit.pdf").headers["Location"]
    assert biller.patch(inbound, 0, data[:MiB]).status_code == 204
    completed = staff.create(len(data), partner_id=party.vendor.id, body=data).headers["Location"]
    other_vendor = factory.org("vendor")
    record_baa(components, party.practice, other_vendor)
    elsewhere = staff.create(len(data), partner_id=other_vendor.id).headers["Location"]
    assert staff.patch(elsewhere, 0, data[:MiB]).status_code == 204
    ours = {u.rsplit("/", 1)[1] for u in (outbound, inbound, completed)}
    keys = [r.object_key for r in live_sealed(db) if r.owner_id in ours]
    assert len(keys) == 3

    report = offboard(components, Actor.system(), party.vendor.name, reason="contract ended")

    (job,) = report.jobs
    summary = report.as_dict()
    assert summary["unfinished_uploads_destroyed"] == 3
    assert summary["unfinished_upload_bytes_destroyed"] == 2 * MiB + MiB + len(data)
    assert summary["unfinished_upload_objects_left_for_fsck"] == 0
    destroyed = events(db, "upload.offboarded")
    assert sorted(e.target_id for e in destroyed) == sorted(ours)
    assert {(e.details["job_id"], e.details["why"]) for e in destroyed} == {(job.job_id, "vendor_offboarded")}
    assert all(components.store.verify_absent(k).absent for k in keys)
    assert [r.owner_id for r in live_sealed(db)] == [elsewhere.rsplit("/", 1)[1]]
    db.expire_all()
    states = {u.id: u.state for u in db.scalars(select(Upload))}
    db.commit()
    assert {states[i] for i in ours} == {UploadState.offboarded}
    assert states[elsewhere.rsplit("/", 1)[1]] == UploadState.open
    # The sender is told why, and nothing can be added to it.
    r = staff.patch(outbound, 2 * MiB, data[2 * MiB :])
    assert r.status_code == 410 and r.json()["error"]["code"] == "upload_offboarded"
    assert staff.patch(elsewhere, MiB, data[MiB:]).status_code == 204
