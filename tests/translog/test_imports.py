"""The transparency log is a library: loading it loads nothing of ours (the static rule is tests/test_architecture.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "translog"
OURS = {"gateway", "retention", "crypto", "storage", "tests"}


def test_importing_the_public_api_loads_nothing_of_ours():
    code = f"import sys, translog; print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(OURS)!r}))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
