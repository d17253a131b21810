"""Demo data for the embedded quickstart: a practice and a vendor under a BAA, the operator, one user per role.

Passwords are random per installation and TOTP is pre-enrolled, so that a
person trying PHI Gate can sign in as each role at once.  The credentials the
demo issued are kept in `DATA_DIR/demo-credentials.json` (mode 0600), but the
database decides what is shown: each run creates the demo users the database
lacks (a new or emptied database is seeded afresh), and checks every other one
against the database (account and organisation active, not locked, the stored
password and TOTP secret still theirs).  Only accounts that pass are printed
with their credentials; the others are printed with the reason they cannot
sign in.  `reset()` starts the demo over.  Production refuses all of it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from crypto import CryptoError
from gateway import clock
from gateway.audit.service import Actor
from gateway.auth import passwords, totp
from gateway.baas.models import Baa
from gateway.baas.service import record_baa
from gateway.components import Components
from gateway.config import Settings
from gateway.keys import open_totp_secret, seal_totp_secret
from gateway.orgs.models import Organisation, OrgKind
from gateway.orgs.service import create_org
from gateway.users.models import Role, User
from gateway.users.service import create_user

ORGS = {
    "practice": ("Demo Family Practice", OrgKind.practice),
    "vendor": ("Demo Billing Services", OrgKind.vendor),
    "operator": ("PHI Gate Operator", OrgKind.operator),
}
USERS = [
    ("demo-staff", "Dana Staff", Role.practice_staff, "practice"),
    ("demo-approver", "Avery Approver", Role.practice_approver, "practice"),
    ("demo-biller", "Bo Biller", Role.biller, "vendor"),
    ("demo-auditor", "Ari Auditor", Role.auditor, "practice"),
    ("demo-admin", "Ada Admin", Role.admin, "operator"),
]
READY = "ready"


def credentials_path(settings: Settings) -> Path:
    return settings.resolved_data_dir / "demo-credentials.json"


@dataclass
class _Existing:
    """What the database holds about a demo user, read in one snapshot."""

    id: str
    active: bool
    org_active: bool
    locked_until: datetime | None
    password_hash: str
    totp_sealed: bytes | None


def _read_credentials(path: Path) -> list[dict]:
    try:
        users = json.loads(path.read_text())["users"]
        return [u for u in users if isinstance(u, dict) and {"username", "password", "totp_secret"} <= set(u)]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def _stored_for(stored: list[dict], username: str, user_id: str) -> dict | None:
    """The credentials issued for this very account (by its id: a database seeded elsewhere has other ids)."""
    for entry in reversed(stored):
        if entry.get("user_id") == user_id or (entry.get("user_id") is None and entry["username"] == username):
            return entry
    return None


def _write_credentials(path: Path, entries: list[dict]) -> None:
    """Replace the file at once (write a sibling, then rename), readable by this user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"users": entries}, fh, indent=2)
    os.replace(tmp, path)


def _status(components: Components, stored: dict | None, row: _Existing) -> str:
    """READY when the stored credentials sign this account in today, else why not."""
    if not row.active or not row.org_active:
        return "disabled: it cannot sign in"
    if stored is None:
        return f"credentials unknown (not in {credentials_path(components.settings).name})"
    if row.locked_until is not None and row.locked_until > clock.now():
        return f"locked until {row.locked_until:%H:%M} UTC (failed sign-ins)"
    if not passwords.verify_password(row.password_hash, stored["password"]):
        return "password changed since the demo issued it"
    try:
        secret = open_totp_secret(components.keys, row.id, row.totp_sealed) if row.totp_sealed else None
    except CryptoError:  # sealed under another keyring: the stored secret cannot be its own
        secret = None
    if secret != stored["totp_secret"]:
        return "TOTP enrolled again since the demo issued it"
    return READY


def seed(components: Components, actor: Actor) -> dict:
    """Create the demo users the database lacks, check the others; returns what can be shown."""
    path = credentials_path(components.settings)
    stored = _read_credentials(path)
    issued: dict[str, dict] = {}
    existing: dict[str, _Existing] = {}
    organisations: dict[str, dict] = {}
    with components.db.transaction() as db:
        orgs, created = {}, False
        for key, (name, kind) in ORGS.items():
            org = db.scalar(select(Organisation).where(Organisation.name == name))
            if org is None:
                org, created = create_org(db, name, kind, actor), True
            orgs[key] = org
            organisations[key] = {"id": org.id, "name": org.name, "kind": kind.value}
        # Only a demo seeded now gets its BAA: one that ended (an offboarding) stays ended.
        if (
            created
            or db.scalar(
                select(Baa.id).where(Baa.practice_id == orgs["practice"].id, Baa.vendor_id == orgs["vendor"].id)
            )
            is None
        ):
            record_baa(
                db,
                orgs["practice"],
                orgs["vendor"],
                "DEMO-BAA-001",
                clock.now() - timedelta(days=1),
                clock.now() + timedelta(days=365),
                actor,
            )
        for username, full_name, role, org_key in USERS:
            user = db.scalar(select(User).where(User.username == username))
            if user is not None:
                existing[username] = _Existing(
                    user.id,
                    user.active,
                    user.org.active,
                    user.locked_until,
                    user.password_hash,
                    user.totp_secret_sealed,
                )
                continue
            password = "demo-" + secrets.token_urlsafe(12)
            user, _ = create_user(
                db, orgs[org_key], username, full_name, f"{username}@example.invalid", role, actor, password=password
            )
            secret = totp.new_secret()
            user.totp_secret_sealed = seal_totp_secret(components.keys, user.id, secret)
            user.totp_enrolled_at = clock.now()
            issued[username] = {
                "username": username,
                "user_id": user.id,
                "password": password,
                "totp_secret": secret,
                "role": role.value,
                "organisation": orgs[org_key].name,
            }
    if issued:
        # Kept beside the older entries: those of another database (by account id) still hold there.
        _write_credentials(path, stored + [issued[name] for name, *_ in USERS if name in issued])
    users = []
    for username, _, role, org_key in USERS:
        if username in issued:
            users.append({**issued[username], "status": READY})
            continue
        row = existing[username]
        mine = _stored_for(stored, username, row.id)
        # Checked outside the transaction: password hashing is slow and takes no lock.
        status = _status(components, mine, row)
        entry = {
            "username": username,
            "user_id": row.id,
            "role": role.value,
            "organisation": organisations[org_key]["name"],
            "status": status,
        }
        if status == READY and mine is not None:  # READY only with stored credentials
            entry.update(password=mine["password"], totp_secret=mine["totp_secret"])
        users.append(entry)
    return {"organisations": organisations, "users": users}


def reset(components: Components) -> list[str]:
    """Start the demo over: empty the database (every migration undone and redone), the local object
    directory and the credentials file. The keyring is kept. Returns what was done, for the operator."""
    from alembic import command

    from gateway.migrate import alembic_config, upgrade

    settings = components.settings
    done = []
    components.db.dispose()
    url = settings.effective_database_url
    command.downgrade(alembic_config(url), "base")
    upgrade(url)
    done.append("database emptied")
    store = settings.effective_storage_url
    if store.startswith("file://"):
        objects = Path(store.removeprefix("file://"))
        if objects.is_dir():
            for child in objects.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        done.append("local objects removed")
    else:
        done.append("objects in the store are left: `phigate fsck --repair` removes what nothing references")
    credentials_path(settings).unlink(missing_ok=True)
    return done


def describe(creds: dict, url: str) -> str:
    lines = [
        f"PHI Gate demo at {url}  (sign in at {url}/login)",
        "",
        f"{'username':<15} {'role':<18} {'password':<24} {'code now':<9} TOTP secret (add to an authenticator app)",
    ]
    now = clock.now()
    blocked = []
    for u in creds["users"]:
        if u["status"] != READY:
            blocked.append(u)
            continue
        lines.append(
            f"{u['username']:<15} {u['role']:<18} {u['password']:<24} {totp.code_at(u['totp_secret'], now):<9} "
            f"{u['totp_secret']}"
        )
    if blocked:
        lines += ["", "Not usable (no credentials shown):"]
        lines += [f"{u['username']:<15} {u['role']:<18} {u['status']}" for u in blocked]
        lines.append("`phigate demo --reset` starts the demo over with fresh accounts.")
    lines += [
        "",
        "Codes change every 30 seconds: run `phigate demo` again for fresh ones.",
        "These are demo accounts with synthetic data only: never put real PHI in a demo install.",
    ]
    return "\n".join(lines)
