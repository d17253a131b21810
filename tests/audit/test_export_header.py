"""An export's header is bound to its signature: editing any header field fails `phigate audit verify-export`,
and the verification recipe of docs/audit.md, run verbatim, agrees."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner

from gateway.audit import note
from gateway.audit.actions import Action
from gateway.audit.cli import audit_app
from gateway.audit.service import Actor, record_event

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"

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
    "an added field": lambda h: {**h, "approved_by": "nobody"},
    "a removed field": lambda h: {k: v for k, v in h.items() if k != "filters"},
}


@pytest.fixture
def exported(client, login, components, factory, tmp_path):
    """A JSON Lines and a CSV export (filtered), the verifier key, and the PEM file, from the API."""
    practice = factory.org("practice")
    with components.db.transaction() as db:
        for i in range(3):
            record_event(db, Action.TRANSFER_DOWNLOAD_COMPLETED, actor=Actor(org_id=practice.id), target_type="transfer",
                         target_id=f"t{i}", target_org_id=practice.id, details={"bytes": i})
    login(client, factory.user("auditor", factory.org("operator")))
    key = client.get("/api/v1/audit/public-key").json()
    pem = tmp_path / "key.pem"
    pem.write_text(key["public_key_pem"])
    files = {}
    for fmt in ("jsonl", "csv"):
        r = client.get(f"/api/v1/audit/export.{fmt}", params={"action": "transfer.*"})
        assert r.status_code == 200
        files[fmt] = tmp_path / f"export.{fmt}"
        files[fmt].write_bytes(r.content)
    return files, key["verifier_key"], pem


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
            csv.writer(cell, lineterminator="").writerow(["#header", json.dumps(edit(_csv_header(src)),
                                                                                separators=(",", ":"))])
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
    assert header["format"] == "phigate-audit-export-v2" and header["filters"] == {"action": "transfer.*"}
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
    old.write_text("\n".join([json.dumps({**header, "format": "phigate-audit-export-v1", "checkpoint": stored.note}), *lines[1:]]) + "\n")
    r = _verify(old, vkey)
    assert r.exit_code == 1 and "--allow-v1" in r.output
    r = _verify(old, vkey, "--allow-v1")
    assert r.exit_code == 0 and "NOT covered by the signature" in r.output and "header signed" not in r.output


def _recipe() -> str:
    text = DOCS.read_text()
    section = text.split("Without PHI Gate", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_documented_python_verifier_agrees(exported, tmp_path):
    """docs/audit.md's stand-alone verifier, run verbatim: it accepts both formats and refuses an edited header."""
    files, _, pem = exported
    script = tmp_path / "verify_export.py"
    script.write_text(_recipe())

    def run(path):
        return subprocess.run([sys.executable, str(script), str(path), str(pem)], capture_output=True, text=True,
                              timeout=120)

    for path in files.values():
        r = run(path)
        assert r.returncode == 0 and r.stdout.startswith("OK: 3 events"), r.stderr
    for field in ("filters", "export_event_seq", "tree_size"):
        bad = tmp_path / "bad.jsonl"
        _jsonl_with_header(files["jsonl"], bad, EDITS[field])
        assert run(bad).returncode != 0, field
        bad_csv = tmp_path / "bad.csv"
        _csv_with_header(files["csv"], bad_csv, EDITS[field])
        assert run(bad_csv).returncode != 0, field
