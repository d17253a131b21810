"""`phigate`: the operator's command line (init, serve, demo, db, org, user, keys, config)."""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

import typer

from gateway import cli_support as support
from gateway.config import Settings

app = typer.Typer(help="PHI Gate: secure PHI file exchange.", no_args_is_help=True, add_completion=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
org_app = typer.Typer(help="Organisations.", no_args_is_help=True)
user_app = typer.Typer(help="Users.", no_args_is_help=True)
keys_app = typer.Typer(help="Onshore key custody.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
passkey_app = typer.Typer(help="Passkey policy: who must sign in with a passkey.", no_args_is_help=True)
from gateway.auditor.cli import audit_app  # noqa: E402

app.add_typer(audit_app, name="audit")
from gateway.retention.cli import certificate_app, offboard, retention_app  # noqa: E402

app.add_typer(retention_app, name="retention")
app.add_typer(certificate_app, name="certificate")
app.command("offboard")(offboard)
for sub, name in (
    (db_app, "db"),
    (org_app, "org"),
    (user_app, "user"),
    (keys_app, "keys"),
    (config_app, "config"),
    (passkey_app, "passkey-policy"),
):
    app.add_typer(sub, name=name)


def initialise(settings: Settings) -> None:
    """Create the data directory, the onshore keyring and the database schema (idempotent)."""
    from gateway.keys import GATEWAY_SECRETS_KEY
    from gateway.migrate import upgrade

    data = settings.resolved_data_dir
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o700)
    if settings.effective_key_provider_url.startswith("local://"):
        from crypto import init_keyring

        init_keyring(settings.effective_key_provider_url.removeprefix("local://"))
    if settings.effective_storage_url.startswith("file://"):
        objects = settings.effective_storage_url.removeprefix("file://")
        os.makedirs(objects, mode=0o700, exist_ok=True)
    upgrade(settings.effective_database_url)
    components = support.components(settings)
    components.keys.ensure_key(GATEWAY_SECRETS_KEY)


@app.command()
def init() -> None:
    """Initialise the data directory, keyring and database (safe to run again)."""
    settings = support.load_settings()
    initialise(settings)
    typer.echo(f"initialised data directory {settings.resolved_data_dir}")


@app.command()
def serve(
    host: str = typer.Option(None, help="default PHIGATE_HOST"),
    port: int = typer.Option(None, help="default PHIGATE_PORT"),
) -> None:
    """Serve the gateway (uvicorn)."""
    import logging

    import uvicorn

    from gateway import logs
    from gateway.app import create_app

    settings = support.load_settings()
    # Serving never creates an installation: one started in the wrong directory must say so,
    # not serve an empty gateway with a new keyring. `phigate init` creates one.
    support.require_installation(settings)
    logs.configure(settings.log_format)
    for warning in settings.warnings():
        logging.getLogger("phigate").warning("unsafe default: %s", warning)
    # Our own log set-up and access line (route templates, request ids), not uvicorn's.
    # No WebSocket routes: ws="none" spares each worker uvicorn's WebSocket stack.
    options: dict[str, Any] = {
        "host": host or settings.host,
        "port": port or settings.port,
        "proxy_headers": False,
        "server_header": False,
        "log_level": "info",
        "log_config": None,
        "access_log": False,
        "ws": "none",
    }
    if settings.workers > 1:
        # Each worker process builds its own app (its own pool and threads) from the environment.
        uvicorn.run("gateway.app:create_worker_app", factory=True, workers=settings.workers, **options)
    else:
        uvicorn.run(create_app(settings), **options)


@app.command()
def demo(
    as_json: bool = typer.Option(False, "--json", help="print the credentials as JSON"),
    reset: bool = typer.Option(
        False,
        "--reset",
        help="start the demo over: empty the database, the local objects and the credentials file (development only)",
    ),
    yes: bool = typer.Option(False, "--yes", help="with --reset: do not ask for confirmation"),
) -> None:
    """Seed the demo the database lacks (organisations, a BAA, one user per role), then print what can sign in."""
    from gateway import demo as demo_data
    from gateway.config import _redact_url

    settings = support.load_settings()
    if settings.env == "production":
        typer.echo("error: demo data is refused in production (PHIGATE_ENV=production)", err=True)
        raise typer.Exit(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        initialise(settings)
        components = support.components(settings)
        if reset:
            if not yes:
                typer.confirm(
                    f"Delete every organisation, user, transfer, object and audit event of "
                    f"{_redact_url(settings.effective_database_url)} and start the demo over?",
                    abort=True,
                )
            for line in demo_data.reset(components):
                typer.echo(f"reset: {line}", err=True)
            components = support.components(settings)
        try:
            creds = demo_data.seed(components, support.actor())
        except Exception as exc:  # noqa: BLE001
            support.fail(exc)
    if as_json:
        typer.echo(json.dumps(creds, indent=2))
    else:
        # The public URL (localhost by default): the address where passkeys work too.
        typer.echo(demo_data.describe(creds, settings.effective_public_url))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from gateway.migrate import upgrade

    settings = support.load_settings()
    support.require_installation(settings, schema=False)  # upgrades an installation; `phigate init` creates one
    upgrade(settings.effective_database_url)
    typer.echo("database schema is current")


@org_app.command("create")
def org_create(
    name: str,
    kind: str = typer.Option(..., help="practice, vendor or operator"),
    timezone: str = typer.Option("", help="IANA time zone of its sign-in hours (default: PHIGATE_TIMEZONE)"),
    hours: str = typer.Option("", help="sign-in hours HH-HH, local (default: PHIGATE_AUDIT_ALERT_ALLOWED_HOURS)"),
) -> None:
    from gateway.orgs.models import OrgKind
    from gateway.orgs.service import create_org

    try:
        org_kind = OrgKind(kind)
    except ValueError:
        typer.echo("error: --kind is practice, vendor or operator", err=True)
        raise typer.Exit(2) from None
    try:
        with support.components().db.transaction() as db:
            org = create_org(db, name, org_kind, support.actor(), timezone=timezone, signin_hours=hours)
            typer.echo(f"{org.id}  {org.name}  ({org.kind.value})")
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)


@org_app.command("list")
def org_list() -> None:
    from gateway.orgs.service import all_orgs

    with support.components().db.transaction() as db:
        for org in all_orgs(db):
            typer.echo(f"{org.id}  {org.kind.value:<9} {'active' if org.active else 'disabled':<9} {org.name}")


@user_app.command("create")
def user_create(
    username: str,
    org: str = typer.Option(..., help="organisation id or name"),
    role: str = typer.Option(...),
    name: str = typer.Option(...),
    email: str = typer.Option(...),
) -> None:
    """Create a user; prints the one-time password they must change at first sign-in."""
    from gateway.orgs.service import find_org
    from gateway.users.models import Role
    from gateway.users.service import create_user

    try:
        user_role = Role(role)
    except ValueError:
        typer.echo(f"error: --role is one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    try:
        with support.components().db.transaction() as db:
            user, initial = create_user(db, find_org(db, org), username, name, email, user_role, support.actor())
            typer.echo(f"created {user.username} ({user.id}), role {user.role.value}")
            typer.echo(f"one-time password: {initial}")
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)


@user_app.command("list")
def user_list(org: str = typer.Option(None, help="organisation id or name")) -> None:
    from gateway import paging
    from gateway.orgs.service import find_org
    from gateway.users.service import list_users

    try:
        with support.components().db.transaction() as db:
            org_id = find_org(db, org).id if org else None
            for u in paging.every(lambda cursor: list_users(db, org_id, limit=paging.MAX_LIMIT, cursor=cursor)):
                typer.echo(
                    f"{u.id}  {u.username:<20} {u.role.value:<18} {'active' if u.active else 'disabled':<9} "
                    f"mfa={'yes' if u.mfa_enrolled else 'no'}  {u.org.name}"
                )
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)


def _user_action(user: str, action) -> None:
    from gateway.users.service import find_user

    try:
        with support.components().db.transaction() as db:
            action(db, find_user(db, user))
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)


@user_app.command("disable")
def user_disable(user: str) -> None:
    """Disable a user; their sessions and API tokens end at once."""
    from gateway.users.service import disable_user

    _user_action(user, lambda db, u: disable_user(db, u, support.actor()))
    typer.echo(f"disabled {user}")


@user_app.command("enable")
def user_enable(user: str) -> None:
    from gateway.users.service import enable_user

    _user_action(user, lambda db, u: enable_user(db, u, support.actor()))
    typer.echo(f"enabled {user}")


@user_app.command("set-role")
def user_set_role(user: str, role: str) -> None:
    from gateway.users.models import Role
    from gateway.users.service import change_role

    try:
        new_role = Role(role)
    except ValueError:
        typer.echo(f"error: role is one of {', '.join(r.value for r in Role)}", err=True)
        raise typer.Exit(2) from None
    _user_action(user, lambda db, u: change_role(db, u, new_role, support.actor()))
    typer.echo(f"{user} is now {role}")


@user_app.command("reset-password")
def user_reset_password(user: str) -> None:
    """Issue a new one-time password and end the user's sessions."""
    from gateway.users.service import reset_password

    _user_action(user, lambda db, u: typer.echo(f"one-time password: {reset_password(db, u, support.actor())}"))


@user_app.command("reset-passkeys")
def user_reset_passkeys(user: str) -> None:
    """For a user who lost every passkey: remove them all and end their sessions (a high-severity event)."""
    from gateway.auth.service import reset_passkeys

    _user_action(
        user, lambda db, u: typer.echo(f"removed {reset_passkeys(db, u, support.actor())} passkey(s) of {user}")
    )


@passkey_app.command("list")
def passkey_policy_list() -> None:
    from gateway.auth.passkey_policy import list_policies

    with support.components().db.snapshot() as db:
        for p in list_policies(db):
            typer.echo(f"{p.id}  {p.scope:<4} {p.value}")


@passkey_app.command("require")
def passkey_policy_require(
    role: str = typer.Option(None, help="a role, e.g. practice_approver"),
    org: str = typer.Option(None, help="an organisation id or name"),
) -> None:
    """Require a passkey of every user of a role, or of an organisation."""
    from gateway.auth.passkey_policy import require
    from gateway.orgs.service import find_org

    components = support.components()  # no installation: say so first, whatever the options
    if (role is None) == (org is None):
        typer.echo("error: give exactly one of --role and --org", err=True)
        raise typer.Exit(2)
    try:
        with components.db.transaction() as db:
            policy = (
                require(db, "role", role, support.actor())
                if role is not None
                else require(db, "org", find_org(db, org).id, support.actor())
            )
            typer.echo(f"{policy.id}  {policy.scope} {policy.value}")
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)


@passkey_app.command("remove")
def passkey_policy_remove(policy_id: str) -> None:
    from gateway.auth.passkey_policy import drop

    try:
        with support.components().db.transaction() as db:
            drop(db, policy_id, support.actor())
    except Exception as exc:  # noqa: BLE001
        support.fail(exc)
    typer.echo(f"removed {policy_id}")


@app.command()
def fsck(
    repair: bool = typer.Option(False, "--repair", help="destroy objects nothing uses (never a stored one)"),
    grace_minutes: int = typer.Option(
        None,
        help="in-flight window: leave pending objects younger than this "
        "alone (default PHIGATE_RETENTION_IN_FLIGHT_MINUTES)",
    ),
) -> None:
    """Reconcile the sealed-object registry with storage, for every kind of object (see docs/operations.md)."""
    from gateway.sealed.fsck import fsck as run_fsck

    report = run_fsck(support.components(), support.actor(), repair=repair, grace_minutes=grace_minutes)
    typer.echo(json.dumps(report.as_dict(), indent=2))
    leftovers = report.stale_pending or report.unreferenced or report.unfinished_destruction
    if report.missing or report.failed or (not repair and leftovers):
        raise typer.Exit(1)


@keys_app.command("init")
def keys_init() -> None:
    """Create the local onshore keyring (when the key provider is local://) and the gateway's own key."""
    settings = support.load_settings()
    initialise(settings)
    typer.echo("key custody initialised")


@keys_app.command("list")
def keys_list() -> None:
    """Key ids, their current versions and how many objects each version still wraps (never key material)."""
    from gateway.custody import key_inventory

    for row in key_inventory(support.components()):
        wraps = " ".join(f"v{v}={n}" for v, n in sorted(row["objects_by_version"].items())) or "none"
        typer.echo(f"{row['key_id']:<48} v{row['version']:<4} objects wrapped by version: {wraps}")


@keys_app.command("rotate")
def keys_rotate(key_id: str = typer.Argument(..., help="a key id from `phigate keys list`")) -> None:
    """Add a new KEK version; new writes use it at once. Follow with `phigate keys rewrap`."""
    from crypto import CryptoError
    from gateway.custody import rotate

    try:
        version = rotate(support.components(), key_id, support.actor())
    except CryptoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{key_id} is now at version {version}")


@keys_app.command("rewrap")
def keys_rewrap() -> None:
    """Re-wrap every data key and sealed value under its key's newest version (object data untouched)."""
    from gateway.custody import rewrap_all

    report = rewrap_all(support.components(), support.actor())
    typer.echo(
        json.dumps(
            {
                "rewrapped": report.rewrapped,
                "already_current": report.already_current,
                "skipped_destroyed": report.skipped_destroyed,
                "by_key": report.by_key,
                "objects_by_kind": report.objects_by_kind,
                "objects_pending": report.objects_pending,
            }
        )
    )


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, secrets redacted."""
    settings = Settings()
    for key, value in settings.redacted().items():
        typer.echo(f"PHIGATE_{key.upper()}={value}")
    problems = settings.production_problems()
    if not settings.resolved_data_dir.is_dir():
        typer.echo(f"# no data directory at {settings.resolved_data_dir} (PHIGATE_DATA_DIR)", err=True)
    for warning in settings.warnings():
        typer.echo(f"# unsafe default: {warning}", err=True)
    for problem in problems:
        typer.echo(f"# refused in production: {problem}", err=True)


def main() -> None:
    # Everything the gateway writes (database file, keyring, objects) is for its own user only.
    os.umask(0o077)
    from sqlalchemy.exc import OperationalError

    from crypto import ProviderUnavailable
    from storage import StorageError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except (ProviderUnavailable, StorageError, OperationalError) as exc:
        # A dependency that does not answer is the operator's to fix, not a bug: one line, no trace.
        what = (
            "the key provider"
            if isinstance(exc, ProviderUnavailable)
            else "the database"
            if isinstance(exc, OperationalError)
            else "storage"
        )
        print(f"error: {what} is unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
