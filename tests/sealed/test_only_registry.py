"""The registry is the only code outside crypto/ and storage/ that encrypts, decrypts, wraps or destroys objects.

Read from the source tree itself (every product package: the gateway, retention,
and any other top-level package that is not a library, a test or a benchmark of
the libraries), so a new module that seals or destroys on its own fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The libraries themselves, their tests, and bench/ (benchmarks of the libraries' own throughput).
NOT_PRODUCT = {"crypto", "storage", "tests", "bench", ".venv", "var", "docs", "scripts", "deploy"}
REGISTRY = ROOT / "gateway" / "sealed" / "service.py"
FUNCTIONS = {"encrypt_stream", "decrypt_stream", "decrypt_range", "encrypt_bytes", "decrypt_bytes", "SegmentCipher"}
METHODS = {"generate_data_key", "unwrap", "rewrap", "destroy"}


def product_sources() -> list[Path]:
    out = []
    for top in sorted(ROOT.iterdir()):
        if top.is_dir() and top.name not in NOT_PRODUCT and not top.name.startswith("."):
            out.extend(sorted(top.rglob("*.py")))
    return out


def uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "crypto":
            found += [f"imports {a.name}" for a in node.names if a.name in FUNCTIONS]
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FUNCTIONS:
                found.append(f"calls {func.id}()")
            elif isinstance(func, ast.Attribute) and (func.attr in METHODS or func.attr in FUNCTIONS):
                found.append(f"calls .{func.attr}() line {node.lineno}")
    return found


def test_the_scan_sees_the_product_and_the_registry():
    sources = product_sources()
    names = {p.relative_to(ROOT).as_posix() for p in sources}
    # The scan covers every module that handled objects before the registry existed.
    assert {
        "gateway/transfers/upload.py",
        "gateway/transfers/download.py",
        "gateway/baas/copies.py",
        "gateway/custody.py",
        "retention/jobs.py",
        "gateway/sealed/fsck.py",
    } <= names
    # ... and it would see a call if there were one: the registry's own calls are found.
    assert {"calls encrypt_stream()", "calls decrypt_stream()", "calls decrypt_range()"} <= set(uses(REGISTRY))
    assert any(u.startswith("calls .destroy()") for u in uses(REGISTRY))
    assert any(u.startswith("calls .generate_data_key()") for u in uses(REGISTRY))


def test_only_the_registry_encrypts_decrypts_rewraps_or_destroys():
    offenders = {p.relative_to(ROOT).as_posix(): uses(p) for p in product_sources() if p != REGISTRY}
    assert {path: found for path, found in offenders.items() if found} == {}
