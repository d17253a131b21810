"""Starting an export: record it, sign a checkpoint that covers it, stream the events with their proofs.

The file format and its offline verifier are the log library's (translog/export.py);
this module feeds the writers from the database: events from one streaming query
(a server-side cursor on PostgreSQL), inclusion paths built one perfect subtree
(block) of leaves at a time, so memory does not grow with the export.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from gateway.audit.tree import BUCKET, ShortReads, TreeReader, canonical_batch, event_chunks
from translog import merkle, note
from translog.export import FORMAT, export_csv_batches, export_jsonl_batches, header_binding
from translog.leaf import VERSION

# The largest block of leaves whose paths are built at once (a few MB of path text).
MAX_BLOCK = 1 << 12
# Rows read at once: whole blocks, so that a dense run of rows brings its blocks' leaves along.
CHUNK = 5 * MAX_BLOCK


class ProofStream:
    """Inclusion paths, as text, for leaves visited in increasing order, one block at a time.

    A block is a perfect subtree [lo, lo + 2**k) of the signed tree: its leaf hashes are
    read in one query and hashed level by level once, and every leaf's path is its
    siblings inside the block followed by the block's own path to the root, which is
    computed once per block (from stored nodes).  Blocks start at one bucket of 256
    leaves and double, up to MAX_BLOCK, while the export reads them one after another,
    so a dense export reads few large blocks and a sparse one only small ones.
    """

    def __init__(self, reads, size: int, sep: str):
        self.reader = TreeReader(reads, size)
        self.size = size
        self.sep = sep
        self.lo = self.hi = 0
        self.want = BUCKET
        self.loaded = 0
        self.texts: list[str] = []
        self.known_lo = 0
        self.known: list[bytes] = []

    def offer(self, lo: int, leaves: list[bytes]) -> None:
        """The stored hashes of leaves lo, lo + 1, ... that the export has just read (saves reading them again)."""
        self.known_lo, self.known = lo, leaves

    def _leaves(self, lo: int, hi: int) -> list[bytes]:
        start = lo - self.known_lo
        if start >= 0 and hi - self.known_lo <= len(self.known):
            return self.known[start : hi - self.known_lo]
        return self.reader.leaves(lo, hi)

    def path_text(self, index: int) -> str:
        """Leaf `index`'s inclusion path in the signed tree, as hex joined by `sep`."""
        if not self.lo <= index < self.hi:
            self._load(index)
        return self.texts[index - self.lo]

    def path_texts(self, index: int, count: int) -> list[str]:
        """The paths of leaves index, index + 1, ..., index + count - 1 (a block's slice at a time)."""
        out: list[str] = []
        end = index + count
        while index < end:
            if not self.lo <= index < self.hi:
                self._load(index)
            upto = min(end, self.hi)
            out += self.texts[index - self.lo : upto - self.lo]
            index = upto
        return out

    def _load(self, index: int) -> None:
        self.want = min(MAX_BLOCK, self.want * 2) if index == self.hi and self.hi else BUCKET
        span = self.want
        if index == self.hi:
            while index % span:  # the next block starts where the last one ended
                span //= 2
        # A perfect subtree holding `index`, aligned, inside the tree: a node of the RFC 9162 recursion.
        while index - index % span + span > self.size:
            span //= 2
        lo, hi = index - index % span, index - index % span + span
        self.loaded += 1
        if self.loaded % 64 == 0:
            self.reader.forget()  # memory stays bounded on long exports
        levels = merkle.levels_of(self._leaves(lo, hi))
        self.reader._memo[(lo, hi)] = levels[-1][0]
        self.reader.prefetch(merkle.sibling_ranges(lo, hi, self.size))
        sep = self.sep
        upper = sep.join(h.hex() for h in merkle.path_to_range(lo, hi, self.size, self.reader.subtree))
        if len(levels) == 1:
            texts = [upper]
        else:
            # Top-down: each node's text is the path above it; a leaf's is its whole path.
            above = [sep + upper] if upper else [""]
            for depth in range(len(levels) - 2, -1, -1):
                hexes = [h.hex() for h in levels[depth]]
                if depth:
                    above = [f"{sep}{hexes[k ^ 1]}{above[k >> 1]}" for k in range(len(hexes))]
                else:
                    above = [f"{hexes[k ^ 1]}{above[k >> 1]}" for k in range(len(hexes))]
            texts = above
        self.lo, self.hi, self.texts = lo, hi, texts


def _batches(database, checkpoint_size: int, where):
    """The writers' record source: events matching `where` up to the checkpoint, with their paths, a chunk at a time."""

    def batches(sep: str) -> Iterator[tuple[Sequence, list[str], list[str]]]:
        proofs = ProofStream(ShortReads(database), checkpoint_size, sep)
        for chunk in event_chunks(database, 0, checkpoint_size, where, CHUNK):
            chunk = canonical_batch(chunk)
            dense = chunk[-1][0] - chunk[0][0] == len(chunk) - 1  # a run without gaps (an unfiltered export)
            if dense:
                proofs.offer(chunk[0][0] - 1, [row[13] for row in chunk])
            # At most a block's worth of paths as text at once (about 4 MB), not the whole chunk's.
            for lo in range(0, len(chunk), MAX_BLOCK):
                rows = chunk[lo : lo + MAX_BLOCK]
                if dense:
                    paths = proofs.path_texts(rows[0][0] - 1, len(rows))
                else:
                    paths = [proofs.path_text(row[0] - 1) for row in rows]
                yield rows, [row[13].hex() for row in rows], paths

    return batches


def start_export(components, scope, flt, fmt: str, actor) -> tuple[Iterator[bytes], str, int]:
    """Record the export as an event, sign a checkpoint covering it, and return (chunks, media type, tree size).

    The event commits before the first byte leaves, so an export that is cut off
    half-way is still on record.
    """
    from sqlalchemy import and_

    from gateway.audit.actions import Action
    from gateway.audit.checkpoint import create_checkpoint, get_signer
    from gateway.audit.models import CheckpointKind
    from gateway.audit.sequencer import seq_of
    from gateway.audit.service import record_event

    if fmt not in ("csv", "jsonl"):
        from gateway.errors import InvalidInput

        raise InvalidInput("format is csv or jsonl.", code="invalid_input")
    settings = components.settings
    signer = get_signer(components)
    with components.db.transaction() as db:
        event = record_event(
            db,
            Action.AUDIT_EXPORT_CREATED,
            actor=actor,
            target_type="audit_log",
            target_org_id=scope.org_id,
            details={"format": fmt, **{f"filter_{k}": v for k, v in flt.as_params().items()}},
        )
    seq = seq_of(components.db, event)
    with components.db.transaction() as db:
        cp = create_checkpoint(db, signer, settings, CheckpointKind.on_demand)
        if cp is None:
            from gateway.audit.checkpoint import signed_checkpoint

            cp = signed_checkpoint(db)  # nothing new since the latest, so there is one
        stored_note, key_name = cp.note, cp.key_name
    # Re-sign only what the stored checkpoint's own signature vouches for, never a bare column.
    signed = note.verify(stored_note, signer.public_key(), key_name)
    if signed.tree_size < seq:  # the checkpoint was signed after the export event: it must cover it
        raise RuntimeError("the export's checkpoint does not cover its own event")
    header = {
        "format": FORMAT,
        "origin": signed.origin,
        "tree_size": signed.tree_size,
        "export_event_seq": seq,
        "filters": flt.as_params(),
        "public_key_fingerprint": signer.fingerprint(),
        "verifier_key": note.verifier_key(key_name, signer.public_key_raw()),
        "canonical": VERSION,
    }
    export_note = note.sign(
        signed.origin, signed.tree_size, signed.root_hash, signer, key_name, extensions=(header_binding(header),)
    )
    size = signed.tree_size
    where = and_(scope.clause(), flt.clause())
    batches = _batches(components.db, size, where)
    if fmt == "csv":
        return export_csv_batches(batches, export_note, header), "text/csv; charset=utf-8", size
    return export_jsonl_batches(batches, export_note, header), "application/x-ndjson", size
