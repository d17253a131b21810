"""User administration: create, disable, enable, change role."""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.auth import passwords
from gateway.auth.service import revoke_user_sessions, revoke_user_tokens
from gateway.errors import Conflict, InvalidInput, NotFound
from gateway.orgs.models import Organisation
from gateway.paging import Page
from gateway.users.models import ROLE_ORG_KINDS, Role, User

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")


def _check_role(role: Role, org: Organisation) -> None:
    if org.kind not in ROLE_ORG_KINDS[role]:
        allowed = " or ".join(sorted(k.value for k in ROLE_ORG_KINDS[role]))
        raise InvalidInput(f"The role {role.value} belongs to a {allowed} organisation.", code="role_org_mismatch")


def create_user(
    db: Session,
    org: Organisation,
    username: str,
    full_name: str,
    email: str,
    role: Role,
    actor: Actor,
    *,
    password: str | None = None,
) -> tuple[User, str]:
    """Create an account with a one-time password (returned once); TOTP enrolment follows at first login."""
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise InvalidInput(
            "A username is 3-64 lowercase letters, digits, dots, dashes or underscores.", code="invalid_username"
        )
    if not org.active:
        raise InvalidInput("The organisation is disabled.", code="org_disabled")
    _check_role(role, org)
    if db.scalar(select(User.id).where(User.username == username)):
        raise Conflict("This username is taken.", code="username_taken")
    initial = password or passwords.one_time_password()
    if password is not None:
        passwords.check_policy(password, username=username)
    user = User(
        org_id=org.id,
        username=username,
        full_name=" ".join(full_name.split()),
        email=email.strip(),
        role=role,
        active=True,
        password_hash=passwords.hash_password(initial),
        must_change_password=password is None,
        created_at=clock.now(),
        created_by=actor.user_id,
        failed_attempts=0,
    )
    db.add(user)
    db.flush()
    record_event(
        db,
        Action.ADMIN_USER_CREATED,
        actor=actor,
        target_type="user",
        target_id=user.id,
        target_org_id=org.id,
        details={"role": role.value},
    )
    return user, initial


# By username (unique); the id keeps the order total.
ORDER = paging.Order("users", (User.username, User.id))


def list_users(
    db: Session, org_id: str | None = None, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[User]:
    """One page of users (of one organisation, when given), by username."""
    query = select(User)
    if org_id:
        query = query.where(User.org_id == org_id)
    return ORDER.page(db, query, limit=limit, cursor=cursor)


def passkey_counts(db: Session) -> dict[str, int]:
    """User id -> number of passkeys, for the administrators' list."""
    from gateway.auth.models import Passkey

    return dict(db.execute(select(Passkey.user_id, func.count()).group_by(Passkey.user_id)).all())


def get_user(db: Session, user_id: str) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return user


def find_user(db: Session, id_or_username: str) -> User:
    user = db.get(User, id_or_username) or db.scalar(select(User).where(User.username == id_or_username.lower()))
    if user is None:
        raise NotFound("No such user.", code="user_not_found")
    return user


def disable_user(db: Session, user: User, actor: Actor, reason: str = "disabled_by_admin") -> None:
    """Disable at once: every live session and API token of the user dies in the same transaction."""
    if user.id == actor.user_id:
        raise InvalidInput("You cannot disable your own account.", code="cannot_disable_self")
    if not user.active:
        return
    user.active = False
    record_event(
        db,
        Action.ADMIN_USER_DISABLED,
        actor=actor,
        severity=Severity.warning,
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
        details={"reason": reason},
    )
    revoke_user_sessions(db, user.id, actor, "user_disabled")
    revoke_user_tokens(db, user.id, actor, "user_disabled")


def enable_user(db: Session, user: User, actor: Actor) -> None:
    if user.active:
        return
    user.active = True
    user.failed_attempts = 0
    user.locked_until = None
    record_event(
        db, Action.ADMIN_USER_ENABLED, actor=actor, target_type="user", target_id=user.id, target_org_id=user.org_id
    )


def change_role(db: Session, user: User, role: Role, actor: Actor) -> None:
    """Change a role; live sessions are revoked so the new privileges start from a fresh sign-in."""
    if user.id == actor.user_id:
        raise InvalidInput("You cannot change your own role.", code="cannot_change_own_role")
    _check_role(role, user.org)
    if user.role == role:
        return
    old = user.role
    user.role = role
    record_event(
        db,
        Action.ADMIN_USER_ROLE_CHANGED,
        actor=actor,
        severity=Severity.warning,
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
        details={"from": old.value, "to": role.value},
    )
    revoke_user_sessions(db, user.id, actor, "role_changed")


def reset_password(db: Session, user: User, actor: Actor) -> str:
    """Issue a new one-time password (returned once) and revoke the user's sessions."""
    initial = passwords.one_time_password()
    user.password_hash = passwords.hash_password(initial)
    user.must_change_password = True
    record_event(
        db,
        Action.ADMIN_USER_PASSWORD_RESET,
        actor=actor,
        severity=Severity.warning,
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
    )
    revoke_user_sessions(db, user.id, actor, "password_reset")
    revoke_user_tokens(db, user.id, actor, "password_reset")
    return initial


def active_biller_clause(org_ids: Collection[str]):
    """The active billers of these (vendor) organisations: the one rule for whom a sender or approver may name
    (an upload's recipients, an approval's narrowing, the send page and the partner list)."""
    return User.org_id.in_(org_ids) & (User.role == Role.biller) & User.active.is_(True)


def active_billers(db: Session, org_ids: Collection[str]) -> list[User]:
    """The active billers of these (vendor) organisations, by name: whom a sender or approver may name."""
    if not org_ids:
        return []
    return list(db.scalars(select(User).where(active_biller_clause(org_ids)).order_by(User.full_name, User.id)))


def due_for_review(db: Session, inactive_days: int, warn_days: int = 14, now: datetime | None = None) -> list[User]:
    """Active accounts unused (no sign-in since creation or their last one) for `inactive_days - warn_days`
    days: the access review disables them at `inactive_days`, so an administrator decides first."""
    since = (now or clock.now()) - timedelta(days=max(inactive_days - warn_days, 1))
    last = func.coalesce(User.last_login_at, User.created_at)
    return list(db.scalars(select(User).where(User.active.is_(True), last < since).order_by(last)))


def users_by_id(db: Session, ids: set[str]) -> dict[str, User]:
    return {u.id: u for u in db.scalars(select(User).where(User.id.in_(ids)))}
