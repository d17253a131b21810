"""Which test lanes this machine can run, and why not when it cannot."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

LANES = ("sqlite", "postgresql")
CHROMIUM = os.environ.get("PHIGATE_TEST_CHROMIUM", "/usr/bin/chromium")
NGINX = os.environ.get("PHIGATE_TEST_NGINX", "nginx")
NODE = os.environ.get("PHIGATE_TEST_NODE", "node")


@cache
def lane_unavailable(name: str) -> str | None:
    """None when the lane can run, else a one-line reason."""
    if name == "sqlite":
        return None
    if name == "postgresql":
        try:
            import psycopg

            url = os.environ.get("PHIGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
                return None
        except Exception as exc:  # noqa: BLE001
            return f"no PostgreSQL server reachable ({type(exc).__name__})"
    if name == "scale":
        # make scale-check: nginx (Debian package), PostgreSQL and moto's server, all on loopback.
        if not (shutil.which(NGINX) or os.path.exists("/usr/sbin/nginx")):
            return f"nginx is not installed ({NGINX}; Debian package nginx)"
        pg = lane_unavailable("postgresql")
        if pg:
            return pg
        try:
            import moto.server  # noqa: F401
        except ImportError:
            return "moto[server] is not installed"
        return None
    if name == "browser":
        if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
            return f"Debian chromium not installed at {CHROMIUM}"
        try:
            import playwright  # noqa: F401
        except ImportError:
            return "playwright is not installed"
        return None
    if name == "node":
        # The docs' verification recipes in JavaScript run on Node's built-in crypto (Ed25519: Node 18+).
        path = shutil.which(NODE)
        if path is None:
            return f"Node.js is not installed ({NODE}; Debian package nodejs)"
        try:
            version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
            major = int(version.strip().lstrip("v").split(".")[0])
        except (OSError, ValueError, subprocess.SubprocessError):
            return f"{path} --version did not answer"
        if major < 18:
            return f"Node.js {version.strip()} is older than 18"
        return None
    if name == "shell":
        # docs/integration.md's bash scripts: what a practice's IT person pastes runs on these.
        missing = [tool for tool in ("bash", "curl", "jq", "sha256sum") if shutil.which(tool) is None]
        if missing:
            return f"{', '.join(missing)} not installed (Debian packages bash, curl, jq, coreutils)"
        return None
    raise ValueError(name)
