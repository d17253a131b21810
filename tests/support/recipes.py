"""The docs' verification recipes, run verbatim: each is the fenced block after `<!-- recipe: NAME LANGUAGE -->`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
SUFFIX = {"python": ".py", "node": ".js"}


def recipe(doc: str, name: str, language: str) -> str:
    """The code block marked `<!-- recipe: name language -->` in docs/<doc>, exactly as written."""
    text = (DOCS / doc).read_text(encoding="utf-8")
    found = re.findall(rf"<!-- recipe: {re.escape(name)} {language} -->\n```\w+\n(.*?)\n```\n", text, re.S)
    assert len(found) == 1, f"docs/{doc} has {len(found)} '{name} {language}' recipes"
    return found[0] + "\n"


class Recipe:
    """One recipe written to a file, run as `<interpreter> script ARGS...`."""

    def __init__(self, doc: str, name: str, language: str, tmp_path: Path, node: str | None = None):
        self.script = tmp_path / f"{name}{SUFFIX[language]}"
        self.script.write_text(recipe(doc, name, language), encoding="utf-8")
        self.interpreter = sys.executable if language == "python" else node

    def run(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([self.interpreter, str(self.script), *map(str, args)], capture_output=True, text=True)
