"""JSON API for signing in, second factor, enrolment, passkeys, password and personal API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.audit.actions import Action
from gateway.audit.service import record_event
from gateway.auth import passkey_policy, passkeys, service, totp
from gateway.auth.cookies import clear_session_cookie, set_session_cookie
from gateway.auth.models import SessionStage, WebSession
from gateway.auth.schemas import (
    CodeIn,
    EnrolmentOut,
    LoginIn,
    MeOut,
    PasskeyOptionsIn,
    PasskeyOptionsOut,
    PasskeyOut,
    PasskeyPolicyIn,
    PasskeyPolicyOut,
    PasskeyRegisterIn,
    PasswordChangeIn,
    RecoveryCodesOut,
    StageOut,
    StepUpIn,
    TokenCreatedOut,
    TokenCreateIn,
    TokenOut,
)
from gateway.auth.service import Principal
from gateway.deps import (
    AdminPrincipal,
    AppComponents,
    CurrentPrincipal,
    DbSession,
    PartialPrincipal,
    PasswordChangePrincipal,
    RequestActor,
    check_origin,
)
from gateway.errors import Forbidden, InvalidInput
from gateway.web import PageQuery

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/login", response_model=StageOut)
def login(body: LoginIn, request: Request, response: Response, db: DbSession, c: AppComponents, actor: RequestActor):
    """First factor. Answers with the next stage: `mfa` (enter a code) or `enrol` (set up TOTP)."""
    check_origin(request)
    user = service.check_password(db, c.settings, body.username, body.password, actor)
    stage = SessionStage.mfa if user.mfa_enrolled else SessionStage.enrol
    raw = service.start_session(db, c.settings, user, stage, actor)
    db.commit()
    set_session_cookie(response, c.settings, raw)
    return StageOut(
        stage=stage.value,
        csrf_token=service.session_csrf_token(db, raw),
        must_change_password=user.must_change_password,
    )


def _stage_out(db, c, principal, stage: SessionStage, raw: str, response) -> StageOut:
    db.commit()
    set_session_cookie(response, c.settings, raw)
    return StageOut(
        stage=stage.value,
        csrf_token=service.session_csrf_token(db, raw),
        must_change_password=principal.user.must_change_password,
    )


def _finish(db, c, principal, method, response) -> StageOut:
    stage, raw = service.finish_sign_in(db, c.settings, principal, method)
    return _stage_out(db, c, principal, stage, raw, response)


@router.post("/mfa", response_model=StageOut)
def mfa(body: CodeIn, response: Response, db: DbSession, c: AppComponents, principal: PartialPrincipal):
    """Second factor: a `passkey_assertion`, a TOTP `code`, or one of the single-use recovery codes. Rotates the
    session id. Answers `stage: full`, or `stage: passkey` when a policy requires a passkey the user has not
    registered yet (then only passkey registration is open)."""
    if principal.session is None or principal.session.stage != SessionStage.mfa:
        raise Forbidden("No sign-in is waiting for a code.", code="wrong_stage")
    method = service.check_factor(
        db,
        c.settings,
        c.keys,
        principal.user,
        principal.session,
        body.proof(),
        principal.actor,
        purpose="login",
        action=Action.AUTH_MFA_FAILED,
    )
    return _finish(db, c, principal, method, response)


# -- passkeys ---------------------------------------------------------------------


def _stage(principal: Principal, *stages: SessionStage) -> WebSession:
    """The caller's browser session, in one of `stages`."""
    if principal.session is None:
        raise InvalidInput("Passkeys are used in a signed-in browser session.", code="passkey_needs_session")
    if principal.session.stage not in stages:
        raise Forbidden("This passkey ceremony does not belong to this stage of signing in.", code="wrong_stage")
    return principal.session


@router.post("/passkeys/assertion-options", response_model=PasskeyOptionsOut)
def passkey_assertion_options(
    body: PasskeyOptionsIn, db: DbSession, c: AppComponents, principal: PartialPrincipal
) -> dict:
    """Options for navigator.credentials.get(): `login` while signing in, `stepup` before a sensitive action.
    The challenge is single-use, bound to this session, and expires."""
    session = _stage(principal, SessionStage.mfa if body.purpose == "login" else SessionStage.full)
    options = passkeys.assertion_options(db, c.settings, principal.user, session, body.purpose)
    db.commit()
    return options


@router.post("/passkeys/registration-options", response_model=PasskeyOptionsOut)
def passkey_registration_options(db: DbSession, c: AppComponents, principal: PartialPrincipal) -> dict:
    """Options for navigator.credentials.create(): from a full session, or one a passkey policy holds."""
    session = _stage(principal, SessionStage.full, SessionStage.passkey)
    options = passkeys.registration_options(db, c.settings, principal.user, session)
    db.commit()
    return options


@router.post("/passkeys", response_model=StageOut | PasskeyOut, status_code=201)
def register_passkey(
    body: PasskeyRegisterIn, response: Response, db: DbSession, c: AppComponents, principal: PartialPrincipal
):
    """Register a passkey. Held by a policy (stage `passkey`): the credential alone, and the answer is the new full
    session's stage. Signed in: also the current `password` and a fresh `code` or `passkey_assertion`."""
    session = _stage(principal, SessionStage.full, SessionStage.passkey)
    if session.stage == SessionStage.full and principal.user.must_change_password:
        raise Forbidden("Choose a new password before continuing.", code="password_change_required")
    held = session.stage == SessionStage.passkey
    passkey = service.register_passkey(
        db, c.settings, c.keys, principal, body.credential, body.name, password=body.password, proof=body.proof()
    )
    if held:
        raw = service.start_session(
            db, c.settings, principal.user, SessionStage.full, principal.actor, replaces=principal.session
        )
        return _stage_out(db, c, principal, SessionStage.full, raw, response)
    db.commit()
    return PasskeyOut.model_validate(passkey)


@router.get("/passkeys", response_model=list[PasskeyOut])
def list_passkeys(db: DbSession, principal: CurrentPrincipal, paged: PageQuery):
    """The caller's passkeys, oldest first, paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(passkeys.passkey_page(db, principal.user, limit=paged.limit, cursor=paged.cursor))


@router.post("/passkeys/{passkey_id}/remove", status_code=204)
def remove_passkey(
    passkey_id: str, body: StepUpIn, response: Response, db: DbSession, c: AppComponents, principal: CurrentPrincipal
):
    """Remove a passkey after a fresh factor; refused (409 `last_factor`) for the last one a policy requires."""
    service.remove_passkey(db, c.settings, c.keys, principal, passkey_id, body.proof())
    db.commit()
    response.status_code = 204
    return response


@router.get("/passkey-policies", response_model=list[PasskeyPolicyOut])
def list_passkey_policies(db: DbSession, principal: AdminPrincipal, paged: PageQuery):
    """Passkey policies (roles, then organisations), paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(passkey_policy.policy_page(db, limit=paged.limit, cursor=paged.cursor))


@router.post("/passkey-policies", response_model=PasskeyPolicyOut, status_code=201)
def add_passkey_policy(body: PasskeyPolicyIn, db: DbSession, principal: AdminPrincipal):
    """Require a passkey of a role (`{"scope": "role", "value": "practice_approver"}`) or of an organisation."""
    policy = passkey_policy.require(db, body.scope, body.value, principal.actor)
    db.commit()
    return policy


@router.delete("/passkey-policies/{policy_id}", status_code=204)
def drop_passkey_policy(policy_id: str, response: Response, db: DbSession, principal: AdminPrincipal):
    passkey_policy.drop(db, policy_id, principal.actor)
    db.commit()
    response.status_code = 204
    return response


@router.post("/mfa/enrol", response_model=EnrolmentOut)
def enrol_start(db: DbSession, c: AppComponents, principal: PartialPrincipal):
    """Start TOTP enrolment: a new secret, its otpauth URI and a QR code rendered here."""
    if principal.session is None or principal.session.stage != SessionStage.enrol:
        raise Forbidden("Enrolment is only possible right after the first sign-in.", code="wrong_stage")
    secret = service.begin_enrolment(db, c.keys, principal.user)
    db.commit()
    uri = totp.provisioning_uri(secret, principal.user.username)
    return EnrolmentOut(secret=secret, otpauth_uri=uri, qr_svg_data_uri=totp.qr_svg_data_uri(uri))


@router.post("/mfa/enrol/confirm", response_model=RecoveryCodesOut)
def enrol_confirm(body: CodeIn, response: Response, db: DbSession, c: AppComponents, principal: PartialPrincipal):
    """Activate TOTP with one valid code; returns the ten recovery codes once and completes sign-in."""
    if principal.session is None or principal.session.stage != SessionStage.enrol:
        raise Forbidden("Enrolment is only possible right after the first sign-in.", code="wrong_stage")
    codes = service.confirm_enrolment(db, c.settings, c.keys, principal.user, body.code or "", principal.actor)
    _finish(db, c, principal, "totp", response)
    return RecoveryCodesOut(recovery_codes=codes)


@router.post("/logout", status_code=204)
def logout(response: Response, db: DbSession, c: AppComponents, principal: PartialPrincipal):
    if principal.session is not None:
        service.end_session(db, principal.session, principal.actor)
        db.commit()
    clear_session_cookie(response, c.settings)
    response.status_code = 204
    return response


@router.post("/password", status_code=204)
def password(
    body: PasswordChangeIn, response: Response, db: DbSession, c: AppComponents, principal: PasswordChangePrincipal
):
    """Change the password (required after a one-time password); every other session is revoked."""
    service.change_password(
        db, c.settings, principal.user, body.current_password, body.new_password, principal.actor, principal.session
    )
    if principal.session is not None:
        raw = service.start_session(
            db, c.settings, principal.user, SessionStage.full, principal.actor, replaces=principal.session
        )
        set_session_cookie(response, c.settings, raw)
    db.commit()
    response.status_code = 204
    return response


@router.get("/me", response_model=MeOut)
def me(db: DbSession, principal: PasswordChangePrincipal):
    u = principal.user
    return MeOut(
        id=u.id,
        username=u.username,
        full_name=u.full_name,
        role=u.role.value,
        org_id=u.org_id,
        org_name=u.org.name,
        org_kind=u.org.kind.value,
        mfa_enrolled=u.mfa_enrolled,
        passkeys=passkeys.count(db, u),
        passkey_required=passkey_policy.applies_to(db, u),
        must_change_password=u.must_change_password,
        csrf_token=principal.session.csrf_token if principal.session else None,
    )


@router.post("/recovery-codes", response_model=RecoveryCodesOut)
def recovery_codes(body: CodeIn, db: DbSession, c: AppComponents, principal: CurrentPrincipal):
    """Replace the recovery codes after a fresh factor (TOTP code or passkey)."""
    service.step_up(db, c.settings, c.keys, principal, body.proof(), Action.AUTH_REAUTH_FAILED)
    codes = service.regenerate_recovery_codes(db, principal.user)
    record_event(
        db,
        Action.AUTH_RECOVERY_CODES_REGENERATED,
        actor=principal.actor,
        target_type="user",
        target_id=principal.user.id,
        target_org_id=principal.user.org_id,
    )
    db.commit()
    return RecoveryCodesOut(recovery_codes=codes)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(db: DbSession, principal: CurrentPrincipal, paged: PageQuery):
    """The caller's tokens (revoked and expired too), newest first, paged (`X-Next-Cursor`, `Link`)."""
    return paged.items(service.list_api_tokens(db, principal.user, limit=paged.limit, cursor=paged.cursor))


@router.post("/tokens", response_model=TokenCreatedOut, status_code=201)
def create_token(body: TokenCreateIn, db: DbSession, c: AppComponents, principal: CurrentPrincipal):
    """Create a personal API token after a fresh factor (TOTP code or passkey); the token is shown once."""
    if principal.token is not None:
        raise Forbidden("API tokens cannot create API tokens.", code="token_cannot_create_token")
    name = " ".join(body.name.split())
    if not name:
        raise InvalidInput("Name the token.", code="invalid_name")
    service.step_up(db, c.settings, c.keys, principal, body.proof(), Action.AUTH_REAUTH_FAILED)
    token, raw = service.create_api_token(db, c.settings, principal.user, name, body.days, principal.actor)
    db.commit()
    return TokenCreatedOut(**TokenOut.model_validate(token).model_dump(), token=raw)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, response: Response, db: DbSession, principal: CurrentPrincipal):
    service.revoke_api_token(db, principal.user, token_id, principal.actor)
    db.commit()
    response.status_code = 204
    return response
