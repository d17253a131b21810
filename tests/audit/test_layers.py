"""The audit log's core imports no domain and no auditor feature; domains use the core only."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("gateway.auth", "gateway.users", "gateway.orgs", "gateway.transfers", "gateway.baas",
           "gateway.retention", "retention")


def _imports(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                yield f"{path.relative_to(ROOT)}:{node.lineno}", name


def _under(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_core_imports_no_domain_and_no_auditor_feature():
    bad = [(where, name) for where, name in _imports(ROOT / "gateway" / "audit")
           if _under(name, DOMAINS + ("gateway.auditor",))]
    assert not bad, bad


def test_domains_import_the_core_not_the_auditor_feature():
    folders = [ROOT / "retention"] + [ROOT / "gateway" / d for d in ("auth", "users", "orgs", "transfers", "baas")]
    bad = [(where, name) for folder in folders for where, name in _imports(folder)
           if _under(name, ("gateway.auditor",))]
    assert not bad, bad
