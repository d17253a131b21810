"""The export file format (CSV, JSON Lines) and its offline verifier: public key in, verdict out.

An export is taken against one signed checkpoint of N leaves that covers every
exported event.  Each event carries its sequence number, every field of the
leaf serialisation (translog/leaf.py), its leaf hash and its RFC 9162 inclusion
path in the tree of N leaves.

The export's header (format, origin, tree size, the export's own event,
filters, key fingerprint, verifier key, leaf form) is bound to the signature:
the export carries its own signed note, a checkpoint of the same tree with one
extension line `<format> <hex SHA-256 of the header's canonical JSON>` (every
header member but `type` and `checkpoint`).  Editing any header field breaks
that digest, and the verifier also checks each field against the note and the
key it was given.  Layout:

JSON Lines
    {"type": "header", "format": "phigate-audit-export-v3", "checkpoint": <signed note>, ...}
    {"type": "event", "seq": ..., <fields>, "leaf_hash": hex, "inclusion_path": [hex, ...]}  (one per event)
    {"type": "end", "events": <count>}

CSV
    header row: seq, occurred_at, ..., details, leaf_hash, inclusion_path
    one row per event: empty cell = null, details as JSON, the path as
    space-separated hex; cells starting with = + - @ tab CR or ' get a leading '
    (spreadsheet formula injection) which the verifier strips again
    "#header", <canonical JSON of the header>
    "#checkpoint", <signed note>
    "#end", <count>

Versions.  v3 (written now): the header's canonical JSON is RFC 8785 (translog/jcs.py).
v2: Python's json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False),
still verified.  v1 (before the header was bound) carries no digest: the verifier
refuses it unless asked (`allow_v1`), and then vouches for the events only.

The writers take the records from the caller (the gateway streams them from its
database with proofs built one bucket at a time), so memory does not grow with
the export; `verify_export()` needs a file and a public key, nothing else.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from translog import merkle, note
from translog.jcs import NotCanonicalisable, canonical
from translog.keys import InvalidKey, PublicKey, fingerprint, public_raw
from translog.leaf import FIELDS, VERSION, record_leaf_hash

FORMAT = "phigate-audit-export-v3"
FORMAT_V2 = "phigate-audit-export-v2"
FORMAT_V1 = "phigate-audit-export-v1"
BOUND_FORMATS = (FORMAT, FORMAT_V2)
# The separators between a record's inclusion path hashes in each format's text.
JSONL_PATH_SEP = '","'
CSV_PATH_SEP = " "

# records(sep) yields (the 13 leaf fields with details as JSON text, leaf hash hex, path hex joined by sep).
Records = Callable[[str], Iterable[tuple[tuple[Any, ...], str, str]]]
# batches(sep) yields (rows, leaf hashes hex, paths) for many records at once: each row holds the
# 13 leaf fields first (details as JSON text; anything after them is ignored).
Batches = Callable[[str], Iterable[tuple[Sequence[Sequence[Any]], Sequence[str], Sequence[str]]]]
HEADER_FIELDS = (
    "format",
    "origin",
    "tree_size",
    "export_event_seq",
    "filters",
    "public_key_fingerprint",
    "verifier_key",
    "canonical",
)
CSV_COLUMNS = (*FIELDS, "leaf_hash", "inclusion_path")
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r", "'")
_line_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
# One event line of a JSON Lines export, members in the order _line_json gives a record.
_EVENT_LINE = (
    '{"seq":%d,'
    + ",".join(f'"{name}":%s' for name in FIELDS[1:12])
    + ',"type":"event","details":%s,"leaf_hash":"%s","inclusion_path":[%s]}'
)
_string = json.encoder.encode_basestring_ascii  # what _line_json does to a string
_NULL = "null"


def neutralise(cell: str) -> str:
    """Prefix a cell a spreadsheet would read as a formula (and any cell starting with ')."""
    return "'" + cell if cell.startswith(_DANGEROUS) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def _plain_cells(text: str, cells: int) -> bool:
    """True when `cells` cells joined by commas need neither quotes nor a formula guard."""
    return (
        text.count(",") == cells - 1
        and '"' not in text
        and "\n" not in text
        and "\r" not in text
        and not text.startswith(_DANGEROUS)
        # A later cell starting with one of _DANGEROUS ("\r" is refused above).
        and ",=" not in text
        and ",+" not in text
        and ",-" not in text
        and ",@" not in text
        and ",\t" not in text
        and ",'" not in text
    )


def _csv_cell(value: str) -> str:
    if '"' in value or "," in value or "\n" in value or "\r" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def header_json(header: dict[str, Any]) -> str:
    """The canonical JSON of the header's bound members, in the form of the header's own format."""
    bound = {k: v for k, v in header.items() if k not in ("type", "checkpoint")}
    if header.get("format") == FORMAT_V2:
        return json.dumps(bound, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return canonical(bound).decode("utf-8")


def header_binding(header: dict[str, Any]) -> str:
    """The extension line of the export's note that binds its header (names the header's format)."""
    fmt = FORMAT_V2 if header.get("format") == FORMAT_V2 else FORMAT
    return f"{fmt} {hashlib.sha256(header_json(header).encode('utf-8')).hexdigest()}"


# Lines per output chunk: a few hundred kB, so a large input batch is not copied whole.
OUTPUT_LINES = 512


def batched(records: Records, size: int = 500) -> Batches:
    """The record source as batches of `size` records (what the batch writers take)."""

    def batches(sep: str) -> Iterator[tuple[list[tuple[Any, ...]], list[str], list[str]]]:
        rows: list[tuple[Any, ...]] = []
        leaves: list[str] = []
        paths: list[str] = []
        for fields, leaf, path in records(sep):
            rows.append(fields)
            leaves.append(leaf)
            paths.append(path)
            if len(rows) >= size:
                yield rows, leaves, paths
                rows, leaves, paths = [], [], []
        if rows:
            yield rows, leaves, paths

    return batches


def export_jsonl(records: Records, checkpoint_note: str, header: dict[str, Any]) -> Iterator[bytes]:
    """JSON Lines export of `records` under the export's signed note (see the module docstring)."""
    return export_jsonl_batches(batched(records), checkpoint_note, header)


def _jsonl_line(fields: Sequence[Any], leaf: str, path: str) -> str:
    # The stored details text is valid JSON and hex needs no escaping: both are
    # appended as text, not parsed and re-encoded; the other fields are JSON strings
    # (or null), encoded one by one exactly as the general encoder would.
    paths = f'"{path}"' if path else ""
    try:
        return _EVENT_LINE % (
            fields[0],
            _string(fields[1]),
            *[_NULL if v is None else _string(v) for v in fields[2:12]],
            fields[12],
            leaf,
            paths,
        )
    except TypeError:  # a value that is not text: the general encoder
        record = dict(zip(FIELDS[:12], fields, strict=False))
        record["type"] = "event"
        return f'{_line_json(record)[:-1]},"details":{fields[12]},"leaf_hash":"{leaf}","inclusion_path":[{paths}]}}'


def export_jsonl_batches(batches: Batches, checkpoint_note: str, header: dict[str, Any]) -> Iterator[bytes]:
    """`export_jsonl` from a source of record batches (output in chunks of `OUTPUT_LINES` lines)."""
    head = {"type": "header", **header, "checkpoint": checkpoint_note}
    yield (_line_json(head) + "\n").encode()
    count = 0
    for rows, leaves, paths in batches(JSONL_PATH_SEP):
        for lo in range(0, len(rows), OUTPUT_LINES):
            hi = lo + OUTPUT_LINES
            records = list(zip(rows[lo:hi], leaves[lo:hi], paths[lo:hi], strict=True))
            try:  # `_jsonl_line` inline, for a batch of text fields
                lines = [
                    _EVENT_LINE
                    % (
                        fields[0],
                        _string(fields[1]),
                        *[_NULL if v is None else _string(v) for v in fields[2:12]],
                        fields[12],
                        leaf,
                        f'"{path}"' if path else "",
                    )
                    for fields, leaf, path in records
                ]
            except TypeError:
                lines = [_jsonl_line(*record) for record in records]
            count += len(lines)
            lines.append("")
            yield "\n".join(lines).encode()
    yield (_line_json({"type": "end", "events": count}) + "\n").encode()


def export_csv(records: Records, checkpoint_note: str, header: dict[str, Any]) -> Iterator[bytes]:
    """CSV export of `records` under the export's signed note (see the module docstring)."""
    return export_csv_batches(batched(records), checkpoint_note, header)


def _csv_row_cells(texts: Sequence[str | None]) -> str:
    """The ten text cells of one row, each quoted or guarded as it needs."""
    return ",".join(["" if value is None else _csv_cell(neutralise(value)) for value in texts])


def export_csv_batches(batches: Batches, checkpoint_note: str, header: dict[str, Any]) -> Iterator[bytes]:
    """`export_csv` from a source of record batches (output in chunks of `OUTPUT_LINES` rows)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield out.getvalue().encode()
    count = 0
    for batch, all_leaves, all_paths in batches(CSV_PATH_SEP):
        for lo in range(0, len(batch), OUTPUT_LINES):
            rows = batch[lo : lo + OUTPUT_LINES]
            leaves = all_leaves[lo : lo + OUTPUT_LINES]
            paths = all_paths[lo : lo + OUTPUT_LINES]
            # RFC 4180 quoting by hand: the csv module would rescan the long hex columns.  The ten
            # text cells of every row are joined first; one check of the whole batch's text
            # (rows joined by commas, so a row's first cell is checked as any later cell is) says
            # whether any cell needs quotes or a formula guard, and only then is each row looked at.
            middles = [",".join(["" if value is None else value for value in fields[2:12]]) for fields in rows]
            if not _plain_cells(",".join(middles), 10 * len(middles)):
                middles = [
                    middle if _plain_cells(middle, 10) else _csv_row_cells(fields[2:12])
                    for middle, fields in zip(middles, rows, strict=True)
                ]
            lines = [
                f"{fields[0]},{fields[1]},{middle},{_csv_cell(fields[12])},{leaf},{path}"
                for fields, middle, leaf, path in zip(rows, middles, leaves, paths, strict=True)
            ]
            count += len(lines)
            lines.append("")
            yield "\r\n".join(lines).encode()
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
    header: dict[str, Any] | None = None
    checked: list[str] = field(default_factory=list)

    @property
    def header_bound(self) -> bool:
        return self.format in BOUND_FORMATS

    def fail(self, seq: int | None, problem: str) -> ExportReport:
        self.ok, self.first_bad_seq, self.problem = False, seq, problem
        return self


def _check_event(
    report: ExportReport, cp: note.Checkpoint, record: dict[str, Any], leaf_hex: str, path_hex: list[str], last_seq: int
) -> bool:
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


def verify_export(
    path: str, public_key: PublicKey, key_name: str | None = None, *, allow_v1: bool = False
) -> ExportReport:
    """Verify an export offline: the signature, the header it binds, every leaf, every inclusion path, completeness.

    A version 1 export (its header not signed) is refused unless `allow_v1`; its events are then
    checked, and the report says the header is not vouched for (`header_bound` False).
    """
    with open(path, "rb") as fh:
        first = fh.read(1)
    if first == b"{":
        return _verify_jsonl(path, public_key, key_name, allow_v1)
    return _verify_csv(path, public_key, key_name, allow_v1)


def _verify_note(
    report: ExportReport, text: str, public_key: PublicKey, key_name: str | None
) -> note.Checkpoint | None:
    try:
        cp = note.verify(text, public_key, key_name)
    except (note.NoteError, InvalidKey) as exc:
        report.fail(None, f"checkpoint: {exc}")
        return None
    report.tree_size, report.origin = cp.tree_size, cp.origin
    report.checked.append("checkpoint signature")
    return cp


def _version(report: ExportReport, fmt: Any, allow_v1: bool) -> bool:
    report.format = fmt
    if fmt in BOUND_FORMATS:
        return True
    if fmt == FORMAT_V1:
        if allow_v1:
            return True
        report.fail(
            None,
            "a version 1 export: its header is not covered by the signature (verify its events alone with --allow-v1)",
        )
        return False
    report.fail(None, "not a phigate audit export of a known format")
    return False


def _check_header(
    report: ExportReport, header: dict[str, Any], cp: note.Checkpoint, public_key: PublicKey, key_name: str | None
) -> bool:
    """Every header field is bound by the signed digest and agrees with the note and the key."""
    if report.format not in BOUND_FORMATS:
        return True  # v1, accepted on request: nothing in its header is vouched for
    if set(header) - {"type", "checkpoint"} != set(HEADER_FIELDS):
        report.fail(None, "the export header has missing or unknown fields")
        return False
    try:
        binding = header_binding(header)
    except NotCanonicalisable:
        binding = None
    if binding not in cp.extensions:
        report.fail(None, "the export header does not match the digest in its signed note: it was altered")
        return False
    raw = public_raw(public_key)
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
        (
            not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= cp.tree_size,
            "its export event is not in the signed tree",
        ),
        (not isinstance(header["filters"], dict), "its filters are malformed"),
    ]
    for bad, why in problems:
        if bad:
            report.fail(None, f"the export header does not hold: {why}")
            return False
    report.header = {k: header[k] for k in HEADER_FIELDS}
    report.checked.append("header (filters, tree size, export event, key, origin, canonical form)")
    return True


def _verify_jsonl(path: str, public_key: PublicKey, key_name: str | None, allow_v1: bool) -> ExportReport:
    report = ExportReport()
    cp: note.Checkpoint | None = None
    last, ended = 0, None
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
                if cp is None:  # unreachable: the first line is the header, or the check returned
                    return report.fail(None, f"line {number}: an event before the header")
                if not _check_event(report, cp, obj, obj.get("leaf_hash", ""), obj.get("inclusion_path", []), last):
                    return report
                last = obj["seq"]
            elif kind == "end":
                ended = obj.get("events")
            else:
                return report.fail(None, f"line {number}: unknown record type")
    return _finish(report, ended)


def _finish(report: ExportReport, ended: Any) -> ExportReport:
    if ended is None:
        return report.fail(None, "the export is truncated (no end marker)")
    if ended != report.events:
        return report.fail(None, f"the end marker counts {ended} events but the file holds {report.events}")
    report.checked += ["every leaf hash", "every inclusion proof", "completeness (end marker)"]
    return report


def _verify_csv(path: str, public_key: PublicKey, key_name: str | None, allow_v1: bool) -> ExportReport:
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
                record: dict[str, Any] = {"seq": int(row[0]), "occurred_at": row[1]}
                for name, cell in zip(FIELDS[2:12], row[2:12], strict=False):
                    record[name] = restore(cell) if cell != "" else None
                record["details"] = json.loads(row[12])
            except ValueError:
                return report.fail(None, f"row for event {row[0]!r} is malformed")
            if not _check_event(report, cp, record, row[13], row[14].split() if row[14] else [], last):
                return report
            last = record["seq"]
    return _finish(report, ended)
