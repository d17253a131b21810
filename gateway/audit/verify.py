"""`phigate audit verify`: recompute the whole tree and check every signed checkpoint.

One streaming pass in sequence order, constant memory:

* every sequence number from the prune base + 1 on must be present exactly once;
* every row's leaf hash is recomputed from its fields and compared with the stored one
  (an edited, moved or inserted row shows up here, at its own sequence number);
* every completed perfect subtree is compared with the node stored at checkpoint time
  (narrows a rewrite that also recomputed leaf hashes to one bucket of leaves);
* at each checkpoint's tree size the recomputed root must equal the signed root, and
  every checkpoint's signature must verify with the onshore public key.

The report names the first sequence number at which the log stops matching.

Events still in the queue (committed with their actions, waiting for the
integrator, gateway/audit/sequencer.py) have no sequence number or leaf yet:
verification neither covers nor misses them, and reports how many there are
(`queued_events`); they are checked by the first verification after they are integrated.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from gateway.audit.actions import Action
from gateway.audit.models import AuditCheckpoint, AuditTreeNode, CheckpointKind
from gateway.audit.sequencer import queued_count
from gateway.audit.tree import (
    NODE_MIN_LEVEL,
    ShortReads,
    checked_chunks,
    keyset_stream,
    prune_base,
    tree_size,
)
from translog import merkle, note


@dataclass
class VerifyReport:
    ok: bool = True
    tree_size: int = 0
    prune_base: int = 0
    events_checked: int = 0
    checkpoints_checked: int = 0
    latest_checkpoint_size: int | None = None
    unsigned_events: int = 0
    # Committed with their actions, not yet given a place in the log: this check does not cover them.
    queued_events: int = 0
    first_bad_seq: int | None = None
    problem: str | None = None
    problems: list[str] = field(default_factory=list)

    def fail(self, seq: int | None, problem: str) -> None:
        if self.ok:
            self.ok, self.first_bad_seq, self.problem = False, seq, problem
        self.problems.append(problem)

    def as_dict(self) -> dict:
        return asdict(self)


def _original_position(row, window: int = 64) -> int | None:
    """If a row's stored leaf hash is its own content under another sequence number, that number."""
    from gateway.audit.tree import row_fields
    from translog.leaf import leaf_hash_of

    try:
        fields = row_fields(row)
    except (TypeError, ValueError):
        return None
    stored = row[13]
    for delta in range(1, window + 1):
        for candidate in (fields[0] - delta, fields[0] + delta):
            try:
                if candidate > 0 and leaf_hash_of(candidate, *fields[1:]) == stored:
                    return candidate
            except (TypeError, ValueError):
                return None
    return None


def _failure(row, expected: int) -> tuple[int, str]:
    """What is wrong with the first row `checked_leaves` refused, and the first sequence number it affects."""
    seq = row[0]
    if seq != expected:
        return expected, f"event {expected} is missing" if seq > expected else f"event {seq} is out of order"
    moved_from = _original_position(row)
    if moved_from is not None:
        first = min(seq, moved_from)
        return first, (
            f"the log breaks at event {first}: the event now at {seq} was written as "
            f"event {moved_from} (events were inserted, deleted or reordered)"
        )
    return seq, f"event {seq} does not match its leaf hash (its fields were edited)"


Checked = tuple[list[bytes], tuple[int, str] | None]


def _checked_chunks(database, after: int, end: int, chunk: int) -> Iterator[Checked]:
    """Verified leaf hashes of events after+1..end in batches, then the first failure (if any)."""
    expected = after + 1
    with database.reader.connect() as conn:
        for leaves, bad in checked_chunks(conn, after, end, chunk):
            expected += len(leaves)
            if bad is not None:
                yield leaves, _failure(bad, expected)
                return
            yield leaves, None
    if expected <= end:
        yield [], (expected, f"event {expected} is missing")


SEGMENT = 1 << 16
_worker_dbs: dict[str, object] = {}


def _segment(url: str, lo: int, hi: int, chunk: int) -> tuple[bytes, tuple[int, str] | None]:
    """Worker: check events lo+1..hi; returns their leaf hashes (as far as they hold) and any failure."""
    from gateway.db import Database

    database = _worker_dbs.get(url)
    if database is None:
        database = _worker_dbs[url] = Database(url)
    blobs, failure = [], None
    for leaves, failed in _checked_chunks(database, lo, hi, chunk):
        blobs.append(b"".join(leaves))
        failure = failed
    return b"".join(blobs), failure


def _verified_leaves(database, base: int, size: int, chunk: int, workers: int) -> Iterator[Checked]:
    """Leaf hashes base+1..size in batches, each checked against its row; in parallel segments when workers > 1."""
    if workers <= 1 or size - base <= SEGMENT:
        yield from _checked_chunks(database, base, size, chunk)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    bounds = [base, *range(base - base % SEGMENT + SEGMENT, size, SEGMENT), size]
    segments = list(itertools.pairwise(bounds))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        pending = []
        for lo, hi in segments:
            # A bounded window of segments in flight keeps memory flat (2 MiB of hashes each).
            pending.append(pool.submit(_segment, database.url, lo, hi, chunk))
            if len(pending) < 2 * workers:
                continue
            leaves, failure = _unpack(pending.pop(0).result())
            yield leaves, failure
            if failure is not None:
                return
        while pending:
            leaves, failure = _unpack(pending.pop(0).result())
            yield leaves, failure
            if failure is not None:
                return


def _unpack(result: tuple[bytes, tuple[int, str] | None]) -> Checked:
    blob, failure = result
    return [blob[i : i + 32] for i in range(0, len(blob), 32)], failure


def verify_log(database, public_key, key_name: str, *, chunk: int = 20_000, workers: int = 1) -> VerifyReport:
    """Check the stored log (a gateway.db.Database) against itself and its signed checkpoints.

    With workers > 1, rows are re-hashed in parallel processes, 65,536 at a time; the
    tree, node and checkpoint checks stay in this process and in order.
    """
    reads = ShortReads(database)
    with database.sessions() as db:
        report = VerifyReport(tree_size=tree_size(db), prune_base=prune_base(db), queued_events=queued_count(db))
        db.rollback()
    base = report.prune_base
    C = AuditCheckpoint
    checkpoints = keyset_stream(
        reads,
        select(C.id, C.tree_size, C.root_hash, C.note, C.kind, C.frontier),
        [C.tree_size, C.id],
        lambda r: (r.tree_size, r.id),
        500,
    )

    def signed(cp) -> note.Checkpoint | None:
        report.checkpoints_checked += 1
        try:
            c = note.verify(cp.note, public_key, key_name)
        except note.NoteError:
            report.fail(
                min(cp.tree_size, report.tree_size) + 1 if cp.tree_size < base else None,
                f"checkpoint {cp.id} (tree size {cp.tree_size}) has no valid signature",
            )
            return None
        if c.tree_size != cp.tree_size or c.root_hash != bytes(cp.root_hash):
            report.fail(None, f"checkpoint {cp.id}: stored size or root differ from the signed note")
            return None
        return c

    frontier = merkle.Frontier()
    pending_cp = next(checkpoints, None)
    # Checkpoints below the prune base can only have their signatures checked.
    while pending_cp is not None and pending_cp.tree_size <= base:
        c = signed(pending_cp)
        if base and pending_cp.kind == CheckpointKind.prune_base and pending_cp.tree_size == base and c:
            frontier = merkle.Frontier.from_json(base, pending_cp.frontier)
            if frontier.root() != c.root_hash:
                report.fail(base + 1, "the prune checkpoint's frontier does not match its signed root")
        pending_cp = next(checkpoints, None)
    if frontier.size != base:
        report.fail(base + 1, "no valid prune checkpoint marks where the kept log begins")
        frontier = merkle.Frontier(0, [])
        return report

    N = AuditTreeNode
    nodes = keyset_stream(
        reads,
        select(N.level, N.idx, N.hash, N.leaf_end).where(N.leaf_end > base),
        [N.leaf_end, N.level],
        lambda r: (r.leaf_end, r.level),
        chunk,
    )
    next_node = [next(nodes, None)]
    last_good = base
    broken_at = [0]  # where the first stored subtree that no longer matches ends

    def on_node(level: int, idx: int, h: bytes) -> None:
        stored = next_node[0]
        if stored is None or (stored.level, stored.idx) != (level, idx):
            return  # not stored yet (after the latest checkpoint) or never: roots decide
        next_node[0] = next(nodes, None)
        if bytes(stored.hash) != h and report.ok:
            start = idx << level
            broken_at[0] = (idx + 1) << level
            report.fail(
                max(start, last_good) + 1,
                f"events {start + 1}..{(idx + 1) << level} no longer hash to the subtree stored at checkpoint time",
            )

    frontier.on_node = on_node
    frontier.min_level = NODE_MIN_LEVEL
    for leaves, failure in _verified_leaves(database, base, report.tree_size, chunk, workers):
        i = 0
        while i < len(leaves):
            # Extend up to the next checkpoint's size (or the batch's end), then check what is signed there.
            upto = len(leaves) if pending_cp is None else min(len(leaves), i + pending_cp.tree_size - frontier.size)
            frontier.extend(leaves[i:upto])
            i = upto
            report.events_checked = frontier.size - base
            if not report.ok:  # a stored subtree did not match: report where it ended
                report.events_checked = min(frontier.size, broken_at[0]) - base
                return report
            while pending_cp is not None and pending_cp.tree_size == frontier.size:
                c = signed(pending_cp)
                if c is not None and c.root_hash != frontier.root():
                    report.fail(
                        last_good + 1,
                        f"events {last_good + 1}..{frontier.size} do not match the signed "
                        f"checkpoint {pending_cp.id} (tree size {frontier.size})",
                    )
                if not report.ok:
                    return report
                report.latest_checkpoint_size = frontier.size
                last_good = frontier.size
                pending_cp = next(checkpoints, None)
        if failure is not None:
            report.fail(*failure)
            return report
    if pending_cp is not None:
        report.fail(
            frontier.size + 1,
            f"checkpoint {pending_cp.id} covers {pending_cp.tree_size} events but the log "
            f"ends at {frontier.size}: events {frontier.size + 1}.. were deleted",
        )
        return report
    report.unsigned_events = frontier.size - last_good
    return report


def default_workers() -> int:
    """One re-hashing process per core this process may run on (a CPU set or affinity mask can allow
    fewer than the machine has), at most 4; one core means no pool.

    Not cores - 1: the tree walk left in this process is light beside the re-hashing, and the workers
    wait on the database part of the time. Measured at 1,000,000 events on 2 cores (bench/audit.py's
    data, SQLite and PostgreSQL alike): 1 worker (no pool) 144-157k events/s, 2 workers 240-287k,
    3 workers 239-267k.
    """
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity masks on this platform
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def run_verification(components, actor) -> VerifyReport:
    """Full verification, recorded as an `audit.log.verified` event (so the status page can show it)."""
    from gateway.audit.checkpoint import get_signer, origin
    from gateway.audit.models import Outcome, Severity
    from gateway.audit.service import record_event

    report = verify_log(
        components.db, get_signer(components).public_key(), origin(components.settings), workers=default_workers()
    )
    with components.db.transaction() as db:
        record_event(
            db,
            Action.AUDIT_LOG_VERIFIED,
            actor=actor,
            outcome=Outcome.success if report.ok else Outcome.failure,
            severity=Severity.info if report.ok else Severity.high,
            target_type="audit_log",
            details={
                "ok": report.ok,
                "tree_size": report.tree_size,
                "events_checked": report.events_checked,
                "checkpoints_checked": report.checkpoints_checked,
                "first_bad_seq": report.first_bad_seq,
                "problem": report.problem,
                "queued_events": report.queued_events,
            },
        )
    return report


def log_status(db, components) -> dict:
    """What the status page shows: tree size, latest checkpoint (signature re-checked), last full verification."""
    from gateway.audit.checkpoint import get_signer, latest_checkpoint, origin
    from gateway.audit.models import AuditEvent

    cp = latest_checkpoint(db)
    size = tree_size(db)
    signature_ok = None
    if cp is not None:
        try:
            note.verify(cp.note, get_signer(components).public_key(), origin(components.settings))
            signature_ok = True
        except note.NoteError:
            signature_ok = False
    last = db.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == Action.AUDIT_LOG_VERIFIED)
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    return {
        "tree_size": size,
        "prune_base": prune_base(db),
        "latest_checkpoint": None
        if cp is None
        else {
            "id": cp.id,
            "tree_size": cp.tree_size,
            "root_hash": cp.root_hash.hex(),
            "kind": cp.kind.value,
            "created_at": cp.created_at.isoformat(),
            "note": cp.note,
            "signature_ok": signature_ok,
        },
        "unsigned_events": size - (cp.tree_size if cp else 0),
        "queued_events": queued_count(db),
        "last_verification": None
        if last is None
        else {"seq": last.seq, "at": last.occurred_at.isoformat(), **(last.details or {})},
    }
