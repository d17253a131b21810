"""Throw-away PostgreSQL databases on the local server, for the test lanes and the benchmarks."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

PG_ADMIN_URL = os.environ.get("PHIGATE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def create_database(prefix: str = "phigate_test") -> tuple[str, Callable[[], None]]:
    """A new empty database's SQLAlchemy URL, and the function that drops it (closing its connections)."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}", drop
