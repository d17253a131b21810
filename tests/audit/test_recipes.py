"""docs/audit.md's stand-alone export verifiers (Python and Node), run verbatim: they accept what the gateway
exports now and the committed exports of format v2, and refuse an edited header, event or a truncated file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.audit.test_export_header import EDITS, _csv_with_header, _jsonl_with_header
from tests.support.recipes import Recipe

FIXTURES = Path(__file__).resolve().parents[1] / "translog" / "fixtures"


@pytest.fixture(params=["python", "node"])
def verifier(request, tmp_path) -> Recipe:
    node = request.getfixturevalue("node") if request.param == "node" else None
    return Recipe("audit.md", "verify-export", request.param, tmp_path, node)


def test_the_recipe_verifies_a_gateway_export(exported, verifier):
    files, _, pem = exported
    assert json.loads(files["jsonl"].read_text().splitlines()[0])["format"] == "phigate-audit-export-v3"
    for path in files.values():
        r = verifier.run(path, pem)
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("OK: 3 events included in the signed log") and "transfer.*" in r.stdout


@pytest.mark.parametrize("field", ["filters", "export_event_seq", "tree_size", "format (downgraded to v2)"])
def test_the_recipe_refuses_an_edited_header(exported, verifier, tmp_path, field):
    files, _, pem = exported
    bad, bad_csv = tmp_path / "bad.jsonl", tmp_path / "bad.csv"
    _jsonl_with_header(files["jsonl"], bad, EDITS[field])
    _csv_with_header(files["csv"], bad_csv, EDITS[field])
    for path in (bad, bad_csv):
        r = verifier.run(path, pem)
        assert r.returncode != 0 and not r.stdout.startswith("OK"), (field, r.stdout)
        assert "the header was altered after signing" in r.stderr or "disagree" in r.stderr, r.stderr


def test_the_recipe_refuses_an_edited_event_and_a_truncated_file(exported, verifier, tmp_path):
    files, _, pem = exported
    lines = files["jsonl"].read_text(encoding="utf-8").splitlines()
    [at] = [i for i, line in enumerate(lines) if "Navigateur" in line]
    edited = tmp_path / "edited.jsonl"
    edited.write_text(
        "\n".join([*lines[:at], lines[at].replace("Navigateur", "Navigator"), *lines[at + 1 :]]) + "\n",
        encoding="utf-8",
    )
    r = verifier.run(edited, pem)
    assert r.returncode != 0 and "fields do not match leaf hash" in r.stderr, r.stderr
    truncated = tmp_path / "truncated.jsonl"
    truncated.write_text("\n".join(lines[:-2] + lines[-1:]) + "\n", encoding="utf-8")
    r = verifier.run(truncated, pem)
    assert r.returncode != 0 and "truncated export" in r.stderr, r.stderr


@pytest.mark.parametrize("name", ["export-v2.jsonl", "export-v2.csv"])
def test_the_recipe_verifies_exports_of_format_v2(verifier, name):
    """Made by the gateway before exports were v3 (non-ASCII user agent and details included)."""
    r = verifier.run(FIXTURES / name, FIXTURES / "signing-key.pem")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("OK: 3 events included in the signed log")
