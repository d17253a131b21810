"""Users API (administrators)."""

from fastapi import APIRouter, Query, Response

from gateway.auth.service import reset_passkeys
from gateway.deps import AdminPrincipal, DbSession
from gateway.orgs.service import get_org
from gateway.users import service
from gateway.users.schemas import RoleChange, UserCreate, UserCreated, UserOut
from gateway.web import PageQuery

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut])
def list_users(
    db: DbSession, principal: AdminPrincipal, paged: PageQuery, org_id: str | None = Query(default=None, max_length=64)
):
    """Users by username, paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(service.list_users(db, org_id, limit=paged.limit, cursor=paged.cursor))


@router.post("", response_model=UserCreated, status_code=201)
def create_user(body: UserCreate, db: DbSession, principal: AdminPrincipal):
    org = get_org(db, body.org_id)
    user, initial = service.create_user(db, org, body.username, body.full_name, body.email, body.role, principal.actor)
    db.commit()
    return UserCreated(**UserOut.model_validate(user).model_dump(), one_time_password=initial)


@router.post("/{user_id}/disable", response_model=UserOut)
def disable_user(user_id: str, db: DbSession, principal: AdminPrincipal):
    user = service.get_user(db, user_id)
    service.disable_user(db, user, principal.actor)
    db.commit()
    return user


@router.post("/{user_id}/enable", response_model=UserOut)
def enable_user(user_id: str, db: DbSession, principal: AdminPrincipal):
    user = service.get_user(db, user_id)
    service.enable_user(db, user, principal.actor)
    db.commit()
    return user


@router.post("/{user_id}/role", response_model=UserOut)
def change_role(user_id: str, body: RoleChange, db: DbSession, principal: AdminPrincipal):
    user = service.get_user(db, user_id)
    service.change_role(db, user, body.role, principal.actor)
    db.commit()
    return user


@router.post("/{user_id}/passkeys/reset", status_code=204)
def reset_user_passkeys(user_id: str, response: Response, db: DbSession, principal: AdminPrincipal):
    """Remove every passkey of a user who lost them (high-severity event); their sessions end. Under a passkey
    policy they register a new one after their next sign-in with password and TOTP."""
    user = service.get_user(db, user_id)
    reset_passkeys(db, user, principal.actor)
    db.commit()
    response.status_code = 204
    return response
