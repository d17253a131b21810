"""Administrator pages for users: create, disable, enable, change role, reset password."""

from fastapi import APIRouter, Form, Request

from gateway.auth import passkey_policy
from gateway.auth.service import reset_passkeys
from gateway.deps import AdminPrincipal, DbSession
from gateway.errors import InvalidInput
from gateway.orgs.service import all_orgs, get_org
from gateway.users import service
from gateway.users.models import Role
from gateway.web import Confirmed, Cursor, confirm_page, page_links, redirect, render, submit

router = APIRouter(prefix="/admin/users", include_in_schema=False)

# The same words in the <dialog> (admin_users.html) and on the page without script.
DISABLE_QUESTION = "Disable {user}? Their sessions and API tokens end at once and they can no longer sign in."
RESET_QUESTION = (
    "Reset the password of {user}? Their sessions and API tokens end at once, and they must sign in with a "
    "one-time password you give them."
)
RESET_PASSKEYS_QUESTION = (
    "Remove every passkey of {user}? They sign in with their password and authenticator code, and register a new "
    "passkey if a rule requires one."
)
DROP_POLICY_QUESTION = "Remove the passkey requirement for {scope}? Its users may again sign in without a passkey."


def _page(request, db, principal, status_code=200, cursor: str | None = None, kept=None, **extra):
    """The users page; after a refused form, with the values that form was sent with (`kept`)."""
    orgs = all_orgs(db)
    page = service.list_users(db, cursor=cursor)
    return render(
        request,
        "admin_users.html",
        status_code=status_code,
        principal=principal,
        users=page.items,
        links=page_links(request, page.next_cursor),
        orgs=orgs,
        roles=list(Role),
        passkey_counts=service.passkey_counts(db),
        policies=passkey_policy.list_policies(db),
        org_names={o.id: o.name for o in orgs},
        kept=kept or {},
        disable_question=DISABLE_QUESTION,
        reset_question=RESET_QUESTION,
        reset_passkeys_question=RESET_PASSKEYS_QUESTION,
        drop_policy_question=DROP_POLICY_QUESTION,
        policy_scope=_policy_scope,
        **extra,
    )


@router.get("")
def users(request: Request, db: DbSession, principal: AdminPrincipal, cursor: Cursor = None):
    return _page(request, db, principal, cursor=cursor)


@router.post("")
def create_user(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    org_id: str = Form(max_length=64),
    username: str = Form(max_length=64),
    full_name: str = Form(max_length=200),
    email: str = Form(max_length=254),
    role: str = Form(max_length=32),
):
    def run():
        if role not in Role.__members__:
            raise InvalidInput("Choose a role.", code="invalid_role")
        if "@" not in email or not full_name.strip():
            raise InvalidInput("Give a full name and an e-mail address.", code="invalid_input")
        return service.create_user(db, get_org(db, org_id), username, full_name, email, Role(role), principal.actor)

    typed = {"org_id": org_id, "username": username, "full_name": full_name, "email": email, "role": role}
    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, kept={"create": typed}, **error),
        done=lambda made: _page(request, db, principal, created=made[0], one_time_password=made[1]),
    )


def _act(request, db, principal, user_id: str, action, kept: dict | None = None):
    return submit(
        db,
        lambda: action(service.get_user(db, user_id)),
        form=lambda **error: _page(request, db, principal, kept=kept or {}, **error),
        done=lambda _: redirect("/admin/users"),
    )


def _confirm(request, db, principal, user_id: str, question: str, button: str):
    user = service.get_user(db, user_id)
    return confirm_page(
        request,
        principal,
        question=question.format(user=user.username),
        fields={},
        cancel="/admin/users",
        button=button,
    )


@router.post("/{user_id}/disable")
def disable(request: Request, user_id: str, db: DbSession, principal: AdminPrincipal, confirmed: str = Confirmed):
    if confirmed != "yes":
        return _confirm(request, db, principal, user_id, DISABLE_QUESTION, "Disable")
    return _act(request, db, principal, user_id, lambda u: service.disable_user(db, u, principal.actor))


@router.post("/{user_id}/enable")
def enable(request: Request, user_id: str, db: DbSession, principal: AdminPrincipal):
    return _act(request, db, principal, user_id, lambda u: service.enable_user(db, u, principal.actor))


@router.post("/{user_id}/role")
def role(request: Request, user_id: str, db: DbSession, principal: AdminPrincipal, role: str = Form(max_length=32)):
    def change(u):
        if role not in Role.__members__:
            raise InvalidInput("Choose a role.", code="invalid_role")
        service.change_role(db, u, Role(role), principal.actor)

    return _act(request, db, principal, user_id, change, kept={"role": {user_id: role}})


@router.post("/{user_id}/reset-password")
def reset_password(
    request: Request, user_id: str, db: DbSession, principal: AdminPrincipal, confirmed: str = Confirmed
):
    if confirmed != "yes":
        return _confirm(request, db, principal, user_id, RESET_QUESTION, "Reset password")

    def run():
        user = service.get_user(db, user_id)
        return user, service.reset_password(db, user, principal.actor)

    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, **error),
        done=lambda reset: _page(request, db, principal, created=reset[0], one_time_password=reset[1], reset=True),
    )


@router.post("/{user_id}/passkeys/reset")
def reset_user_passkeys(
    request: Request, user_id: str, db: DbSession, principal: AdminPrincipal, confirmed: str = Confirmed
):
    """For a user who lost every passkey: remove them all; the user registers a new one at the next sign-in."""
    if confirmed != "yes":
        return _confirm(request, db, principal, user_id, RESET_PASSKEYS_QUESTION, "Remove passkeys")
    return _act(request, db, principal, user_id, lambda u: reset_passkeys(db, u, principal.actor))


@router.post("/passkey-policies")
def add_passkey_policy(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    scope: str = Form(max_length=8),
    role: str = Form(default="", max_length=32),
    org_id: str = Form(default="", max_length=64),
):
    return submit(
        db,
        lambda: passkey_policy.require(db, scope, role if scope == "role" else org_id, principal.actor),
        form=lambda **error: _page(request, db, principal, kept={"policy": {"role": role, "org_id": org_id}}, **error),
        done=lambda _: redirect("/admin/users"),
    )


def _policy_scope(policy, org_names: dict[str, str]) -> str:
    """What a passkey rule applies to, in words (the users page and its confirmation)."""
    if policy.scope == "role":
        return f"role {policy.value}"
    return f"organisation {org_names.get(policy.value, policy.value)}"


@router.post("/passkey-policies/{policy_id}/remove")
def drop_passkey_policy(
    request: Request, policy_id: str, db: DbSession, principal: AdminPrincipal, confirmed: str = Confirmed
):
    if confirmed != "yes":
        policy = passkey_policy.find(db, policy_id)
        scope = _policy_scope(policy, {o.id: o.name for o in all_orgs(db)})
        return confirm_page(
            request,
            principal,
            question=DROP_POLICY_QUESTION.format(scope=scope),
            fields={},
            cancel="/admin/users",
            button="Remove requirement",
        )
    return submit(
        db,
        lambda: passkey_policy.drop(db, policy_id, principal.actor),
        form=lambda **error: _page(request, db, principal, **error),
        done=lambda _: redirect("/admin/users"),
    )
