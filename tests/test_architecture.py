"""The import layers of docs/architecture.md, checked on every module of our packages.

Adapters (HTTP routes and pages, CLI, the app and its composition) sit on top; below them
the domain services, in a fixed order so that no two domains import each other; below
them the gateway's core; at the bottom the libraries, which import nothing of ours.
Imports inside functions (and under `if TYPE_CHECKING:`) count as much as those at module
level: a late import still ties the packages together.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = ("gateway", "retention", "crypto", "storage", "translog")

# Libraries: each may import only itself.
LIBRARIES = ("crypto", "storage", "translog")

# Adapters and composition: the only modules that know HTTP or the command line, or that
# wire every domain together (all models for Alembic, every domain's scheduled jobs).
ADAPTERS = (
    "gateway.app",
    "gateway.api_docs",
    "gateway.api_errors",
    "gateway.cli",
    "gateway.cli_support",
    "gateway.demo",
    "gateway.deps",
    "gateway.web",
    "gateway.health",
    "gateway.security_headers",
    "gateway.telemetry",
    "gateway.models",
    "gateway.auth.cookies",
    "gateway.jobs",
    "gateway.migrations",
    "gateway.migrations.*",
    "gateway.*.routes",
    "gateway.*.pages",
    "gateway.*.cli",
    "gateway.*.auth",
)

# Domain services, top first: each may use the domains after it, never those before it.
DOMAINS = (
    ("retention", ("retention", "retention.*")),
    ("custody", ("gateway.custody",)),
    ("auditor", ("gateway.auditor", "gateway.auditor.*")),
    # Resumable uploads become transfers' files: they use transfers' gates, never the reverse.
    ("uploads", ("gateway.uploads", "gateway.uploads.*")),
    ("transfers", ("gateway.transfers", "gateway.transfers.*")),
    ("baas", ("gateway.baas", "gateway.baas.*")),
    # Who is told of what, and the mail that leaves: called by transfers and alerts, never the reverse.
    ("notifications", ("gateway.notifications", "gateway.notifications.*")),
    # Accounts and their credentials: a user is disabled with its sessions, a session belongs to a user.
    ("identity", ("gateway.auth", "gateway.auth.*", "gateway.users", "gateway.users.*")),
    ("orgs", ("gateway.orgs", "gateway.orgs.*")),
)

# Everything else under gateway/ is the core: settings, database, clock, ids, errors, keys,
# the audit log and record_event, the sealed-object registry, outbox, leader and scheduler.
CORE = ("gateway", "gateway.*")

# Imports that break a rule today and are being removed.  Nothing may be added here.
PENDING: set[tuple[str, str]] = set()

# No web framework below the adapters: services take plain values, never a Request.
FRAMEWORKS = ("fastapi", "starlette", "typer")


def layer_of(module: str) -> tuple[str, str]:
    """(layer, unit): the unit is the library or domain a module belongs to; first match wins."""
    top = module.split(".")[0]
    if top in LIBRARIES:
        return "library", top
    if any(fnmatchcase(module, p) for p in ADAPTERS):
        return "adapter", "adapters"
    for name, patterns in DOMAINS:
        if any(fnmatchcase(module, p) for p in patterns):
            return "domain", name
    if any(fnmatchcase(module, p) for p in CORE):
        return "core", "core"
    raise ValueError(f"{module} belongs to no layer")


DOMAIN_RANK = {name: i for i, (name, _) in enumerate(DOMAINS)}


def allowed(src: str, dst: str) -> bool:
    """May module `src` import `dst`?  `dst` may be third-party."""
    if dst.split(".")[0] not in OURS:
        return dst.split(".")[0] not in FRAMEWORKS or layer_of(src)[0] == "adapter"
    (src_layer, src_unit), (dst_layer, dst_unit) = layer_of(src), layer_of(dst)
    if src_unit == dst_unit:
        return True
    if src_layer == "library":
        return False
    if src_layer == "adapter":
        return True
    if src_layer == "domain":
        return dst_layer in ("core", "library") or (
            dst_layer == "domain" and DOMAIN_RANK[dst_unit] > DOMAIN_RANK[src_unit]
        )
    return dst_layer == "library"  # core


def imports_of(source: str, module: str, is_package: bool = False) -> list[tuple[str, int]]:
    """Every module `source` imports, anywhere in it (module level or inside functions), with its line."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # `from pkg import mod` imports pkg.mod when mod is a module: check the longer name.
            found.extend((f"{target}.{alias.name}", node.lineno) for alias in node.names)
    return found


def _resolve(name: str, modules: set[str]) -> str:
    """The longest prefix of `name` that is one of our modules (`gateway.audit.service.Actor` -> the module)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return name if parts[0] not in OURS else parts[0]


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """`module: line imports target (src layer/unit -> dst layer/unit)` for every import that breaks a rule."""
    modules = set(sources)
    out = []
    for module, (source, is_package) in sorted(sources.items()):
        for name, line in imports_of(source, module, is_package):
            target = _resolve(name, modules)
            if target != module and not allowed(module, target) and (module, target) not in PENDING:
                src = "/".join(layer_of(module))
                dst = "/".join(layer_of(target)) if target.split(".")[0] in OURS else "framework"
                out.append(f"{module}:{line} imports {target} ({src} -> {dst})")
    return out


def our_modules() -> dict[str, tuple[str, bool]]:
    sources = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).is_dir() else ():
            rel = path.relative_to(ROOT).with_suffix("")
            if "versions" in rel.parts:  # migration scripts are frozen history, not part of the layering
                continue
            is_package = rel.name == "__init__"
            name = ".".join(rel.parts[:-1] if is_package else rel.parts)
            sources[name] = (path.read_text(encoding="utf-8"), is_package)
    return sources


def test_every_import_points_down():
    assert violations(our_modules()) == []


def test_pending_exceptions_are_still_needed():
    sources = our_modules()
    for module, target in sorted(PENDING):
        found = (
            {_resolve(n, set(sources)) for n, _ in imports_of(sources[module][0], module, sources[module][1])}
            if module in sources
            else set()
        )
        assert target in found, f"{module} no longer imports {target}: drop it from PENDING"


def test_every_module_has_a_layer():
    unplaced = []
    for module in our_modules():
        try:
            layer_of(module)
        except ValueError:
            unplaced.append(module)
    assert unplaced == []


def test_docs_draw_the_same_domain_order():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = [
        line.split("|")[1].strip().removeprefix("domain: ")
        for line in text.splitlines()
        if line.startswith("| domain: ")
    ]
    assert drawn == [name for name, _ in DOMAINS]


@pytest.mark.parametrize(
    "module, source, offending",
    [
        # A library reaching into the gateway, even lazily inside a function.
        ("crypto.extra", "def f():\n    from gateway.config import Settings\n", "gateway.config"),
        # The core importing a domain (what gateway/models.py once did with retention's models).
        ("gateway.db", "from retention.models import Certificate\n", "retention.models"),
        # A domain importing one above it.
        ("gateway.transfers.service", "from retention import policies\n", "retention.policies"),
        ("gateway.baas.service", "import gateway.transfers.upload\n", "gateway.transfers.upload"),
        # A domain importing an adapter, or HTTP types.
        ("retention.jobs", "from gateway.retention.pages import x\n", "gateway.retention.pages"),
        ("gateway.transfers.upload", "from starlette.requests import Request\n", "starlette.requests.Request"),
        # A relative import is resolved before it is judged.
        ("gateway.sealed.service", "from ..transfers import models\n", "gateway.transfers.models"),
        # Type-only imports count too: the dependency is in the code's meaning.
        (
            "gateway.db",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from retention.models import X\n",
            "retention.models",
        ),
    ],
)
def test_checker_names_the_offending_import(module, source, offending):
    sources = dict.fromkeys(
        (
            "gateway.config",
            "gateway.db",
            "retention.models",
            "retention.policies",
            "gateway.transfers.upload",
            "gateway.transfers.models",
            "gateway.retention.pages",
            "gateway.sealed.service",
        ),
        ("", False),
    )
    sources[module] = (source, False)
    found = violations(sources)
    assert len(found) == 1 and f"imports {offending} " in found[0] and found[0].startswith(f"{module}:")


@pytest.mark.parametrize(
    "module, source",
    [
        ("gateway.transfers.routes", "from retention import policies\nfrom fastapi import APIRouter\n"),
        ("retention.jobs", "from gateway.transfers.models import Transfer\nfrom gateway.sealed import service\n"),
    ],
)
def test_checker_lets_downward_imports_pass(module, source):
    sources = dict.fromkeys(
        (
            "retention.policies",
            "retention.models",
            "gateway.transfers.models",
            "gateway.sealed.service",
            "gateway.sealed",
        ),
        ("", False),
    )
    sources[module] = (source, False)
    assert violations(sources) == []
