"""Starting an export: record it, sign a checkpoint that covers it, stream the events with their proofs.

The file format and its offline verifier are the log library's (translog/export.py);
this module feeds the writers from the database: events in keyset chunks in short
transactions, inclusion paths built one bucket of 256 leaves at a time, so memory
does not grow with the export.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.audit.tree import BUCKET, NODE_MIN_LEVEL, ShortReads, TreeReader, stream_events
from translog import merkle, note
from translog.export import FORMAT, export_csv, export_jsonl, header_binding
from translog.leaf import VERSION


class ProofStream:
    """Inclusion paths for leaves visited in increasing order, one bucket at a time."""

    def __init__(self, reads, size: int):
        self.reader = TreeReader(reads, size)
        self.size = size
        self.bucket: int | None = None
        self.loaded = 0

    def path(self, index: int) -> list[str]:
        lo = index - index % BUCKET
        if lo != self.bucket:
            self._load(lo)
        if self.levels is None:
            return [h.hex() for h in merkle.inclusion_path(index, self.size, self.reader.subtree)]
        j = index - lo
        levels = self.levels
        return [levels[level][(j >> level) ^ 1] for level in range(NODE_MIN_LEVEL)] + self.upper

    def path_text(self, index: int, sep: str) -> str:
        """The path as hex joined by `sep`; the part above the bucket is joined once per bucket."""
        lo = index - index % BUCKET
        if lo != self.bucket:
            self._load(lo)
        if self.levels is None:
            return sep.join(h.hex() for h in merkle.inclusion_path(index, self.size, self.reader.subtree))
        j = index - lo
        levels = self.levels
        lower = sep.join([levels[level][(j >> level) ^ 1] for level in range(NODE_MIN_LEVEL)])
        upper = self._upper_text.get(sep)
        if upper is None:
            upper = self._upper_text[sep] = sep.join(self.upper)
        return lower + sep + upper if upper else lower

    def _load(self, lo: int) -> None:
        self.bucket = lo
        self.loaded += 1
        if self.loaded % 64 == 0:
            self.reader.forget()
        hi = lo + BUCKET
        if hi > self.size:
            self.levels = None  # the partial right-edge bucket: paths computed directly
            return
        leaves = self.reader._bucket(lo, hi)
        levels = merkle.levels_of(leaves)
        self.levels = [[h.hex() for h in level] for level in levels[:-1]]
        self.reader._memo[(lo, hi)] = levels[-1][0]
        self.reader.prefetch(merkle.sibling_ranges(lo, hi, self.size))
        self.upper = [h.hex() for h in merkle.path_to_range(lo, hi, self.size, self.reader.subtree)]
        self._upper_text: dict[str, str] = {}
        self.reader._buckets.clear()


def _records(database, checkpoint_size: int, where):
    """The writers' record source: events matching `where` up to the checkpoint, with their paths."""

    def records(sep: str) -> Iterator[tuple[tuple, str, str]]:
        proofs = ProofStream(ShortReads(database), checkpoint_size)
        for row in stream_events(database, 0, checkpoint_size, where):
            yield row, row[13].hex(), proofs.path_text(row[0] - 1, sep)

    return records


def start_export(components, scope, flt, fmt: str, actor) -> tuple[Iterator[bytes], str, int]:
    """Record the export as an event, sign a checkpoint covering it, and return (chunks, media type, tree size).

    The event commits before the first byte leaves, so an export that is cut off
    half-way is still on record.
    """
    from sqlalchemy import and_

    from gateway.audit.actions import Action
    from gateway.audit.checkpoint import create_checkpoint, get_signer
    from gateway.audit.models import CheckpointKind
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
        seq = event.seq
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
    records = _records(components.db, size, where)
    if fmt == "csv":
        return export_csv(records, export_note, header), "text/csv; charset=utf-8", size
    return export_jsonl(records, export_note, header), "application/x-ndjson", size
