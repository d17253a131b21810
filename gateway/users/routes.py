"""Users API (administrators)."""

from fastapi import APIRouter, Query

from gateway.deps import AdminPrincipal, DbSession
from gateway.orgs.service import get_org
from gateway.users import service
from gateway.users.schemas import RoleChange, UserCreate, UserCreated, UserOut

router = APIRouter(prefix="/users", tags=["users"])


@router.get("", response_model=list[UserOut])
def list_users(db: DbSession, principal: AdminPrincipal, org_id: str | None = Query(default=None, max_length=64)):
    return service.list_users(db, org_id)


@router.post("", response_model=UserCreated, status_code=201)
def create_user(body: UserCreate, db: DbSession, principal: AdminPrincipal):
    org = get_org(db, body.org_id)
    user, initial = service.create_user(db, org, body.username, body.full_name, body.email, body.role,
                                        principal.actor)
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
