"""Streamed exports (CSV, JSON Lines) that an outsider can verify with the public key alone.

An export is taken against one signed checkpoint of N leaves that covers every
exported event.  Each event carries its sequence number, every field of the
canonical serialisation, its leaf hash and its RFC 9162 inclusion path in the
tree of N leaves.

The export's header (format, origin, tree size, the export's own event,
filters, key fingerprint, verifier key, canonical form) is bound to the
signature: the export carries its own signed note, a checkpoint of the same
tree with one extension line `phigate-audit-export-v2 <hex SHA-256 of the
header's canonical JSON>` (RFC 8785 form, every header member but `type` and
`checkpoint`).  Editing any header field breaks that digest, and the verifier
also checks each field against the note and the key it was given.  Layout:

JSON Lines
    {"type": "header", "format": "phigate-audit-export-v2", "checkpoint": <signed note>, ...}
    {"type": "event", "seq": ..., <fields>, "leaf_hash": hex, "inclusion_path": [hex, ...]}  (one per event)
    {"type": "end", "events": <count>}

CSV
    header row: seq, occurred_at, ..., details, leaf_hash, inclusion_path
    one row per event: empty cell = null, details as canonical JSON, the path as
    space-separated hex; cells starting with = + - @ tab CR or ' get a leading '
    (spreadsheet formula injection) which the verifier strips again
    "#header", <canonical JSON of the header>
    "#checkpoint", <signed note>
    "#end", <count>

Version 1 exports (before the header was bound) carry no digest: the verifier
refuses them unless asked (`allow_v1`), and then vouches for the events only.

Events are read in keyset chunks in short transactions and inclusion paths are
built one bucket of 256 leaves at a time, so memory does not grow with the
export.  `verify_export()` is the offline verifier (no database, no gateway
configuration): it checks the note's signature, the header, every leaf and
every path.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from crypto import fingerprint, load_public_key
from gateway.audit.actions import Action
from gateway.audit import merkle, note
from gateway.audit.canonical import FIELDS, VERSION, record_leaf_hash
from gateway.audit.tree import BUCKET, NODE_MIN_LEVEL, ShortReads, TreeReader, stream_events

FORMAT = "phigate-audit-export-v2"
FORMAT_V1 = "phigate-audit-export-v1"
HEADER_FIELDS = ("format", "origin", "tree_size", "export_event_seq", "filters", "public_key_fingerprint",
                 "verifier_key", "canonical")
CSV_COLUMNS = (*FIELDS, "leaf_hash", "inclusion_path")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "'")
_line_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode


def neutralise(cell: str) -> str:
    """Prefix a cell a spreadsheet would read as a formula (and any cell starting with ')."""
    return "'" + cell if cell.startswith(_DANGEROUS) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


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


def _records(database, checkpoint_size: int, where, sep: str) -> Iterator[tuple[tuple, str, str]]:
    proofs = ProofStream(ShortReads(database), checkpoint_size)
    for row in stream_events(database, 0, checkpoint_size, where):
        yield row, row[13].hex(), proofs.path_text(row[0] - 1, sep)


def _csv_cell(value: str) -> str:
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def header_json(header: dict) -> str:
    """The canonical JSON of the header's bound members (RFC 8785 for these types: sorted keys, no spaces)."""
    bound = {k: v for k, v in header.items() if k not in ("type", "checkpoint")}
    return json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def header_binding(header: dict) -> str:
    """The extension line of the export's note that binds its header."""
    return f"{FORMAT} {hashlib.sha256(header_json(header).encode('utf-8')).hexdigest()}"


def export_jsonl(database, checkpoint_note: str, checkpoint_size: int, where, header: dict) -> Iterator[bytes]:
    """JSON Lines export of the events matching `where` with seq <= checkpoint_size."""
    head = {"type": "header", **header, "checkpoint": checkpoint_note}
    yield (_line_json(head) + "\n").encode()
    count, buf = 0, []
    for fields, leaf, path in _records(database, checkpoint_size, where, '","'):
        record = dict(zip(FIELDS[:12], fields, strict=False))
        record["type"] = "event"
        # The stored details text is valid JSON and hex needs no escaping: both are
        # appended as text, not parsed and re-encoded.
        buf.append(f'{_line_json(record)[:-1]},"details":{fields[12]},"leaf_hash":"{leaf}",'
                   f'"inclusion_path":["{path}"]}}')
        count += 1
        if len(buf) >= 500:
            buf.append("")
            yield "\n".join(buf).encode()
            buf = []
    if buf:
        buf.append("")
        yield "\n".join(buf).encode()
    yield (_line_json({"type": "end", "events": count}) + "\n").encode()


def export_csv(database, checkpoint_note: str, checkpoint_size: int, where, header: dict) -> Iterator[bytes]:
    """CSV export of the events matching `where` with seq <= checkpoint_size (see module docstring)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    count, buf = 0, [out.getvalue()[:-2]]
    for fields, leaf, path in _records(database, checkpoint_size, where, " "):
        # RFC 4180 quoting by hand: the csv module would rescan the long hex columns.
        cells = [str(fields[0]), fields[1]]
        for value in fields[2:12]:
            cells.append("" if value is None else _csv_cell(neutralise(value)))
        cells.append(_csv_cell(fields[12]))
        cells.append(leaf)
        cells.append(path)
        buf.append(",".join(cells))
        count += 1
        if count % 500 == 0:
            buf.append("")
            yield "\r\n".join(buf).encode()
            buf = []
    if buf:
        buf.append("")
        yield "\r\n".join(buf).encode()
    out.seek(0)
    out.truncate()
    writer.writerow(["#header", header_json(header)])
    writer.writerow(["#checkpoint", checkpoint_note])
    writer.writerow(["#end", str(count)])
    yield out.getvalue().encode()


# -- offline verification ---------------------------------------------------------

@dataclass
class ExportReport:
    ok: bool = True
    events: int = 0
    tree_size: int | None = None
    origin: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None
    format: str | None = None
    header: dict | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def header_bound(self) -> bool:
        return self.format == FORMAT

    def fail(self, seq: int | None, problem: str) -> "ExportReport":
        self.ok, self.first_bad_seq, self.problem = False, seq, problem
        return self


def _check_event(report: ExportReport, cp: note.Checkpoint, record: dict, leaf_hex: str, path_hex: list[str],
                 last_seq: int) -> bool:
    seq = record["seq"]
    if not isinstance(seq, int) or seq <= last_seq:
        report.fail(seq if isinstance(seq, int) else None, f"event {seq}: sequence numbers must increase")
        return False
    try:
        leaf = record_leaf_hash(record)
        path = [bytes.fromhex(h) for h in path_hex]
    except (TypeError, ValueError, KeyError):
        report.fail(seq, f"event {seq}: malformed record")
        return False
    if leaf.hex() != leaf_hex:
        report.fail(seq, f"event {seq}: its fields do not hash to its leaf hash")
        return False
    if not merkle.verify_inclusion(seq - 1, cp.tree_size, leaf, path, cp.root_hash):
        report.fail(seq, f"event {seq}: the inclusion proof does not lead to the signed root")
        return False
    report.events += 1
    return True


def verify_export(path: str, public_key, key_name: str | None = None, *, allow_v1: bool = False) -> ExportReport:
    """Verify an export offline: the signature, the header it binds, every leaf, every inclusion path, completeness.

    A version 1 export (its header not signed) is refused unless `allow_v1`; its events are then
    checked, and the report says the header is not vouched for (`header_bound` False).
    """
    with open(path, "rb") as fh:
        first = fh.read(1)
    if first == b"{":
        return _verify_jsonl(path, public_key, key_name, allow_v1)
    return _verify_csv(path, public_key, key_name, allow_v1)


def _verify_note(report: ExportReport, text: str, public_key, key_name) -> note.Checkpoint | None:
    try:
        cp = note.verify(text, public_key, key_name)
    except note.NoteError as exc:
        report.fail(None, f"checkpoint: {exc}")
        return None
    report.tree_size, report.origin = cp.tree_size, cp.origin
    report.checked.append("checkpoint signature")
    return cp


def _version(report: ExportReport, fmt, allow_v1: bool) -> bool:
    report.format = fmt
    if fmt == FORMAT:
        return True
    if fmt == FORMAT_V1:
        if allow_v1:
            return True
        report.fail(None, "a version 1 export: its header is not covered by the signature "
                          "(verify its events alone with --allow-v1)")
        return False
    report.fail(None, "not a phigate audit export of a known format")
    return False


def _check_header(report: ExportReport, header: dict, cp: note.Checkpoint, public_key, key_name) -> bool:
    """Every header field is bound by the signed digest and agrees with the note and the key."""
    if report.format != FORMAT:
        return True  # v1, accepted on request: nothing in its header is vouched for
    if set(header) - {"type", "checkpoint"} != set(HEADER_FIELDS):
        report.fail(None, "the export header has missing or unknown fields")
        return False
    if header_binding(header) not in cp.extensions:
        report.fail(None, "the export header does not match the digest in its signed note: it was altered")
        return False
    raw = load_public_key(public_key).public_bytes_raw()
    try:
        vkey_name, vkey_raw = note.parse_verifier_key(str(header["verifier_key"]))
    except note.NoteError:
        vkey_name, vkey_raw = None, None
    seq = header["export_event_seq"]
    problems = [
        (header["tree_size"] != cp.tree_size, "its tree size is not the signed one"),
        (header["origin"] != cp.origin, "its origin is not the signed one"),
        (header["public_key_fingerprint"] != fingerprint(raw), "its key fingerprint is not the verifying key's"),
        (vkey_raw != raw or vkey_name != (key_name or cp.origin), "its verifier key is not the verifying key"),
        (header["canonical"] != VERSION, "its canonical form is unknown"),
        (not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= cp.tree_size,
         "its export event is not in the signed tree"),
        (not isinstance(header["filters"], dict), "its filters are malformed"),
    ]
    for bad, why in problems:
        if bad:
            report.fail(None, f"the export header does not hold: {why}")
            return False
    report.header = {k: header[k] for k in HEADER_FIELDS}
    report.checked.append("header (filters, tree size, export event, key, origin, canonical form)")
    return True


def _verify_jsonl(path: str, public_key, key_name, allow_v1: bool) -> ExportReport:
    report = ExportReport()
    cp, last, ended = None, 0, None
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            try:
                obj = json.loads(line)
            except ValueError:
                return report.fail(None, f"line {number} is not JSON")
            kind = obj.get("type") if isinstance(obj, dict) else None
            if number == 1:
                if kind != "header":
                    return report.fail(None, "the first line is not a phigate audit export header")
                if not _version(report, obj.get("format"), allow_v1):
                    return report
                cp = _verify_note(report, obj.get("checkpoint", ""), public_key, key_name)
                if cp is None or not _check_header(report, obj, cp, public_key, key_name):
                    return report
                continue
            if ended is not None:
                return report.fail(None, f"line {number}: data after the end marker")
            if kind == "event":
                if not _check_event(report, cp, obj, obj.get("leaf_hash", ""), obj.get("inclusion_path", []), last):
                    return report
                last = obj["seq"]
            elif kind == "end":
                ended = obj.get("events")
            else:
                return report.fail(None, f"line {number}: unknown record type")
    return _finish(report, ended)


def _finish(report: ExportReport, ended) -> ExportReport:
    if ended is None:
        return report.fail(None, "the export is truncated (no end marker)")
    if ended != report.events:
        return report.fail(None, f"the end marker counts {ended} events but the file holds {report.events}")
    report.checked += ["every leaf hash", "every inclusion proof", "completeness (end marker)"]
    return report


def _verify_csv(path: str, public_key, key_name, allow_v1: bool) -> ExportReport:
    report = ExportReport()
    note_text, header_text, headers = None, None, 0
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh):
            if row and row[0] == "#checkpoint" and len(row) == 2:
                note_text = row[1]
            elif row and row[0] == "#header":
                headers += 1
                header_text = row[1] if len(row) == 2 else ""
    if note_text is None:
        return report.fail(None, "the export has no #checkpoint row")
    if headers > 1:
        return report.fail(None, "the export has more than one #header row")
    if header_text is None:
        header = {"format": FORMAT_V1}  # version 1 CSV exports had no header row
    else:
        try:
            header = json.loads(header_text)
        except ValueError:
            return report.fail(None, "the #header row is not JSON")
        if not isinstance(header, dict):
            return report.fail(None, "the #header row is not a JSON object")
    if not _version(report, header.get("format"), allow_v1):
        return report
    cp = _verify_note(report, note_text, public_key, key_name)
    if cp is None or not _check_header(report, header, cp, public_key, key_name):
        return report
    last, ended = 0, None
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        if tuple(next(reader, ())) != CSV_COLUMNS:
            return report.fail(None, "the first row is not the export's column header")
        for row in reader:
            if row and row[0] in ("#checkpoint", "#header"):
                continue
            if row and row[0] == "#end":
                ended = int(row[1]) if len(row) == 2 and row[1].isdigit() else -1
                continue
            if ended is not None:
                return report.fail(None, "rows after the end marker")
            if len(row) != len(CSV_COLUMNS):
                return report.fail(None, f"a row has {len(row)} cells instead of {len(CSV_COLUMNS)}")
            try:
                record = {"seq": int(row[0]), "occurred_at": row[1]}
                for name, cell in zip(FIELDS[2:12], row[2:12], strict=False):
                    record[name] = restore(cell) if cell != "" else None
                record["details"] = json.loads(row[12])
            except ValueError:
                return report.fail(None, f"row for event {row[0]!r} is malformed")
            if not _check_event(report, cp, record, row[13], row[14].split() if row[14] else [], last):
                return report
            last = record["seq"]
    return _finish(report, ended)


# -- starting an export -----------------------------------------------------------

def start_export(components, scope, flt, fmt: str, actor) -> tuple[Iterator[bytes], str, int]:
    """Record the export as an event, sign a checkpoint covering it, and return (chunks, media type, tree size).

    The event commits before the first byte leaves, so an export that is cut off
    half-way is still on record.
    """
    from sqlalchemy import and_

    from gateway.audit.checkpoint import create_checkpoint, get_signer, origin
    from gateway.audit.models import CheckpointKind
    from gateway.audit.service import record_event

    if fmt not in ("csv", "jsonl"):
        from gateway.errors import InvalidInput

        raise InvalidInput("format is csv or jsonl.", code="invalid_input")
    settings = components.settings
    signer = get_signer(components)
    with components.db.transaction() as db:
        event = record_event(db, Action.AUDIT_EXPORT_CREATED, actor=actor, target_type="audit_log",
                             target_org_id=scope.org_id,
                             details={"format": fmt, **{f"filter_{k}": v for k, v in flt.as_params().items()}})
        seq = event.seq
    with components.db.transaction() as db:
        cp = create_checkpoint(db, signer, settings, CheckpointKind.on_demand)
        if cp is None:
            from gateway.audit.checkpoint import latest_checkpoint

            cp = latest_checkpoint(db)
        stored_note, key_name = cp.note, cp.key_name
    # Re-sign only what the stored checkpoint's own signature vouches for, never a bare column.
    signed = note.verify(stored_note, signer.public_key(), key_name)
    assert signed.tree_size >= seq  # noqa: S101 - invariant: the checkpoint was signed after the export event
    header = {"format": FORMAT, "origin": signed.origin, "tree_size": signed.tree_size, "export_event_seq": seq,
              "filters": flt.as_params(), "public_key_fingerprint": signer.fingerprint(),
              "verifier_key": note.verifier_key(key_name, signer.public_key_raw()), "canonical": VERSION}
    export_note = note.sign(signed.origin, signed.tree_size, signed.root_hash, signer, key_name,
                            extensions=(header_binding(header),))
    size = signed.tree_size
    where = and_(scope.clause(), flt.clause())
    if fmt == "csv":
        return export_csv(components.db, export_note, size, where, header), "text/csv; charset=utf-8", size
    return export_jsonl(components.db, export_note, size, where, header), "application/x-ndjson", size
