"""The transparency log is a library: it imports nothing of ours, at module level or inside a function."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "translog"
OURS = {"gateway", "retention", "crypto", "storage", "tests"}


def test_no_module_of_translog_imports_ours():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {name}" for name in names if name.split(".")[0] in OURS]
    assert not found, found


def test_importing_the_public_api_loads_nothing_of_ours():
    code = ("import sys, translog; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(OURS)!r}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
