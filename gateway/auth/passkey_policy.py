"""Who must sign in with a passkey: rules an administrator sets per role or per organisation.

A user under a rule is led to register a passkey at their next sign-in; once they have
one, a TOTP code no longer signs them in nor confirms a sensitive action (recovery codes
still sign in, and each use is audited).
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.auth.models import PasskeyPolicy
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.orgs.models import Organisation
from gateway.paging import Page
from gateway.users.models import Role, User

SCOPES = ("role", "org")


def applies_to(db: Session, user: User) -> bool:
    """True when a rule for the user's role or organisation requires a passkey."""
    return (
        db.scalar(
            select(PasskeyPolicy.id)
            .where(
                or_(
                    (PasskeyPolicy.scope == "role") & (PasskeyPolicy.value == user.role.value),
                    (PasskeyPolicy.scope == "org") & (PasskeyPolicy.value == user.org_id),
                )
            )
            .limit(1)
        )
        is not None
    )


# Roles, then organisations, each by value.
ORDER = paging.Order("passkey-policies", (PasskeyPolicy.scope, PasskeyPolicy.value, PasskeyPolicy.id))


def policy_page(db: Session, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None) -> Page[PasskeyPolicy]:
    """One page of the passkey policies."""
    return ORDER.page(db, select(PasskeyPolicy), limit=limit, cursor=cursor)


def list_policies(db: Session) -> list[PasskeyPolicy]:
    """Every passkey policy (the CLI)."""
    return list(paging.every(lambda cursor: policy_page(db, limit=paging.MAX_LIMIT, cursor=cursor)))


def require(db: Session, scope: str, value: str, actor: Actor) -> PasskeyPolicy:
    """Require a passkey of every user holding a role (`scope="role"`) or belonging to an organisation."""
    value = value.strip()
    if scope == "role":
        if value not in Role.__members__:
            raise InvalidInput("Choose a role.", code="invalid_role")
    elif scope == "org":
        if db.get(Organisation, value) is None:
            raise NotFound("No such organisation.", code="org_not_found")
    else:
        raise InvalidInput("A passkey rule applies to a role or an organisation.", code="invalid_scope")
    if db.scalar(select(PasskeyPolicy.id).where(PasskeyPolicy.scope == scope, PasskeyPolicy.value == value)):
        raise Conflict("This rule exists already.", code="policy_exists")
    policy = PasskeyPolicy(scope=scope, value=value, created_at=clock.now(), created_by=actor.user_id)
    db.add(policy)
    db.flush()
    record_event(
        db,
        Action.ADMIN_PASSKEY_POLICY_SET,
        actor=actor,
        severity=Severity.warning,
        target_type="passkey_policy",
        target_id=policy.id,
        target_org_id=value if scope == "org" else None,
        details={"scope": scope, "value": value},
    )
    return policy


def find(db: Session, policy_id: str) -> PasskeyPolicy:
    policy = db.get(PasskeyPolicy, policy_id)
    if policy is None:
        raise NotFound("No such rule.", code="policy_not_found")
    return policy


def drop(db: Session, policy_id: str, actor: Actor) -> None:
    policy = find(db, policy_id)
    db.delete(policy)
    record_event(
        db,
        Action.ADMIN_PASSKEY_POLICY_REMOVED,
        actor=actor,
        severity=Severity.warning,
        target_type="passkey_policy",
        target_id=policy.id,
        target_org_id=policy.value if policy.scope == "org" else None,
        details={"scope": policy.scope, "value": policy.value},
    )
