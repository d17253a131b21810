"""Demo data for the embedded quickstart: a practice and a vendor under a BAA, the operator, one user per role.

Passwords are random per installation and TOTP is pre-enrolled, so that a
person trying PHI Gate can sign in as each role at once.  The credentials are
kept in `DATA_DIR/demo-credentials.json` (mode 0600).  Production refuses it.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from datetime import timedelta

from sqlalchemy import select

from gateway import clock
from gateway.audit.service import Actor
from gateway.auth import totp
from gateway.baas.service import active_baa, record_baa
from gateway.components import Components
from gateway.keys import seal_totp_secret
from gateway.orgs.models import Organisation, OrgKind
from gateway.orgs.service import create_org
from gateway.users.models import Role, User
from gateway.users.service import create_user

ORGS = {"practice": ("Demo Family Practice", OrgKind.practice),
        "vendor": ("Demo Billing Services", OrgKind.vendor),
        "operator": ("PHI Gate Operator", OrgKind.operator)}
USERS = [
    ("demo-staff", "Dana Staff", Role.practice_staff, "practice"),
    ("demo-approver", "Avery Approver", Role.practice_approver, "practice"),
    ("demo-biller", "Bo Biller", Role.biller, "vendor"),
    ("demo-auditor", "Ari Auditor", Role.auditor, "practice"),
    ("demo-admin", "Ada Admin", Role.admin, "operator"),
]


def credentials_path(components: Components) -> Path:
    return components.settings.resolved_data_dir / "demo-credentials.json"


def seed(components: Components, actor: Actor) -> dict:
    """Create the demo once; afterwards return what was stored."""
    path = credentials_path(components)
    if path.exists():
        return json.loads(path.read_text())
    out = {"organisations": {}, "users": []}
    with components.db.transaction() as db:
        orgs = {}
        for key, (name, kind) in ORGS.items():
            org = db.scalar(select(Organisation).where(Organisation.name == name)) or create_org(db, name, kind, actor)
            orgs[key] = org
            out["organisations"][key] = {"id": org.id, "name": org.name, "kind": kind.value}
        if active_baa(db, orgs["practice"].id, orgs["vendor"].id) is None:
            baa = record_baa(db, orgs["practice"], orgs["vendor"], "DEMO-BAA-001", clock.now() - timedelta(days=1),
                             clock.now() + timedelta(days=365), actor)
            out["baa"] = {"id": baa.id, "reference": baa.reference}
        for username, full_name, role, org_key in USERS:
            if db.scalar(select(User.id).where(User.username == username)):
                raise RuntimeError(f"user {username} exists but its demo credentials are lost; use a fresh data dir")
            password = "demo-" + secrets.token_urlsafe(12)
            user, _ = create_user(db, orgs[org_key], username, full_name, f"{username}@example.invalid", role, actor,
                                  password=password)
            secret = totp.new_secret()
            user.totp_secret_sealed = seal_totp_secret(components.keys, user.id, secret)
            user.totp_enrolled_at = clock.now()
            out["users"].append({"username": username, "password": password, "totp_secret": secret,
                                 "role": role.value, "organisation": orgs[org_key].name})
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(out, fh, indent=2)
    return out


def describe(creds: dict, url: str) -> str:
    lines = [f"PHI Gate demo at {url}  (sign in at {url}/login)", "",
             f"{'username':<15} {'role':<18} {'password':<24} {'code now':<9} TOTP secret (add to an authenticator app)"]
    now = clock.now()
    for u in creds["users"]:
        lines.append(f"{u['username']:<15} {u['role']:<18} {u['password']:<24} {totp.code_at(u['totp_secret'], now):<9} "
                     f"{u['totp_secret']}")
    lines += ["", "Codes change every 30 seconds: run `phigate demo` again for fresh ones.",
              "These are demo accounts with synthetic data only: never put real PHI in a demo install."]
    return "\n".join(lines)
