"""Every (HTTP status, error code) the API can answer, read from the code itself, for the docs' error table.

Services raise the exception family of gateway/errors.py; a code is either a class's own (`code = "..."`) or
given where it is raised (`InvalidInput("...", code="...")`). Both are found here: the classes by import, the
raises by reading the source of gateway/ and retention/. The answers made by app.py's handlers themselves
(malformed JSON, validation, routing, races, disconnects, internal errors) are listed in HANDLER_CODES, and a
test checks that each still appears in app.py.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "retention")

# Answers made in gateway/app.py's handlers, not by raising a GatewayError.
HANDLER_CODES = {
    ("malformed_json", 400),
    ("client_disconnected", 400),
    ("invalid_input", 422),
    ("conflict", 409),
    ("not_found", 404),
    ("method_not_allowed", 405),
    ("internal_error", 500),
}


def _error_classes() -> dict[str, type]:
    """Every GatewayError subclass by name, after importing every module that may define one."""
    from gateway.errors import GatewayError

    for package in PACKAGES:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if ".migrations" not in info.name:
                importlib.import_module(info.name)
    found: dict[str, type] = {}
    todo = [GatewayError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


def _expand(template: ast.JoinedStr) -> set[str]:
    """The codes an f-string code can take: each is listed here, so a new one fails until documented."""
    from gateway.transfers.download import DENIAL_MESSAGES
    from retention.models import HoldScope

    shape = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in template.values)
    if shape == "download_{}":
        return {f"download_{reason}" for reason in DENIAL_MESSAGES}
    if shape == "{}_not_found":  # retention/holds.py: a hold's target by its scope
        return {f"{scope.value}_not_found" for scope in HoldScope}
    raise AssertionError(f"an error code built as f'{shape}': list what it can be in tests/support/error_codes.py")


def api_error_codes() -> set[tuple[str, int]]:
    """(code, status) of every error the gateway can answer."""
    classes = _error_classes()
    found = set(HANDLER_CODES)
    found |= {(cls.code, cls.status) for cls in classes.values()}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                cls = classes.get(name or "")
                if cls is None:
                    continue
                for keyword in node.keywords:
                    if keyword.arg != "code":
                        continue
                    if isinstance(keyword.value, ast.Constant):
                        found.add((keyword.value.value, cls.status))
                    elif isinstance(keyword.value, ast.JoinedStr):
                        found |= {(code, cls.status) for code in _expand(keyword.value)}
    # The base class's placeholder is never raised as such.
    found.discard(("bad_request", 400))
    return found
