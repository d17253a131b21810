"""The docs' recipes and scripts, run verbatim: each is the fenced block after `<!-- recipe: NAME LANGUAGE -->`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUFFIX = {"python": ".py", "node": ".js", "bash": ".sh", "sql": ".sql"}


def recipe(doc: str, name: str, language: str) -> str:
    """The code block marked `<!-- recipe: name language -->` in docs/<doc>, exactly as written."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    found = re.findall(rf"<!-- recipe: {re.escape(name)} {language} -->\n```\w+\n(.*?)\n```\n", text, re.S)
    assert len(found) == 1, f"docs/{doc} has {len(found)} '{name} {language}' recipes"
    return found[0] + "\n"


class Recipe:
    """One recipe written to a file, run as `<interpreter> script ARGS...`.

    `interpreter` is the Node.js or bash executable of the lane's fixture for those languages;
    Python recipes run on the suite's own interpreter.
    """

    def __init__(self, doc: str, name: str, language: str, tmp_path: Path, interpreter: str | None = None):
        self.script = tmp_path / f"{name}{SUFFIX[language]}"
        self.script.write_text(recipe(doc, name, language), encoding="utf-8")
        self.interpreter = sys.executable if language == "python" else interpreter

    def run(self, *args, env: dict[str, str] | None = None, stdin: str = "") -> subprocess.CompletedProcess:
        """Run it to the end; `env` is added to this process's environment, `stdin` is what it reads."""
        return subprocess.run(
            [self.interpreter, str(self.script), *map(str, args)],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
