"""Retention runs: policies and overrides, what is due, legal holds, dry runs, two runners, tombstones."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from gateway.audit.service import Actor
from gateway.transfers.models import FileState, Transfer, TransferFile, TransferStatus
from retention.errors import RunnerBusy
from retention.holds import place_hold, release_hold
from retention.lock import RunnerLease
from retention.models import Certificate, DestructionRecord, RunnerLock
from retention.policies import effective, set_policy
from retention.runner import run
from tests.retention.conftest import ROOT, env_for, events
from tests.transfers.conftest import sealed_of


def _states(db, ids):
    db.expire_all()
    out = {t: {f.state for f in db.scalars(select(TransferFile).where(TransferFile.transfer_id == t))} for t in ids}
    db.commit()
    return out


def test_default_policy_destroys_only_what_is_due(components, party, seeded, db):
    due = (
        seeded(2, ended_days_ago=31)
        + seeded(1, status=TransferStatus.rejected, ended_days_ago=31)
        + seeded(1, status=TransferStatus.revoked, ended_days_ago=31)
    )
    young = seeded(2, ended_days_ago=29)
    waiting = seeded(1, status=TransferStatus.awaiting_approval, ended_days_ago=400)
    report = run(components, Actor.system())
    assert report.as_dict()["objects_destroyed"] == 4
    states = _states(db, due + young + waiting)
    assert all(states[t] == {FileState.destroyed} for t in due)
    assert all(states[t] == {FileState.stored} for t in young + waiting)
    [job] = report.jobs
    cert = db.get(Certificate, job.certificate_id)
    db.commit()
    body = json.loads(cert.document)["certificate"]
    assert body["scope"]["kind"] == "retention" and body["key_evidence"] is None
    assert len(body["objects"]) == 4
    # A second run has nothing to do and issues nothing.
    assert run(components, Actor.system()).jobs == []


def test_pair_override_beats_practice_policy(components, party, factory, seeded, db):
    with components.db.transaction() as s:
        set_policy(
            s, components.settings, party.practice.id, None, keep_days=5, max_access_days=10, actor=Actor.system()
        )
    assert effective(db, components.settings, party.practice.id, party.vendor.id).keep_days == 5
    db.commit()
    seven = seeded(1, ended_days_ago=7)
    assert run(components, Actor.system()).as_dict()["objects_destroyed"] == 1
    with components.db.transaction() as s:
        set_policy(
            s,
            components.settings,
            party.practice.id,
            party.vendor.id,
            keep_days=60,
            max_access_days=None,
            actor=Actor.system(),
        )
    pol = effective(db, components.settings, party.practice.id, party.vendor.id)
    db.commit()
    assert (pol.keep_days, pol.source) == (60, "pair")
    forty = seeded(1, ended_days_ago=40)
    assert run(components, Actor.system()).jobs == []
    assert _states(db, forty)[forty[0]] == {FileState.stored} and _states(db, seven)[seven[0]] == {FileState.destroyed}
    changes = events(db, "retention.policy.updated")
    assert [e.details["keep_days"] for e in changes] == [5, 60]


def test_policy_validation(components, party, db):
    from gateway.errors import InvalidInput, NotFound

    with pytest.raises(InvalidInput):
        set_policy(
            db, components.settings, party.practice.id, None, keep_days=-1, max_access_days=None, actor=Actor.system()
        )
    with pytest.raises(InvalidInput):
        set_policy(
            db, components.settings, party.practice.id, None, keep_days=3, max_access_days=10_000, actor=Actor.system()
        )
    with pytest.raises(NotFound):
        set_policy(
            db, components.settings, party.vendor.id, None, keep_days=3, max_access_days=None, actor=Actor.system()
        )
    db.rollback()


@pytest.mark.parametrize("scope", ["transfer", "vendor", "practice"])
def test_legal_hold_suspends_destruction_and_is_named(components, party, seeded, db, scope):
    held_t, free_t = seeded(1, ended_days_ago=90), seeded(2, ended_days_ago=90)
    target = {"transfer": held_t[0], "vendor": party.vendor.id, "practice": party.practice.id}[scope]
    with components.db.transaction() as s:
        hold = place_hold(s, scope, target, "MATTER-2026-17", Actor.system())
    dry = run(components, Actor.system(), dry_run=True).as_dict()
    assert [h["hold_id"] for h in dry["held"]] == [hold.id]
    report = run(components, Actor.system()).as_dict()
    assert [h["hold_id"] for h in report["held"]] == [hold.id]
    states = _states(db, held_t + free_t)
    assert states[held_t[0]] == {FileState.stored}
    if scope == "transfer":
        assert report["held"][0]["objects"] == 1 and report["objects_destroyed"] == 2
        assert all(states[t] == {FileState.destroyed} for t in free_t)
        cert = db.scalar(select(Certificate))
        body = json.loads(cert.document)["certificate"]
        assert body["retained_under_legal_hold"][0]["hold_id"] == hold.id
    else:
        assert report["held"][0]["objects"] == 3 and report["objects_destroyed"] == 0
        assert all(states[t] == {FileState.stored} for t in free_t)
    db.commit()
    # Released: the next run destroys it.
    with components.db.transaction() as s:
        release_hold(s, hold.id, Actor.system())
    run(components, Actor.system())
    assert _states(db, held_t)[held_t[0]] == {FileState.destroyed}
    assert len(events(db, "retention.hold.placed")) == 1 and len(events(db, "retention.hold.released")) == 1


def test_offboarding_under_hold_keeps_held_files_and_the_key(components, party, seeded, db):
    from retention.offboarding import offboard

    held_t, free_t = seeded(1), seeded(2)
    with components.db.transaction() as s:
        hold = place_hold(s, "transfer", held_t[0], "MATTER-9", Actor.system())
    [job] = offboard(components, Actor.system(), party.vendor.id, reason="contract ended").jobs
    assert job.destroyed == 2 and job.held[0]["hold_id"] == hold.id
    assert job.key_evidence["destroyed"] is False and "legal hold" in job.key_evidence["reason"]
    states = _states(db, held_t + free_t)
    assert states[held_t[0]] == {FileState.stored} and all(states[t] == {FileState.destroyed} for t in free_t)
    with components.db.transaction() as s:
        release_hold(s, hold.id, Actor.system())
    # Offboarding again finishes the scope with a supplementary certificate, and now destroys the key.
    [job2] = offboard(components, Actor.system(), party.vendor.id, reason="hold released").jobs
    assert job2.destroyed == 1 and job2.key_evidence["destroyed"] is True
    body = json.loads(db.get(Certificate, job2.certificate_id).document)["certificate"]
    db.commit()
    assert body["supplements"] == job.certificate_id


def test_dry_run_changes_nothing(components, party, seeded, db):
    seeded(3, ended_days_ago=45)
    before = len(events(db))
    report = run(components, Actor.system(), dry_run=True).as_dict()
    assert report["due"][0]["objects"] == 3 and report["objects_destroyed"] == 0
    assert len(events(db)) == before
    assert db.scalar(select(func.count()).select_from(DestructionRecord)) == 0
    db.commit()


def test_second_runner_exits_clearly_while_one_works(components, party, seeded, phigate, settings, db):
    seeded(2, ended_days_ago=45)
    holder = RunnerLease(components.db)
    holder.acquire()
    try:
        with pytest.raises(RunnerBusy):
            run(components, Actor.system())
        busy = phigate("retention", "run")
        assert busy.returncode == 3 and "runner_busy" in busy.stderr and "nothing was done" in busy.stderr
        assert db.scalar(select(func.count()).select_from(DestructionRecord)) == 0
        db.commit()
    finally:
        holder.release()
    assert phigate("retention", "run").returncode == 0


def test_two_runner_processes_at_once(components, party, seeded, settings, db):
    """Two real processes start together: one destroys everything, the other waits (--wait) or is refused."""
    seeded(30, ended_days_ago=45)
    cmd = [sys.executable, "-c", "from gateway.cli import main; main()", "retention", "run"]
    env = env_for(settings, PHIGATE_RETENTION_BATCH_SIZE=1)
    procs = [
        subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate() for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes in ([0, 0], [0, 3]), outs
    destroyed = [
        json.loads(o)["objects_destroyed"] for (o, _), p in zip(outs, procs, strict=False) if p.returncode == 0
    ]
    assert sum(destroyed) == 30
    assert db.scalar(select(func.count()).select_from(Certificate)) == len([d for d in destroyed if d])
    assert db.scalar(select(func.count()).select_from(RunnerLock)) == 0
    db.commit()


def test_lease_of_a_killed_runner_on_this_host_is_taken_over(components):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket
    from datetime import UTC, datetime, timedelta

    with components.db.transaction() as s:
        now = datetime.now(UTC)
        s.add(
            RunnerLock(
                name="destruction",
                owner=f"{socket.gethostname()}|{dead.pid}|x",
                acquired_at=now,
                lease_until=now + timedelta(hours=1),
            )
        )
    lease = RunnerLease(components.db)
    lease.acquire()
    lease.release()
    # A live holder on another host is respected until its lease ends.
    with components.db.transaction() as s:
        s.add(
            RunnerLock(
                name="destruction",
                owner="elsewhere|1|y",
                acquired_at=datetime.now(UTC),
                lease_until=datetime.now(UTC) + timedelta(seconds=1),
            )
        )
    with pytest.raises(RunnerBusy):
        RunnerLease(components.db).acquire()
    time.sleep(1.1)
    RunnerLease(components.db).acquire()


def test_tombstones_keep_ids_sizes_hashes_times(components, party, seeded, db):
    [tid] = seeded(1, ended_days_ago=40)
    f = db.scalar(select(TransferFile).where(TransferFile.transfer_id == tid))
    size, sha = f.size, f.sha256
    db.commit()
    run(components, Actor.system())
    db.expire_all()
    t = db.get(Transfer, tid)
    [f] = t.files
    assert t.status == TransferStatus.destroyed and t.note_sealed is None
    assert (f.size, f.sha256) == (size, sha) and f.destroyed_at is not None
    assert sealed_of(db, f.id).wrapped_dek is None and f.name_sealed is None
    db.commit()


def test_no_phi_in_events_or_certificates(components, party, seeded, db):
    seeded(2, ended_days_ago=40)
    run(components, Actor.system())
    cert = db.scalar(select(Certificate))
    db.commit()
    blob = cert.document.decode() + json.dumps([e.details for e in events(db)])
    # The synthetic file names and content must appear nowhere.
    assert "claim-" not in blob and "synthetic claim attachment" not in blob


def test_a_waiting_runner_works_once_the_other_finishes(components, party, seeded, db):
    import threading

    seeded(2, ended_days_ago=45)
    holder = RunnerLease(components.db)
    holder.acquire()
    releaser = threading.Timer(0.5, holder.release)
    releaser.start()
    report = run(components, Actor.system(), wait_seconds=60)
    releaser.join()
    assert report.as_dict()["objects_destroyed"] == 2
