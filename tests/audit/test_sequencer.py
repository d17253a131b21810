"""The audit queue and its integrator (gateway/audit/sequencer.py): no event without its action, gap-free
numbers with concurrent writers, the bound on the integration delay, and what verification says meanwhile."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gateway.audit.actions import Action
from gateway.audit.models import AuditEvent, AuditQueued
from gateway.audit.sequencer import integrate, integrate_in, queued_count, seq_of
from gateway.audit.service import APPEND_LOCK_KEY, Actor, record_event, record_events_bulk
from gateway.scheduler import Scheduler


def _counts(components) -> tuple[int, int]:
    """(events in the log, events in the queue)."""
    with components.db.snapshot() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent)) or 0, queued_count(db)


@pytest.fixture
def bare_process(components):
    """A process whose commits do not integrate (as one killed right after its commit): a Database without
    the after-commit hook that gateway/components.py installs."""
    from gateway.db import Database

    database = Database(components.settings.effective_database_url)
    yield database
    database.dispose()


@contextmanager
def append_lock_held(components):
    """Another session holds the append lock (an integration or a bulk append in progress), on PostgreSQL."""
    with components.db.engine.connect() as conn, conn.begin():
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY})
        yield


def test_the_integrate_job_runs_on_its_own_thread_beside_a_long_job(components, bare_process):
    """The bound holds while another scheduled job runs long (a checkpoint of a big log, retention): the
    integrate job has a thread of its own. The long job here blocks until the queue is empty."""
    import dataclasses

    job = _integrate_job(components)
    assert job.own_thread
    with bare_process.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    emptied, released = threading.Event(), threading.Event()

    def long_job() -> None:
        # Runs on the scheduler's shared thread; only the integrate job's own thread can empty the queue.
        while not released.is_set():
            if _counts(components)[1] == 0:
                emptied.set()
            released.wait(0.01)

    from gateway.scheduler import Job

    scheduler = Scheduler(
        [Job("long", 0.01, long_job), dataclasses.replace(job, interval_seconds=0.01, leader_only=False)]
    )
    scheduler.start()
    try:
        assert emptied.wait(60), "the queue was not integrated while another job ran"
    finally:
        released.set()
        scheduler.shutdown()


def _integrate_job(components):
    from gateway.jobs import serve_jobs

    (job,) = [j for j in serve_jobs(components) if j.name == "audit-integrate"]
    return job


def test_where_a_committed_event_is_when_its_transaction_returns(components):
    """SQLite: in the log (the commit integrated it). PostgreSQL: in the queue until the leader's job runs."""
    before, _ = _counts(components)
    with components.db.transaction() as db:
        events = [record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), details={"i": i}) for i in range(3)]
    if components.db.dialect == "postgresql":
        assert [e.seq for e in events] == [None] * 3 and _counts(components) == (before, 3)
        Scheduler.run_once(_integrate_job(components))
        seqs = {e.id: seq_of(components.db, e) for e in events}
    else:
        seqs = {e.id: e.seq for e in events}
    # Numbered in the order the transaction recorded them, after what the log held, without a gap.
    assert [seqs[e.id] for e in events] == [before + 1, before + 2, before + 3]
    assert _counts(components) == (before + 3, 0)


def test_a_postgresql_writer_sends_its_insert_and_nothing_else(components):
    """The recording transaction's whole cost on PostgreSQL: one INSERT into the queue (no try-lock, no read of
    the queue or the log), so it holds nothing any other transaction waits for, nor waits for anything."""
    if components.db.dialect != "postgresql":
        pytest.skip("SQLite integrates at commit, under the write lock its transaction holds anyway")
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    sa_event.listen(components.db.engine, "before_cursor_execute", seen)
    try:
        with components.db.transaction() as db:
            record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    finally:
        sa_event.remove(components.db.engine, "before_cursor_execute", seen)
    assert len(statements) == 1 and statements[0].startswith("INSERT INTO audit_queue"), statements


def test_a_rolled_back_action_leaves_no_queued_event(components):
    before = _counts(components)
    with pytest.raises(RuntimeError), components.db.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
        db.flush()  # the queue row is written, inside the transaction
        raise RuntimeError("the action failed")
    assert _counts(components) == before
    # And the numbering goes on without a gap.
    with components.db.transaction() as db:
        queued = record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    seq = seq_of(components.db, queued)
    with components.db.snapshot() as db:
        assert db.scalar(select(func.max(AuditEvent.seq))) == seq == before[0] + 1


def test_an_event_left_in_the_queue_is_integrated_by_the_leaders_job(components, bare_process):
    """The bound on the delay: the leader runs this job every PHIGATE_AUDIT_INTEGRATE_SECONDS."""

    before, _ = _counts(components)
    with bare_process.transaction() as db:
        event = record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), details={"left": 1})
    assert event.seq is None and _counts(components) == (before, 1)
    job = _integrate_job(components)
    assert job.leader_only and job.own_thread
    assert job.interval_seconds == components.settings.audit_integrate_seconds == 1.0
    Scheduler.run_once(job)
    assert _counts(components) == (before + 1, 0)
    with components.db.snapshot() as db:
        stored = db.scalar(select(AuditEvent).where(AuditEvent.seq == before + 1))
    assert stored.action == Action.KEYS_ROTATED and stored.details == {"left": 1}


@pytest.mark.parametrize("severity", ["info", "high"])
def test_a_writer_never_waits_for_the_append_lock(components, severity):
    """While another transaction holds the append lock, an action and its event still commit at once
    (a wait would fail on the lock timeout); the event waits in the queue for the integrate job. A
    high-severity event's commit tries the lock (to send its alert with the request), never waits for it."""
    if components.db.dialect != "postgresql":
        pytest.skip("SQLite has one write lock for everything: writers take turns there")
    before, _ = _counts(components)
    with append_lock_held(components):
        with components.db.transaction() as db:
            db.execute(text("SET LOCAL lock_timeout = '50ms'"))
            queued = record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), severity=severity)
        assert queued.seq is None and _counts(components) == (before, 1)
    Scheduler.run_once(_integrate_job(components))
    # A high-severity event brings its alert's own event (audit.alert.raised) into the log with it.
    assert _counts(components) == (before + (2 if severity == "high" else 1), 0)


def test_concurrent_writers_get_gap_free_numbers(components, checkpoint, verify):
    if components.db.dialect != "postgresql":
        pytest.skip("concurrent writers are PostgreSQL's (SQLite serialises every write)")
    writers, each = 8, 25
    handles: list[list] = [[] for _ in range(writers)]
    failures: list[Exception] = []
    start = threading.Barrier(writers)

    def write(n: int) -> None:
        try:
            start.wait()
            for _ in range(each):
                with components.db.transaction() as db:
                    handles[n].append(record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), details={"w": n}))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    integrate(components.db)  # what the leader's job does for events that met a busy lock
    with components.db.snapshot() as db:
        seqs = db.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
        assert queued_count(db) == 0
    assert seqs == list(range(1, writers * each + 1))
    given = [h.seq for hs in handles for h in hs if h.seq is not None]
    assert len(given) == len(set(given)) and set(given) <= set(seqs)
    checkpoint()
    report = verify()
    assert report.ok and report.tree_size == writers * each and report.queued_events == 0


def test_verification_reports_the_events_not_yet_integrated(components, append, checkpoint, verify, bare_process):
    append(2)
    checkpoint()
    with bare_process.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    report = verify()
    # The log itself is intact; the queued event has no place in it yet, so nothing checks it.
    assert report.ok and report.tree_size == 2 and report.queued_events == 1
    integrate(components.db)
    checkpoint()
    report = verify()
    assert report.ok and report.tree_size == 3 and report.queued_events == 0


def test_the_cli_says_how_many_events_are_queued(components, monkeypatch, settings, bare_process):
    from typer.testing import CliRunner

    from gateway.cli import app

    with bare_process.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    monkeypatch.setenv("PHIGATE_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("PHIGATE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PHIGATE_KEY_PROVIDER_URL", settings.key_provider_url)
    monkeypatch.setenv("PHIGATE_STORAGE_URL", settings.storage_url)
    result = CliRunner().invoke(app, ["audit", "verify"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 events queued, not yet integrated: not covered by this verification" in result.output


def test_a_failing_high_severity_hook_does_not_hold_the_log_back(components, monkeypatch, caplog):
    from gateway.audit import service

    def broken(db, event):
        raise RuntimeError("sink exploded")

    monkeypatch.setattr(service, "_high_severity_hooks", [broken])
    before, _ = _counts(components)
    with components.db.transaction() as db:
        event = record_event(db, Action.KEYS_ROTATED, actor=Actor.system(), severity="high")
    assert event.seq == before + 1 and _counts(components) == (before + 1, 0)
    assert any("high-severity hook broken failed" in r.getMessage() for r in caplog.records)


# -- PostgreSQL: the queue's rows leave it only into the log ------------------------------------------


def _queued_row(bare_process) -> int:
    with bare_process.transaction() as db:
        event = record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    return event.id


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("UPDATE audit_queue SET action = 'x'", "audit_queue: UPDATE refused"),
        ("DELETE FROM audit_queue", "audit_queue: DELETE refused"),
        ("TRUNCATE audit_queue", "append-only: TRUNCATE refused"),
    ],
)
def test_a_queued_event_cannot_be_changed_or_dropped(components, bare_process, statement, why):
    if components.db.dialect != "postgresql":
        pytest.skip("triggers are PostgreSQL's")
    queued = _queued_row(bare_process)
    with pytest.raises(DBAPIError) as refused, components.db.engine.begin() as conn:
        conn.execute(text(statement))
    assert isinstance(refused.value.orig, psycopg.errors.InsufficientPrivilege)
    assert why in str(refused.value.orig)
    with components.db.snapshot() as db:
        assert db.scalar(select(AuditQueued.id)) == queued
    integrate(components.db)  # the integrator itself deletes it, once the log holds it
    assert _counts(components)[1] == 0


# Rows of audit_events this transaction has read: by scanning it, and entries returned by each of its indexes.
_ROWS_READ = text(
    "SELECT pg_stat_get_xact_tuples_returned('audit_events'::regclass)"
    " + (SELECT sum(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index"
    " WHERE indrelid = 'audit_events'::regclass)"
)


def test_the_queue_guard_reads_only_the_events_of_one_instant(components, bare_process):
    """Moving an event out of the queue reads only the events of its instant, whatever the planner knows.

    A log of a million, bulk-loaded and not yet analysed, made migration 0016's guard read 166,667 index
    entries per event (bench/audit.py; migration 0017). At this test's size that planner stays cheap too, so
    the test bounds the reads of today's guard rather than reproducing the million."""
    if components.db.dialect != "postgresql":
        pytest.skip("triggers are PostgreSQL's")
    with bare_process.transaction() as db:
        start = datetime(2026, 1, 1, tzinfo=UTC)  # the suite's clock may stand still: a past instant each
        record_events_bulk(
            db, [{"action": Action.KEYS_ROTATED, "occurred_at": start + timedelta(seconds=i)} for i in range(20_000)]
        )
    with bare_process.transaction() as db:  # info events: no alert rule reads the log when they arrive
        for _ in range(5):
            record_event(db, Action.AUTH_LOGIN_SUCCEEDED, actor=Actor.system())
    with components.db.engine.begin() as conn:  # as right after a bulk load: the planner knows nothing of the log
        conn.execute(text("DELETE FROM pg_statistic WHERE starelid = 'audit_events'::regclass"))
    with components.db.engine.begin() as conn:  # the integrator's work, counted in its own transaction
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY})
        before = conn.scalar(_ROWS_READ)
        assert len(integrate_in(Session(bind=conn))) == 5  # each DELETE from the queue runs the guard
        read = conn.scalar(_ROWS_READ) - before
    assert _counts(components)[1] == 0
    # The suite's clock stands still, so the five share one instant: five rows for each, and the last number.
    assert read <= 5 * 5 + 1, read
