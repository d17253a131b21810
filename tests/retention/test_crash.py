"""kill -9 of the offboarding / retention process right after each step, then a rerun: every object
destroyed exactly once, one certificate listing all of them, the audit log verifying."""

from __future__ import annotations

import json
import signal

import pytest
from sqlalchemy import func, select

from gateway.transfers.models import FileState, Transfer, TransferFile
from retention.certificates import verify_document
from retention.models import Certificate, DestructionRecord
from tests.retention.conftest import events
from tests.transfers.conftest import sealed_of

# step[:n]: killed right after the n-th completion of the step (batches of 2 objects, 5 objects).
OFFBOARDING_STEPS = [
    "offboarding_started",
    "destroying",
    "storage",
    "storage_destroyed",
    "crypto_shredded",
    "destroyed",
    "destroying:2",
    "storage:3",
    "destroyed:2",
    "key_destroyed",
    "checkpoint",
    "certificate_issued",
]


def _check_outcome(components, db, vendor_id, n_files, *, key_destroyed: bool):
    from gateway.audit.service import Actor
    from gateway.audit.verify import run_verification

    db.expire_all()
    files = list(db.scalars(select(TransferFile).join(Transfer).where(Transfer.vendor_id == vendor_id)))
    assert len(files) == n_files
    assert all(f.state == FileState.destroyed and sealed_of(db, f.id).wrapped_dek is None for f in files)
    assert all(sealed_of(db, f.id).state.value == "destroyed" for f in files)
    assert all(components.store.verify_absent(sealed_of(db, f.id).object_key).absent for f in files)
    assert db.scalar(select(func.count()).select_from(DestructionRecord)) == n_files
    certs = list(db.scalars(select(Certificate)))
    db.commit()
    assert len(certs) == 1
    result, body = verify_document(certs[0].document)
    assert result.ok
    assert sorted(e["object_id"] for e in body["objects"]) == sorted(f.id for f in files)
    for f in files:  # each object went through the final step exactly once
        assert len([e for e in events(db, "retention.object.destroyed") if e.details["file_id"] == f.id]) == 1
        assert len([e for e in events(db, "retention.object.crypto_shredded") if e.details["file_id"] == f.id]) == 1
    assert len(events(db, "retention.certificate.issued")) == 1
    if key_destroyed:
        assert body["key_evidence"]["destroyed"] is True
    assert run_verification(components, Actor.system()).ok


@pytest.mark.parametrize("step", OFFBOARDING_STEPS)
def test_offboarding_killed_at_each_step_then_rerun(phigate, components, party, seeded, db, step):
    seeded(4)
    seeded(1, files_per_transfer=1)
    args = ("offboard", party.vendor.id, "--reason", "contract ended")
    killed = phigate(*args, env={"PHIGATE_TEST_KILL_AFTER": step, "PHIGATE_RETENTION_BATCH_SIZE": 2})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    rerun = phigate(*args, env={"PHIGATE_RETENTION_BATCH_SIZE": 2})
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    if step == "certificate_issued":
        # The first run finished everything: the rerun finds the scope already offboarded.
        assert report["scopes"] == [] and len(report["already_offboarded_certificates"]) == 1
    _check_outcome(components, db, party.vendor.id, 5, key_destroyed=True)
    # A third run changes nothing.
    assert phigate(*args).returncode == 0
    assert db.scalar(select(func.count()).select_from(Certificate)) == 1
    db.commit()


@pytest.mark.parametrize(
    "step", ["retention_started", "destroying", "storage", "crypto_shredded", "destroyed:2", "checkpoint"]
)
def test_retention_run_killed_then_rerun(phigate, components, party, seeded, db, step):
    seeded(5, ended_days_ago=40)
    killed = phigate("retention", "run", env={"PHIGATE_TEST_KILL_AFTER": step, "PHIGATE_RETENTION_BATCH_SIZE": 2})
    assert killed.returncode == -signal.SIGKILL
    rerun = phigate("retention", "run", env={"PHIGATE_RETENTION_BATCH_SIZE": 2})
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["resumed_jobs"]
    _check_outcome(components, db, party.vendor.id, 5, key_destroyed=False)


def test_offboarding_finishes_an_interrupted_retention_run_of_the_pair_first(phigate, components, party, seeded, db):
    old = seeded(2, ended_days_ago=40)
    seeded(2)
    killed = phigate("retention", "run", env={"PHIGATE_TEST_KILL_AFTER": "storage_destroyed"})
    assert killed.returncode == -signal.SIGKILL
    done = phigate("offboard", party.vendor.id, "--reason", "contract ended")
    assert done.returncode == 0, done.stderr
    db.expire_all()
    certs = {c.kind.value: json.loads(c.document)["certificate"] for c in db.scalars(select(Certificate))}
    db.commit()
    assert sorted(e["transfer_id"] for e in certs["retention"]["objects"]) == sorted(old)
    assert len(certs["offboarding"]["objects"]) == 2 and certs["offboarding"]["key_evidence"]["destroyed"]
    files = list(db.scalars(select(TransferFile)))
    db.commit()
    assert all(f.state == FileState.destroyed for f in files)
