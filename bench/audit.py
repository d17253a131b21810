"""Audit log benchmark: append, checkpoint, verify, export, inclusion proofs, on SQLite and PostgreSQL.

    python bench/audit.py [--quick] [--events N] [--only sqlite|postgresql]

Per database, in its own subprocess (so ``peak_rss_mb`` is that database's own
``ru_maxrss``), on a fresh temporary database (a SQLite file, or a PostgreSQL
database created on 127.0.0.1:5432 as user postgres and dropped afterwards):

* append N events (1,000,000; --quick: 50,000) through the bulk path
  ``record_events_bulk()`` (same lock, numbering and leaf hashing as
  ``record_event()``), 5,000 per transaction -> ``append_events_per_s``; and
  20,000 through ``record_event()`` itself, 200 per transaction, until they are in the log ->
  ``append_record_event_per_s``;
* PostgreSQL only: WRITERS (8) processes at once, each calling ``record_event()`` in its own
  transaction of one event (1,000 each; --quick: 250) through a ``Database`` with the product's
  default pool settings and the commit hooks every gateway process installs
  (gateway/audit/sequencer.py), while one more process integrates the queue every
  ``PHIGATE_AUDIT_INTEGRATE_SECONDS`` (default 1), as the scheduler's leader does ->
  ``append_concurrent_events_per_s`` with ``writers`` (the total over all of them, from a
  common start until every event is integrated into the log: the last commit, then whatever
  the queue still holds), ``append_integration_lag_s`` (the longest an event waited in the
  queue: from its ``record_event()`` to the commit of the integration that moved it);
* sign one checkpoint over everything (incremental tree build) -> ``checkpoint_events_per_s``;
* ``verify_log()``: recompute every leaf and the whole tree, check nodes and signatures
  -> ``verify_events_per_s`` (worker processes as ``phigate audit verify`` uses them: one per core, at most 4);
* unfiltered CSV and JSONL exports with per-event inclusion proofs, bytes counted and
  discarded -> ``export_csv_events_per_s``, ``export_jsonl_events_per_s``,
  ``export_events_per_s`` (the slower of the two);
* 200 inclusion proofs for random events against the latest checkpoint -> ``inclusion_proof_ms`` (mean).

The last line of stdout is one JSON object keyed ``sqlite`` and ``postgresql``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from gateway.audit.actions import Action  # noqa: E402 - after the path insertion above

PG_ADMIN = os.environ.get("PHIGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ACTIONS = (
    Action.AUTH_LOGIN_SUCCEEDED,
    Action.TRANSFER_DOWNLOAD_COMPLETED,
    Action.TRANSFER_CREATED,
    Action.AUTH_LOGIN_FAILED,
    Action.TRANSFER_APPROVED,
    Action.ADMIN_USER_CREATED,
)


def synthetic(i: int, start: datetime) -> dict:
    """A plausible synthetic event (no PHI: ids only)."""
    return {
        "action": ACTIONS[i % len(ACTIONS)],
        "occurred_at": start + timedelta(milliseconds=i),
        "outcome": "failure" if i % 17 == 0 else "success",
        "actor_user_id": f"{i % 5000:032x}",
        "actor_org_id": f"{i % 50:032x}",
        "ip": f"10.{i % 256}.{(i // 256) % 256}.7",
        "user_agent": "Mozilla/5.0 (bench)",
        "target_type": "transfer",
        "target_id": f"{i // 4:032x}",
        "target_org_id": f"{(i + 7) % 50:032x}",
        "details": {"file_id": f"{i:032x}", "bytes": i * 13},
    }


WRITERS = 8


def _writer(url: str, count: int, ready) -> None:
    """One concurrent writer: `count` events, each in its own short transaction."""
    import warnings

    warnings.simplefilter("ignore")
    from gateway.audit import sequencer
    from gateway.audit.service import Actor, record_event
    from gateway.db import Database

    database = Database(url)
    sequencer.install(database)  # as every gateway process does (gateway/components.py)
    actor = Actor(user_id="c" * 32, org_id="d" * 32, ip="10.0.0.2", user_agent="bench-writer")
    ready.wait()
    for i in range(count):
        with database.transaction() as db:
            record_event(
                db,
                Action.TRANSFER_DOWNLOAD_COMPLETED,
                actor=actor,
                target_type="transfer",
                target_id=f"{i:032x}",
                details={"bytes": i},
            )
    database.dispose()


def _integrator(url: str, ready, stop, lags) -> None:
    """The leader's integrate job: every PHIGATE_AUDIT_INTEGRATE_SECONDS, everything queued, in one transaction."""
    import warnings

    warnings.simplefilter("ignore")
    from gateway.config import Settings
    from gateway.db import Database

    interval = Settings.model_fields["audit_integrate_seconds"].default
    database = Database(url)
    lag = 0.0
    ready.wait()
    while not stop.wait(interval):
        lag = max(lag, _integrate_timed(database))
    lags.put(lag)
    database.dispose()


def _integrate_timed(database) -> float:
    """integrate(), returning how long the oldest event it moved had waited (0 when none)."""
    from sqlalchemy import func, select

    from gateway.audit.models import AuditQueued
    from gateway.audit.sequencer import integrate

    with database.snapshot() as db:
        oldest = db.scalar(select(func.min(AuditQueued.occurred_at)))
    integrate(database)
    return 0.0 if oldest is None else (datetime.now(UTC) - oldest).total_seconds()


def concurrent_appends(url: str, writers: int, each: int) -> tuple[float, float]:
    """(events per second committed and integrated by `writers` processes appending at once, longest queue wait)."""
    import multiprocessing

    from gateway.db import Database

    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(writers + 2)
    stop, lags = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, each, ready)) for _ in range(writers)]
    leader = ctx.Process(target=_integrator, args=(url, ready, stop, lags))
    for proc in [*procs, leader]:
        proc.start()
    ready.wait()
    t = time.perf_counter()
    for proc in procs:
        proc.join()
    # What the queue still holds after the last commit, as the leader's next run would move it.
    database = Database(url)
    tail = _integrate_timed(database)
    elapsed = time.perf_counter() - t
    stop.set()
    lag = max(lags.get(), tail)
    leader.join()
    database.dispose()
    if any(proc.exitcode != 0 for proc in [*procs, leader]):
        raise RuntimeError("a concurrent writer or the integrator failed")
    return writers * each / elapsed, lag


def run_one(kind: str, events: int) -> dict:
    from crypto import init_keyring
    from gateway.audit.checkpoint import get_signer, maybe_checkpoint, origin
    from gateway.audit.sequencer import integrate
    from gateway.audit.service import Actor, record_event, record_events_bulk
    from gateway.audit.verify import verify_log
    from gateway.auditor import proofs
    from gateway.auditor.export import start_export
    from gateway.auditor.search import EventFilter, Scope
    from gateway.components import Components
    from gateway.config import Settings
    from gateway.migrate import upgrade

    tmp = tempfile.mkdtemp(prefix="phigate-bench-audit-")
    drop = None
    if kind == "sqlite":
        url = f"sqlite:///{tmp}/bench.db"
    else:
        import psycopg

        name = f"phigate_bench_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql+psycopg://{PG_ADMIN.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"

        def drop():
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            init_keyring(f"{tmp}/keys")
            upgrade(url)
            settings = Settings(
                _env_file=None,
                data_dir=f"{tmp}/data",
                database_url=url,
                key_provider_url=f"local://{tmp}/keys",
                instance_id="bench",
            )
            components = Components(settings)
            signer = get_signer(components)
        out: dict = {"events": events}
        start = datetime(2026, 1, 1, tzinfo=UTC)

        t = time.perf_counter()
        batch = 5000
        for lo in range(0, events, batch):
            with components.db.transaction() as db:
                record_events_bulk(db, [synthetic(i, start) for i in range(lo, min(events, lo + batch))])
        out["append_events_per_s"] = round(events / (time.perf_counter() - t))
        out["append_path"] = "record_events_bulk (5,000 per transaction)"
        rss_after_append = _rss()

        sample = 20_000 if events >= 100_000 else 5_000
        t = time.perf_counter()
        actor = Actor(user_id="a" * 32, org_id="b" * 32, ip="10.0.0.1", user_agent="bench")
        for lo in range(0, sample, 200):
            with components.db.transaction() as db:
                for i in range(200):
                    record_event(
                        db,
                        Action.TRANSFER_DOWNLOAD_COMPLETED,
                        actor=actor,
                        target_type="transfer",
                        target_id=f"{lo + i:032x}",
                        details={"bytes": i},
                    )
        integrate(components.db)  # on PostgreSQL they wait in the queue for the leader: timed until in the log
        out["append_record_event_per_s"] = round(sample / (time.perf_counter() - t))
        total = events + sample
        if kind == "postgresql":
            each = 1000 if events >= 100_000 else 250
            rate, lag = concurrent_appends(url, WRITERS, each)
            out["append_concurrent_events_per_s"] = round(rate)
            out["writers"] = WRITERS
            out["append_integration_lag_s"] = round(lag, 3)
            total += WRITERS * each

        t = time.perf_counter()
        cp = maybe_checkpoint(components, force=True)
        out["checkpoint_events_per_s"] = round(total / (time.perf_counter() - t))
        assert cp.tree_size == total

        t = time.perf_counter()
        from gateway.audit.verify import default_workers

        out["verify_workers"] = default_workers()
        report = verify_log(components.db, signer.public_key(), origin(settings), workers=out["verify_workers"])
        elapsed = time.perf_counter() - t
        assert report.ok and report.events_checked == total, report.problem
        out["verify_events_per_s"] = round(total / elapsed)

        for fmt in ("csv", "jsonl"):
            t = time.perf_counter()
            chunks, _, size = start_export(components, Scope(None), EventFilter(), fmt, Actor.system())
            n_bytes = sum(len(c) for c in chunks)
            elapsed = time.perf_counter() - t
            out[f"export_{fmt}_events_per_s"] = round(size / elapsed)
            out[f"export_{fmt}_mb"] = round(n_bytes / 2**20, 1)
        out["export_events_per_s"] = min(out["export_csv_events_per_s"], out["export_jsonl_events_per_s"])

        rng = random.Random(7)
        with components.db.sessions() as db:
            proofs.inclusion_proof(db, Scope(None), 1)  # warm
            t = time.perf_counter()
            for _ in range(200):
                proofs.inclusion_proof(db, Scope(None), rng.randint(1, events))
            out["inclusion_proof_ms"] = round((time.perf_counter() - t) / 200 * 1000, 3)
        out["rss_after_append_mb"] = rss_after_append
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        components.close()
        return out
    finally:
        if drop:
            drop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _rss() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int)
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    parser.add_argument("--child", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    events = args.events or (50_000 if args.quick else 1_000_000)
    if args.child:
        print(json.dumps(run_one(args.child, events)))
        return
    results = {}
    for kind in [args.only] if args.only else ["sqlite", "postgresql"]:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--events", str(events)],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        if proc.returncode != 0:
            results[kind] = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
            print(proc.stderr, file=sys.stderr)
            continue
        results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"{kind}: {results[kind]}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
