"""The export format and its offline verifier, without a database: a log built in memory, exported as v3,
verified with the public key alone; the committed v2 exports still verify; what breaks an export is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.translog.signer import TestSigner
from translog import merkle, note
from translog.export import CSV_PATH_SEP, FORMAT, FORMAT_V2, export_csv, export_jsonl, header_binding, verify_export
from translog.keys import fingerprint
from translog.leaf import VERSION, details_text, format_time, leaf_hash_of

FIXTURES = Path(__file__).resolve().parent / "fixtures"
ORIGIN = "example.org/audit"


def _events(n: int) -> list[tuple]:
    from datetime import UTC, datetime

    at = format_time(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
    agents = ("tool/1.0", "=SUM(1)", "Navigateur (é)")
    return [
        (
            seq,
            at,
            "test.event",
            "success",
            "info",
            "u1",
            "o1",
            None,
            agents[seq % 3],
            "thing",
            f"t{seq}",
            "o1",
            {"i": seq, "code": "Größe-✓"},
        )
        for seq in range(1, n + 1)
    ]


@pytest.fixture
def log(tmp_path):
    """Seven events, a v3 export of events 2, 4 and 6 in both formats, and the signer."""
    signer = TestSigner()
    events = _events(7)
    leaves = [leaf_hash_of(*e) for e in events]
    root = merkle.root_of(leaves)
    header = {
        "format": FORMAT,
        "origin": ORIGIN,
        "tree_size": 7,
        "export_event_seq": 7,
        "filters": {"action": "test.*"},
        "public_key_fingerprint": fingerprint(signer.public_key_raw()),
        "verifier_key": note.verifier_key(ORIGIN, signer.public_key_raw()),
        "canonical": VERSION,
    }
    signed = note.sign(ORIGIN, 7, root, signer, extensions=(header_binding(header),))

    def records(sep: str):
        for e in events[1::2]:
            path = merkle.inclusion_path(e[0] - 1, 7, lambda a, b: merkle.root_of(leaves[a:b]))
            yield (*e[:12], details_text(e[12])), leaves[e[0] - 1].hex(), sep.join(h.hex() for h in path)

    files = {}
    for fmt, write in (("jsonl", export_jsonl), ("csv", export_csv)):
        files[fmt] = tmp_path / f"export.{fmt}"
        files[fmt].write_bytes(b"".join(write(records, signed, header)))
    return files, signer


def test_a_v3_export_verifies_with_the_public_key_alone(log):
    files, signer = log
    for path in files.values():
        report = verify_export(str(path), signer.public_key_raw())
        assert report.ok and report.header_bound and report.format == FORMAT, report.problem
        assert (report.events, report.tree_size, report.origin) == (3, 7, ORIGIN)
    assert "'=SUM(1)" in files["csv"].read_text(encoding="utf-8")  # neutralised, and restored by the verifier


@pytest.mark.parametrize("name", ["export-v2.jsonl", "export-v2.csv"])
def test_the_committed_v2_exports_still_verify(name):
    report = verify_export(str(FIXTURES / name), (FIXTURES / "signing-key.pem").read_bytes())
    assert report.ok and report.header_bound and report.format == FORMAT_V2, report.problem
    assert report.events == 3 and report.header["filters"] == {"action": "transfer.*"}


def test_the_committed_v2_export_verifies_with_its_verifier_key():
    name, raw = note.parse_verifier_key((FIXTURES / "verifier-key.txt").read_text())
    assert verify_export(str(FIXTURES / "export-v2.jsonl"), raw, name).ok


def test_a_header_relabelled_v2_fails(log, tmp_path):
    """A v3 header claiming v2 needs a v2 digest line the signed note does not have."""
    files, signer = log
    lines = files["jsonl"].read_text(encoding="utf-8").splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([json.dumps({**json.loads(lines[0]), "format": FORMAT_V2}), *lines[1:]]) + "\n")
    report = verify_export(str(bad), signer.public_key_raw())
    assert not report.ok and "altered" in report.problem


def test_an_edited_event_a_wrong_path_and_a_missing_end_are_named(log, tmp_path):
    files, signer = log
    lines = files["jsonl"].read_text(encoding="utf-8").splitlines()
    cases = {
        "edited": ([lines[0], lines[1].replace('"t2"', '"t3"'), *lines[2:]], (2, "do not hash to its leaf hash")),
        "path": (
            [lines[0], lines[1].replace('"inclusion_path":["', '"inclusion_path":["00'), *lines[2:]],
            (2, "the inclusion proof does not lead to the signed root"),
        ),
        "moved": ([lines[0], lines[2], lines[1], *lines[3:]], (2, "sequence numbers must increase")),
        "truncated": (lines[:-1], (None, "truncated")),
    }
    for name, (content, (seq, why)) in cases.items():
        bad = tmp_path / f"{name}.jsonl"
        bad.write_text("\n".join(content) + "\n", encoding="utf-8")
        report = verify_export(str(bad), signer.public_key_raw())
        assert not report.ok and report.first_bad_seq == seq and why in report.problem, (name, report)


def test_another_key_or_no_key_fails_without_raising(log):
    files, _ = log
    report = verify_export(str(files["csv"]), TestSigner().public_key_raw())
    assert not report.ok and report.problem == "checkpoint: no valid signature by the given key"
    report = verify_export(str(files["csv"]), b"not a key")
    assert not report.ok and report.problem == "checkpoint: not an Ed25519 public key"


def test_paths_in_csv_are_space_separated(log):
    files, _ = log
    row = files["csv"].read_text(encoding="utf-8").splitlines()[1].split(",")
    assert CSV_PATH_SEP in row[-1] and all(len(h) == 64 for h in row[-1].split(CSV_PATH_SEP))
