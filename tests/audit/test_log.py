"""The log itself: gap-free sequence, leaf hashes, checkpoints, proofs, tamper detection, pruning."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, text

from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditEvent, AuditTreeNode
from gateway.audit.sequencer import catch_up
from gateway.audit.service import Actor, event_leaf_hash, record_event
from gateway.auditor.search import Scope
from translog import merkle, note
from translog.leaf import format_time, leaf_hash_of


def _all(components):
    catch_up(components.db)  # what is queued first, as every reader of the log does
    with components.db.sessions() as db:
        return list(db.scalars(select(AuditEvent).order_by(AuditEvent.seq)))


def test_sequence_is_gap_free_and_a_rolled_back_action_leaves_no_gap(components, append):
    assert append(3) == [1, 2, 3]
    with pytest.raises(RuntimeError), components.db.transaction() as db:
        record_event(db, Action.ADMIN_ORG_CREATED, actor=Actor.system())
        raise RuntimeError("the action failed after its event was written")
    assert append(2) == [4, 5]
    events = _all(components)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert Action.ADMIN_ORG_CREATED not in {e.action for e in events}
    for e in events:
        assert e.leaf_hash == event_leaf_hash(e)
        assert len(e.leaf_hash) == 32


def test_leaf_is_sha256_of_zero_byte_and_canonical_json(components, append, fake_clock):
    append(1)
    e = _all(components)[0]
    canonical = (
        f'["phigate-audit-v1", 1, "{format_time(e.occurred_at)}", "keys.rewrapped", "success", "info", "u1", "o1", "192.0.2.1", '
        '"pytest", null, null, null, {"i": 0}]'
    ).encode()
    import hashlib

    assert e.leaf_hash == hashlib.sha256(b"\x00" + canonical).digest()


def test_details_that_could_not_serialise_stably_are_refused(components):
    with components.db.transaction() as db:
        with pytest.raises(TypeError):
            record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), details={"x": float("nan")})
        with pytest.raises(TypeError):
            record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), details={"x": {"nested": "dict"}})


def test_two_writers_appending_concurrently_make_no_fork_and_no_gap(components, verify, checkpoint):
    errors = []

    def writer(name):
        try:
            for i in range(25):
                with components.db.transaction() as db:
                    record_event(db, Action.KEYS_ROTATED, actor=Actor(user_agent=name), details={"i": i})
                    record_event(db, Action.KEYS_REWRAPPED, actor=Actor(user_agent=name), details={"i": i})
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"w{n}",)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    seqs = [e.seq for e in _all(components)]
    assert seqs == list(range(1, 101))
    checkpoint()
    report = verify()
    assert report.ok, report.problem
    assert report.events_checked == 100


def test_checkpoints_extend_incrementally_and_match_a_full_recomputation(components, append, checkpoint, signer):
    append(5)
    first = checkpoint()
    append(600)
    second = checkpoint()
    leaves = [e.leaf_hash for e in _all(components)]
    assert second.tree_size == 605
    assert second.root_hash == merkle.root_of(leaves)
    assert first.root_hash == merkle.root_of(leaves[:5])
    signed = note.verify(second.note, signer.public_key_raw())
    assert signed.tree_size == 605 and signed.root_hash == second.root_hash
    with components.db.sessions() as db:
        nodes = {(n.level, n.idx): n.hash for n in db.scalars(select(AuditTreeNode))}
    assert nodes[(8, 0)] == merkle.root_of(leaves[:256])
    assert nodes[(9, 0)] == merkle.root_of(leaves[:512])
    # Nothing new: no checkpoint.
    from gateway.audit.checkpoint import maybe_checkpoint

    assert maybe_checkpoint(components, force=True) is None


def test_periodic_checkpoint_waits_for_the_interval(components, append, fake_clock):
    from gateway.audit.checkpoint import maybe_checkpoint

    append(2)
    assert maybe_checkpoint(components).tree_size == 2
    append(1)
    assert maybe_checkpoint(components) is None
    fake_clock.advance(seconds=components.settings.audit_checkpoint_interval_seconds + 1)
    assert maybe_checkpoint(components).tree_size == 3


def test_proofs_from_the_store_verify_against_the_signed_checkpoint(components, append, checkpoint, signer):
    from gateway.auditor.proofs import consistency_proof, inclusion_proof

    append(300)
    small = checkpoint()
    append(333)
    big = checkpoint()
    with components.db.sessions() as db:
        for seq in (1, 2, 255, 256, 257, 300, 512, 600, 633):
            proof = inclusion_proof(db, Scope(None), seq)
            cp = note.verify(proof["checkpoint"], signer.public_key_raw())
            assert cp.tree_size == 633
            assert merkle.verify_inclusion(
                seq - 1,
                633,
                bytes.fromhex(proof["leaf_hash"]),
                [bytes.fromhex(h) for h in proof["inclusion_path"]],
                cp.root_hash,
            )
        proof = consistency_proof(db, small.tree_size, big.tree_size)
        old = note.verify(proof["first_checkpoint"], signer.public_key_raw())
        new = note.verify(proof["second_checkpoint"], signer.public_key_raw())
        assert merkle.verify_consistency(
            old.tree_size,
            new.tree_size,
            old.root_hash,
            new.root_hash,
            [bytes.fromhex(h) for h in proof["consistency_path"]],
        )


def test_postgresql_refuses_update_and_delete_of_events(components, append, checkpoint, verify, lane):
    """PostgreSQL refuses the rewrite itself; the embedded SQLite file cannot, so there verify catches it."""
    from sqlalchemy.exc import DBAPIError

    append(3)
    if lane[0] == "sqlite":
        checkpoint()
        with components.db.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET action = 'x' WHERE seq = 2"))
        report = verify()
        assert not report.ok and report.first_bad_seq == 2
        return
    for statement in ("UPDATE audit_events SET action = 'x' WHERE seq = 2", "DELETE FROM audit_events WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="append-only"), components.db.engine.begin() as conn:
            conn.execute(text(statement))
    assert [e.action for e in _all(components)] == [Action.KEYS_REWRAPPED] * 3


# -- tampering by SQL ----------------------------------------------------------------


def _forged_row(seq, base):
    fields = {
        "occurred_at": base.occurred_at,
        "action": "auth.login.succeeded",
        "outcome": "success",
        "severity": "info",
        "actor_user_id": "mallory",
        "actor_org_id": None,
        "ip": None,
        "user_agent": None,
        "target_type": None,
        "target_id": None,
        "target_org_id": None,
        "details": {},
    }
    leaf = leaf_hash_of(
        seq,
        format_time(base.occurred_at),
        "auth.login.succeeded",
        "success",
        "info",
        "mallory",
        None,
        None,
        None,
        None,
        None,
        None,
        {},
    )
    return {"seq": seq, **fields, "leaf_hash": leaf}


def _shift(conn, from_seq, delta):
    # Two steps so no intermediate row collides with the primary key.
    conn.execute(text("UPDATE audit_events SET seq = -seq WHERE seq >= :s"), {"s": from_seq})
    conn.execute(text("UPDATE audit_events SET seq = -seq + :d WHERE seq < 0"), {"d": delta})


def _edit(conn, events):
    conn.execute(text("UPDATE audit_events SET action = 'auth.login.succeeded' WHERE seq = 50"))


def _edit_details(conn, events):
    conn.execute(text("UPDATE audit_events SET ip = '198.51.100.7' WHERE seq = 50"))


def _delete(conn, events):
    conn.execute(text("DELETE FROM audit_events WHERE seq = 50"))


def _delete_and_renumber(conn, events):
    conn.execute(text("DELETE FROM audit_events WHERE seq = 50"))
    _shift(conn, 51, -1)


def _insert_and_renumber(conn, events):
    _shift(conn, 50, 1)
    conn.execute(insert(AuditEvent.__table__).values(**_forged_row(50, events[49])))


def _reorder(conn, events):
    conn.execute(text("UPDATE audit_events SET seq = -1 WHERE seq = 50"))
    conn.execute(text("UPDATE audit_events SET seq = 50 WHERE seq = 52"))
    conn.execute(text("UPDATE audit_events SET seq = 52 WHERE seq = -1"))


@pytest.mark.parametrize(
    "tamper",
    [_edit, _edit_details, _delete, _delete_and_renumber, _insert_and_renumber, _reorder],
    ids=lambda f: f.__name__.strip("_"),
)
def test_verify_names_the_first_event_where_the_log_was_altered(
    components, append, checkpoint, verify, verify_parallel, superuser, tamper
):
    append(40)
    checkpoint()
    append(60)
    checkpoint()
    assert verify().ok
    assert verify_parallel().ok
    events = _all(components)
    with superuser() as conn:
        tamper(conn, events)
    for run in (verify, verify_parallel):
        report = run()
        assert not report.ok
        assert report.first_bad_seq == 50, report.problem


def test_parallel_verification_matches_the_serial_one(components, append, checkpoint, verify, verify_parallel):
    append(300)
    checkpoint()
    append(45)
    checkpoint()
    append(5)
    serial, parallel = verify(), verify_parallel()
    assert serial.ok and parallel.ok
    assert (parallel.events_checked, parallel.checkpoints_checked, parallel.unsigned_events) == (350, 2, 5)
    assert serial.as_dict() == parallel.as_dict()


def test_a_rewrite_that_also_recomputes_leaf_hashes_is_caught_by_the_signed_checkpoint(
    components, append, checkpoint, verify, superuser
):
    append(40)
    checkpoint()
    append(60)
    checkpoint()
    e = _all(components)[49]
    forged_leaf = leaf_hash_of(
        50,
        format_time(e.occurred_at),
        "test.innocent",
        "success",
        "info",
        e.actor_user_id,
        e.actor_org_id,
        e.ip,
        e.user_agent,
        None,
        None,
        None,
        e.details,
    )
    with superuser() as conn:
        conn.execute(
            text("UPDATE audit_events SET action = 'test.innocent', leaf_hash = :h WHERE seq = 50"), {"h": forged_leaf}
        )
    report = verify()
    assert not report.ok
    # The leaf is self-consistent; the checkpoint signed after event 40 still holds, the next one does not.
    assert report.first_bad_seq == 41
    assert "checkpoint" in report.problem


def test_a_forged_checkpoint_fails_verification(components, append, checkpoint, verify, superuser):
    append(10)
    cp = checkpoint()
    forged = cp.note.replace("\n10\n", "\n9\n")
    with superuser() as conn:
        conn.execute(text("UPDATE audit_checkpoints SET note = :n WHERE id = :i"), {"n": forged, "i": cp.id})
    report = verify()
    assert not report.ok and "signature" in report.problem


def test_deleting_signed_events_at_the_tail_is_detected(components, append, checkpoint, verify, superuser):
    append(10)
    checkpoint()
    with superuser() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 8"))
    report = verify()
    assert not report.ok and report.first_bad_seq == 8


def test_a_checkpoint_is_never_signed_over_an_altered_row(components, append, checkpoint, superuser):
    from gateway.audit.tree import LogBroken

    append(10)
    with superuser() as conn:
        conn.execute(text("UPDATE audit_events SET action = 'test.other' WHERE seq = 4"))
    with pytest.raises(LogBroken) as caught:
        checkpoint()
    assert caught.value.seq == 4
    with components.db.sessions() as db:
        assert db.scalar(select(func.count()).select_from(AuditCheckpoint)) == 0


# -- retention -------------------------------------------------------------------------


def test_pruning_old_events_keeps_the_log_verifiable(components, append, checkpoint, verify, fake_clock, signer):
    from gateway.audit.checkpoint import prune
    from gateway.auditor.proofs import inclusion_proof

    append(700)
    checkpoint()
    fake_clock.advance(days=365 * 7)
    append(20)
    base = prune(components, Actor.system())
    assert base == 512  # a bucket boundary below the first young event (701)
    events = _all(components)
    assert events[0].seq == 513 and events[-1].action == "audit.log.pruned"
    assert events[-1].seq == 721
    report = verify()
    assert report.ok, report.problem
    assert report.prune_base == 512 and report.events_checked == len(events)
    append(1)
    checkpoint()
    with components.db.sessions() as db:
        proof = inclusion_proof(db, Scope(None), 600)
    cp = note.verify(proof["checkpoint"], signer.public_key_raw())
    assert merkle.verify_inclusion(
        599,
        cp.tree_size,
        bytes.fromhex(proof["leaf_hash"]),
        [bytes.fromhex(h) for h in proof["inclusion_path"]],
        cp.root_hash,
    )
    assert verify().ok


def test_nothing_is_pruned_inside_the_retention_period(components, append, fake_clock):
    from gateway.audit.checkpoint import prune

    append(600)
    fake_clock.advance(days=365 * 5)
    assert prune(components, Actor.system()) == 0
    assert _all(components)[0].seq == 1


def test_prune_window_default_is_six_years(settings):
    assert settings.audit_retention_years == 6


def test_time_is_recorded_in_utc_with_microseconds(components, append, fake_clock):
    fake_clock.advance(microseconds=123)
    append(1)
    e = _all(components)[0]
    assert e.occurred_at == fake_clock.current and format_time(e.occurred_at).endswith("Z")
    assert e.occurred_at.utcoffset() == timedelta(0)


def test_a_crash_between_action_and_event_cannot_leave_one_without_the_other(components, factory):
    from gateway.users.models import Role
    from gateway.users.service import create_user

    org = factory.org("vendor")
    before = len(_all(components))
    with pytest.raises(ConnectionError), components.db.transaction() as db:
        from gateway.orgs.models import Organisation

        _user, _ = create_user(
            db, db.get(Organisation, org.id), "crashy", "Crash Test", "c@example.invalid", Role.biller, Actor.system()
        )
        db.flush()
        raise ConnectionError("the process died before COMMIT")
    from gateway.users.models import User

    with components.db.sessions() as db:
        assert db.scalar(select(User).where(User.username == "crashy")) is None
    assert len(_all(components)) == before


def test_the_in_process_scheduler_signs_checkpoints_and_runs_alerts(components, append):
    from gateway.audit.checkpoint import latest_checkpoint
    from gateway.auditor.jobs import AuditJobs

    append(25, action=Action.TRANSFER_DOWNLOAD_COMPLETED)
    AuditJobs(components).tick()
    with components.db.sessions() as db:
        assert latest_checkpoint(db).tree_size >= 25
        actions = set(db.scalars(select(AuditEvent.action)))
    assert "audit.alert.raised" in actions  # 25 downloads by one user in minutes: a burst


def test_default_workers_follow_the_affinity_mask(monkeypatch):
    import os

    from gateway.audit.verify import default_workers

    for cores, workers in ((1, 1), (2, 2), (3, 3), (8, 4)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid, n=cores: set(range(n)), raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 64)
        assert default_workers() == workers
