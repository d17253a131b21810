"""Which test lanes this machine can run, and why not when it cannot."""

from __future__ import annotations

import os
import shutil
from functools import lru_cache

LANES = ("sqlite", "postgresql")
CHROMIUM = os.environ.get("PHIGATE_TEST_CHROMIUM", "/usr/bin/chromium")
NGINX = os.environ.get("PHIGATE_TEST_NGINX", "nginx")


@lru_cache(maxsize=None)
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
    raise ValueError(name)
