"""An export's header is bound to its signature: editing any header field fails `phigate audit verify-export`
(docs/audit.md's recipes, run verbatim, agree: tests/audit/test_recipes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from gateway.auditor.cli import audit_app
from translog import note

_other = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
# One plausible forgery per header field: what someone editing the file would write there.
EDITS = {
    "filters": lambda h: {**h, "filters": {}},
    "tree_size": lambda h: {**h, "tree_size": h["tree_size"] - 1},
    "export_event_seq": lambda h: {**h, "export_event_seq": h["export_event_seq"] - 1},
    "public_key_fingerprint": lambda h: {**h, "public_key_fingerprint": "0" * 64},
    "origin": lambda h: {**h, "origin": "phigate/elsewhere/audit"},
    "canonical": lambda h: {**h, "canonical": "phigate-audit-v0"},
    "verifier_key": lambda h: {**h, "verifier_key": note.verifier_key(h["origin"], _other)},
    "format": lambda h: {**h, "format": "phigate-audit-export-v1"},
    "format (downgraded to v2)": lambda h: {**h, "format": "phigate-audit-export-v2"},
    "an added field": lambda h: {**h, "approved_by": "nobody"},
    "a removed field": lambda h: {k: v for k, v in h.items() if k != "filters"},
}


def _verify(path, vkey, *extra):
    return CliRunner().invoke(audit_app, ["verify-export", str(path), "--public-key", vkey, *extra])


def _jsonl_with_header(src: Path, dst: Path, edit) -> None:
    lines = src.read_text().splitlines()
    header = json.loads(lines[0])
    lines[0] = json.dumps(edit(header))
    dst.write_text("\n".join(lines) + "\n")


def _csv_header(path: Path) -> dict:
    row = next(x for x in path.read_text().splitlines() if x.startswith("#header,"))
    import csv

    return json.loads(next(csv.reader([row]))[1])


def _csv_with_header(src: Path, dst: Path, edit) -> None:
    import csv
    import io

    out = []
    for line in src.read_bytes().decode().split("\r\n"):
        if line.startswith("#header,"):
            cell = io.StringIO()
            csv.writer(cell, lineterminator="").writerow(
                ["#header", json.dumps(edit(_csv_header(src)), separators=(",", ":"))]
            )
            line = cell.getvalue()
        out.append(line)
    dst.write_bytes("\r\n".join(out).encode())


def test_an_untouched_export_verifies_with_its_header(exported):
    files, vkey, _ = exported
    for path in files.values():
        r = _verify(path, vkey)
        assert r.exit_code == 0, r.output
        assert "header signed" in r.output and '"action": "transfer.*"' in r.output
    header = json.loads(files["jsonl"].read_text().splitlines()[0])
    assert header["format"] == "phigate-audit-export-v3" and header["filters"] == {"action": "transfer.*"}
    assert _csv_header(files["csv"])["filters"] == {"action": "transfer.*"}
    # The export's note is still a valid checkpoint of the tree for a verifier ignoring extensions.
    cp = note.verify(header["checkpoint"], note.parse_verifier_key(vkey)[1])
    assert cp.tree_size == header["tree_size"] and len(cp.extensions) == 1


@pytest.mark.parametrize("field", list(EDITS))
def test_editing_any_header_field_fails_verification(exported, tmp_path, field):
    files, vkey, _ = exported
    bad = tmp_path / "bad.jsonl"
    _jsonl_with_header(files["jsonl"], bad, EDITS[field])
    r = _verify(bad, vkey)
    assert r.exit_code == 1 and "EXPORT DOES NOT VERIFY" in r.output, (field, r.output)
    bad_csv = tmp_path / "bad.csv"
    _csv_with_header(files["csv"], bad_csv, EDITS[field])
    r = _verify(bad_csv, vkey)
    assert r.exit_code == 1 and "EXPORT DOES NOT VERIFY" in r.output, (field, r.output)


def test_a_csv_without_its_header_row_is_refused_as_unsigned(exported, tmp_path):
    files, vkey, _ = exported
    stripped = tmp_path / "stripped.csv"
    rows = files["csv"].read_bytes().decode().split("\r\n")
    stripped.write_bytes("\r\n".join(x for x in rows if not x.startswith("#header,")).encode())
    r = _verify(stripped, vkey)
    assert r.exit_code == 1 and "version 1" in r.output


def test_a_version_1_export_verifies_its_events_only_on_request(exported, tmp_path, components):
    """As exports were made before the header was bound: the stored checkpoint note, no digest."""
    from sqlalchemy import select

    from gateway.audit.models import AuditCheckpoint

    files, vkey, _ = exported
    lines = files["jsonl"].read_text().splitlines()
    header = json.loads(lines[0])
    with components.db.snapshot() as db:
        stored = db.scalar(select(AuditCheckpoint).where(AuditCheckpoint.tree_size == header["tree_size"]))
    old = tmp_path / "old.jsonl"
    old.write_text(
        "\n".join([json.dumps({**header, "format": "phigate-audit-export-v1", "checkpoint": stored.note}), *lines[1:]])
        + "\n"
    )
    r = _verify(old, vkey)
    assert r.exit_code == 1 and "--allow-v1" in r.output
    r = _verify(old, vkey, "--allow-v1")
    assert r.exit_code == 0 and "NOT covered by the signature" in r.output and "header signed" not in r.output


def test_a_key_file_that_is_not_a_key_is_refused_before_reading_the_export(tmp_path):
    key = tmp_path / "key.pem"
    key.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    export = tmp_path / "export.jsonl"
    export.write_text("{}\n")
    r = _verify(export, str(key))
    assert r.exit_code == 2 and "error: not an Ed25519 public key" in r.output
    assert export.read_text() == "{}\n"
