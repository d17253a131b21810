"""Print a pip constraints file that pins each direct dependency to its declared minimum.

    python scripts/minimum_constraints.py [EXTRA ...] > constraints.txt

Every `name>=X` of [project].dependencies (and of the named extras) becomes `name==X`, so
that `pip install -c constraints.txt -e '.[test]'` installs the oldest versions that
pyproject.toml claims to support; what they depend on resolves as usual.  Used by
scripts/test_minimum.sh: a minimum that cannot import or pass the fast lane is a wrong one.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*(.*)$")
MINIMUM = re.compile(r">=\s*([0-9][0-9A-Za-z.]*)")


def constraints(extras: list[str]) -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = list(project["dependencies"])
    for extra in extras:
        specs += project["optional-dependencies"][extra]
    pins: dict[str, str] = {}
    for spec in specs:
        match = REQUIREMENT.match(spec)
        if not match:
            raise SystemExit(f"cannot read requirement {spec!r}")
        name, rest = match.group(1).lower(), match.group(2)
        minimum = MINIMUM.search(rest)
        if minimum:
            pins[name] = max(
                pins.get(name, minimum.group(1)),
                minimum.group(1),
                key=lambda v: [int(p) if p.isdigit() else 0 for p in v.split(".")],
            )
        elif "==" in rest:
            pins[name] = rest.split("==", 1)[1].split(",")[0].strip()
        else:
            raise SystemExit(f"{spec!r} declares no minimum version")
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


if __name__ == "__main__":
    print("\n".join(constraints(sys.argv[1:])))
