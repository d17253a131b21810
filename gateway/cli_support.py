"""What every `phigate` command module shares: settings, the installation's components, the CLI's actor,
one-line errors, and a progress bar for long runs.

gateway/cli.py and the domains' command modules (gateway/audit/cli.py, gateway/retention/cli.py) all
import from here, so no command module imports another.
"""

from __future__ import annotations

import getpass
import sys
import time
from pathlib import Path

import typer

from gateway.audit.service import Actor
from gateway.config import ConfigurationRefused, Settings, check_production


def load_settings() -> Settings:
    """The settings from the environment; refused (exit 2) when production is misconfigured."""
    settings = Settings()
    try:
        check_production(settings)
    except ConfigurationRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    return settings


def refuse(message: str) -> None:
    """One line on stderr, exit status 2: the command cannot run here."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1]
    return None if not path or path == ":memory:" else Path(path)


def require_installation(settings: Settings, *, schema: bool = True) -> None:
    """Refuse to work where there is no installation, and create nothing while finding out.

    Without this, opening the default SQLite URL would create an empty `./var/phigate.db`
    wherever the command was typed, and the first query would die on a missing table.
    """
    data = settings.resolved_data_dir
    inside = [
        name
        for name, value in (
            ("PHIGATE_DATABASE_URL", settings.database_url),
            ("PHIGATE_STORAGE_URL", settings.storage_url),
            ("PHIGATE_KEY_PROVIDER_URL", settings.key_provider_url),
        )
        if value is None
    ]
    if inside and not data.is_dir():
        refuse(
            f"no PHI Gate installation: data directory {data} does not exist; set PHIGATE_DATA_DIR to the "
            f"installation's data directory (or run `phigate init` to create one)"
        )
    database = _sqlite_path(settings.effective_database_url)
    if database is not None and not database.is_file():
        refuse(
            f"no PHI Gate database at {database}; set PHIGATE_DATA_DIR (or PHIGATE_DATABASE_URL) to the "
            f"installation's (or run `phigate init` to create one)"
        )
    keyring = settings.effective_key_provider_url
    if keyring.startswith("local://") and not Path(keyring.removeprefix("local://")).is_dir():
        refuse(
            f"no keyring at {keyring.removeprefix('local://')}; set PHIGATE_DATA_DIR (or "
            f"PHIGATE_KEY_PROVIDER_URL) to the installation's (or run `phigate init` to create one)"
        )
    if schema:
        from sqlalchemy.exc import SQLAlchemyError

        from gateway.migrate import is_current

        try:
            current = is_current(settings.effective_database_url)
        except SQLAlchemyError as exc:
            refuse(f"cannot open the database ({type(exc).__name__}); check PHIGATE_DATABASE_URL")
        if not current:
            refuse("the database schema is not current: run `phigate db upgrade` (or `phigate init`)")


def components(settings: Settings | None = None):
    """The installation's components; every command that works on an installation comes through here."""
    from gateway.components import Components

    settings = settings or load_settings()
    require_installation(settings)
    from gateway.auditor import alerts
    from gateway.notifications import service as notifications

    components = Components(settings)
    alerts.install(components)
    notifications.install(components)
    return components


def actor() -> Actor:
    try:
        who = getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        who = "unknown"
    return Actor(user_agent=f"phigate-cli ({who})"[:256])


def fail(exc: Exception) -> None:
    from gateway.errors import GatewayError

    if isinstance(exc, GatewayError):
        typer.echo(f"error: {exc.message} ({exc.code})", err=True)
        raise typer.Exit(1) from None
    raise exc


class Bar:
    """A tiny progress bar for long CLI runs (stderr; redrawn only on a terminal)."""

    def __init__(self, label: str, stream=None, width: int = 30):
        self.label, self.width = label, width
        self.stream = stream or sys.stderr
        self.total, self.done = 0, 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self.tty = self.stream.isatty()

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self._draw(force=True)

    def advance(self, n: int) -> None:
        self.done += n
        self._draw()

    def _line(self) -> str:
        total = max(self.total, self.done, 1)
        filled = int(self.width * self.done / total)
        rate = self.done / max(time.monotonic() - self.started, 1e-6)
        return f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{total} objects {rate:.0f}/s"

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty and (force or now - self._drawn >= 0.1):
            self.stream.write("\r" + self._line())
            self.stream.flush()
            self._drawn = now

    def finish(self) -> None:
        if self.total or self.done:
            self.stream.write(("\r" if self.tty else "") + self._line() + "\n")
            self.stream.flush()
