"""JSON API for signing in, second factor, enrolment, password and personal API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Response

from gateway.audit.service import record_event
from gateway.auth import service, totp
from gateway.auth.cookies import clear_session_cookie, set_session_cookie
from gateway.auth.models import SessionStage
from gateway.auth.schemas import (CodeIn, EnrolmentOut, LoginIn, MeOut, PasswordChangeIn, RecoveryCodesOut,
                                  StageOut, TokenCreatedOut, TokenCreateIn, TokenOut)
from gateway.deps import (AppComponents, CurrentPrincipal, DbSession, PartialPrincipal, PasswordChangePrincipal,
                          RequestActor, check_origin)
from gateway.errors import Forbidden, InvalidInput
from fastapi import Request

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
    session = db.get(service.WebSession, service.digest(raw))
    return StageOut(stage=stage.value, csrf_token=session.csrf_token)


def _finish(db, c, principal, method, response) -> StageOut:
    service.complete_login(db, principal.user, principal.actor, method)
    raw = service.start_session(db, c.settings, principal.user, SessionStage.full, principal.actor,
                                replaces=principal.session)
    db.commit()
    set_session_cookie(response, c.settings, raw)
    session = db.get(service.WebSession, service.digest(raw))
    return StageOut(stage="full", csrf_token=session.csrf_token,
                    must_change_password=principal.user.must_change_password)


@router.post("/mfa", response_model=StageOut)
def mfa(body: CodeIn, response: Response, db: DbSession, c: AppComponents, principal: PartialPrincipal):
    """Second factor: a TOTP code, or one of the single-use recovery codes. Rotates the session id."""
    if principal.session is None or principal.session.stage != SessionStage.mfa:
        raise Forbidden("No sign-in is waiting for a code.", code="wrong_stage")
    method = service.check_second_factor(db, c.settings, c.keys, principal.user, body.code, principal.actor)
    return _finish(db, c, principal, method, response)


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
    codes = service.confirm_enrolment(db, c.settings, c.keys, principal.user, body.code, principal.actor)
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
def password(body: PasswordChangeIn, response: Response, db: DbSession, c: AppComponents,
             principal: PasswordChangePrincipal):
    """Change the password (required after a one-time password); every other session is revoked."""
    service.change_password(db, c.settings, principal.user, body.current_password, body.new_password,
                            principal.actor, principal.session)
    if principal.session is not None:
        raw = service.start_session(db, c.settings, principal.user, SessionStage.full, principal.actor,
                                    replaces=principal.session)
        set_session_cookie(response, c.settings, raw)
    db.commit()
    response.status_code = 204
    return response


@router.get("/me", response_model=MeOut)
def me(principal: PasswordChangePrincipal):
    u = principal.user
    return MeOut(id=u.id, username=u.username, full_name=u.full_name, role=u.role.value, org_id=u.org_id,
                 org_name=u.org.name, org_kind=u.org.kind.value, mfa_enrolled=u.mfa_enrolled,
                 must_change_password=u.must_change_password,
                 csrf_token=principal.session.csrf_token if principal.session else None)


@router.post("/recovery-codes", response_model=RecoveryCodesOut)
def recovery_codes(body: CodeIn, db: DbSession, c: AppComponents, principal: CurrentPrincipal):
    """Replace the recovery codes after re-entering a TOTP code."""
    service.check_second_factor(db, c.settings, c.keys, principal.user, body.code, principal.actor,
                                allow_recovery=False, action="auth.reauth.failed")
    codes = service.regenerate_recovery_codes(db, principal.user)
    record_event(db, "auth.recovery_codes.regenerated", actor=principal.actor, target_type="user",
                 target_id=principal.user.id, target_org_id=principal.user.org_id)
    db.commit()
    return RecoveryCodesOut(recovery_codes=codes)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(db: DbSession, principal: CurrentPrincipal):
    return service.list_api_tokens(db, principal.user)


@router.post("/tokens", response_model=TokenCreatedOut, status_code=201)
def create_token(body: TokenCreateIn, db: DbSession, c: AppComponents, principal: CurrentPrincipal):
    """Create a personal API token after re-entering a TOTP code; the token is shown once."""
    if principal.token is not None:
        raise Forbidden("API tokens cannot create API tokens.", code="token_cannot_create_token")
    name = " ".join(body.name.split())
    if not name:
        raise InvalidInput("Name the token.", code="invalid_name")
    service.check_second_factor(db, c.settings, c.keys, principal.user, body.code, principal.actor,
                                allow_recovery=False, action="auth.reauth.failed")
    token, raw = service.create_api_token(db, c.settings, principal.user, name, body.days, principal.actor)
    db.commit()
    return TokenCreatedOut(**TokenOut.model_validate(token).model_dump(), token=raw)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: str, response: Response, db: DbSession, principal: CurrentPrincipal):
    service.revoke_api_token(db, principal.user, token_id, principal.actor)
    db.commit()
    response.status_code = 204
    return response
