"""Sign-in pages: login, second factor (passkey or code), TOTP enrolment, passkey registration, password change,
account settings."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse

from gateway.audit.actions import Action
from gateway.audit.models import Outcome
from gateway.audit.service import record_event
from gateway.auth import passkey_policy, passkeys, service, totp
from gateway.auth.cookies import LOGIN_CSRF_COOKIE, clear_session_cookie, set_session_cookie
from gateway.auth.models import SessionStage
from gateway.auth.service import Proof
from gateway.deps import (
    AppComponents,
    CurrentPrincipal,
    DbSession,
    PartialPrincipal,
    PasswordChangePrincipal,
    RequestActor,
    WriteSession,
    check_origin,
)
from gateway.errors import CsrfFailed, GatewayError, InvalidInput
from gateway.notifications import service as notifications
from gateway.notifications.models import Cadence
from gateway.web import (
    MAX_NEXT,
    Confirmed,
    Cursor,
    confirm_page,
    local_target,
    page_links,
    redirect,
    render,
    submit,
    with_next,
)

router = APIRouter(include_in_schema=False)

CodeField = Form(max_length=32)
# The fresh factor of a form: a code, or (filled in by static/passkeys.js) a passkey's answer.
OptionalCode = Form(default="", max_length=32)
AssertionField = Form(default="", max_length=passkeys.MAX_RESPONSE_CHARS)
# The page to land on once signed in (a notification's link): `?next=` on each step's page, a hidden
# field on its form; checked by local_target at every step, so only a path of this gateway is followed.
NextQuery = Query(default="", alias="next")
NextField = Form(default="", alias="next", max_length=MAX_NEXT)


def proof(code: str, passkey_assertion: str) -> Proof:
    return Proof(code=code, passkey_assertion=passkey_assertion or None)


@router.get("/")
def root():
    return redirect("/home")


@router.get("/favicon.ico")
def favicon():
    # Browsers ask for /favicon.ico before reading the page's <link rel="icon">; answer, never 404.
    return RedirectResponse("/static/favicon.svg", status_code=301)


@router.get("/login")
def login_form(request: Request, c: AppComponents, next_page: str = NextQuery):
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", login_csrf=token, next_page=local_target(next_page))
    # Double-submit token for the one form posted before any session exists (login CSRF).
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="strict",
        secure=c.settings.effective_cookie_secure,
    )
    return response


@router.post("/login")
def login(
    request: Request,
    db: DbSession,
    c: AppComponents,
    actor: RequestActor,
    username: str = Form(max_length=64),
    password: str = Form(max_length=1024),
    csrf_token: str = Form(default="", max_length=100),
    next_page: str = NextField,
):
    check_origin(request)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        raise CsrfFailed()
    try:
        user = service.check_password(db, c.settings, username, password, actor)
    except GatewayError as exc:
        return render(
            request,
            "login.html",
            status_code=exc.status,
            error=exc.message,
            login_csrf=csrf_token,
            username=username,
            next_page=local_target(next_page),
        )
    stage = SessionStage.mfa if user.mfa_enrolled else SessionStage.enrol
    raw = service.start_session(db, c.settings, user, stage, actor)
    db.commit()
    response = redirect(with_next("/mfa" if stage == SessionStage.mfa else "/mfa/enrol", next_page))
    set_session_cookie(response, c.settings, raw)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.get("/mfa")
def mfa_form(request: Request, db: DbSession, principal: PartialPrincipal, next_page: str = NextQuery):
    if principal.session and principal.session.stage == SessionStage.enrol:
        return redirect(with_next("/mfa/enrol", next_page))
    if principal.session and principal.session.stage == SessionStage.passkey:
        return redirect(with_next("/mfa/passkey", next_page))
    if principal.session is None or principal.session.stage == SessionStage.full:
        return redirect(local_target(next_page))
    return render(
        request,
        "mfa.html",
        principal=principal,
        factor=service.factor_choice(db, principal.user),
        next_page=local_target(next_page),
    )


def _complete(db, c, principal, method: str, next_page: str):
    """The second factor is done: on to the steps still required (each carrying `next_page`), or to that page."""
    stage, raw = service.finish_sign_in(db, c.settings, principal, method)
    db.commit()
    if stage == SessionStage.passkey:
        target = with_next("/mfa/passkey", next_page)
    elif principal.user.must_change_password:
        target = with_next("/password", next_page)
    else:
        target = local_target(next_page)
    return _with_session(redirect(target), c, raw)


def _with_session(response, c, raw: str):
    set_session_cookie(response, c.settings, raw)
    return response


@router.post("/mfa")
def mfa(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: PartialPrincipal,
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
    next_page: str = NextField,
):
    if principal.session is None or principal.session.stage != SessionStage.mfa:
        return redirect(local_target(next_page))
    return submit(
        db,
        lambda: service.check_factor(
            db,
            c.settings,
            c.keys,
            principal.user,
            principal.session,
            proof(code, passkey_assertion),
            principal.actor,
            purpose="login",
            action=Action.AUTH_MFA_FAILED,
        ),
        commit=False,  # _complete commits the factor's use with the new session
        form=lambda **error: render(
            request,
            "mfa.html",
            principal=principal,
            factor=service.factor_choice(db, principal.user),
            next_page=local_target(next_page),
            **error,
        ),
        done=lambda method: _complete(db, c, principal, method, next_page),
    )


@router.get("/mfa/passkey")
def passkey_enrol_form(request: Request, principal: PartialPrincipal, next_page: str = NextQuery):
    if principal.session is None or principal.session.stage != SessionStage.passkey:
        return redirect(local_target(next_page))
    return render(request, "passkey_enrol.html", principal=principal, next_page=local_target(next_page))


@router.post("/mfa/passkey")
def passkey_enrol(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: PartialPrincipal,
    name: str = Form(max_length=100),
    credential: str = Form(max_length=passkeys.MAX_RESPONSE_CHARS),
    next_page: str = NextField,
):
    """The registration a passkey policy leads to; the session becomes a full one once it is done."""
    if principal.session is None or principal.session.stage != SessionStage.passkey:
        return redirect(local_target(next_page))

    def run():
        service.register_passkey(db, c.settings, c.keys, principal, credential, name)
        return service.start_session(
            db, c.settings, principal.user, SessionStage.full, principal.actor, replaces=principal.session
        )

    return submit(
        db,
        run,
        form=lambda **error: render(
            request, "passkey_enrol.html", principal=principal, next_page=local_target(next_page), **error
        ),
        done=lambda raw: _with_session(
            redirect(
                with_next("/password", next_page) if principal.user.must_change_password else local_target(next_page)
            ),
            c,
            raw,
        ),
    )


@router.get("/mfa/enrol")
def enrol_form(
    request: Request, db: WriteSession, c: AppComponents, principal: PartialPrincipal, next_page: str = NextQuery
):
    if principal.session is None or principal.session.stage != SessionStage.enrol:
        return redirect(local_target(next_page))
    secret = service.pending_secret(c.keys, principal.user)
    if secret is None:
        secret = service.begin_enrolment(db, c.keys, principal.user)
        db.commit()
    return _render_enrol(request, principal, secret, next_page=local_target(next_page))


def _render_enrol(request, principal, secret, **extra):
    uri = totp.provisioning_uri(secret, principal.user.username)
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    return render(request, "enrol.html", principal=principal, secret=grouped, qr=totp.qr_svg_data_uri(uri), **extra)


@router.post("/mfa/enrol")
def enrol(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: PartialPrincipal,
    code: str = CodeField,
    next_page: str = NextField,
):
    if principal.session is None or principal.session.stage != SessionStage.enrol:
        return redirect(local_target(next_page))
    try:
        codes = service.confirm_enrolment(db, c.settings, c.keys, principal.user, code, principal.actor)
    except GatewayError as exc:
        secret = service.pending_secret(c.keys, principal.user)
        return _render_enrol(
            request, principal, secret, status_code=exc.status, error=exc.message, next_page=local_target(next_page)
        )
    response = _complete(db, c, principal, "totp", next_page)
    page = render(
        request, "recovery_codes.html", principal=principal, codes=codes, next_url=response.headers["location"]
    )
    page.headers.append("set-cookie", response.headers["set-cookie"])
    return page


@router.get("/password")
def password_form(request: Request, principal: PasswordChangePrincipal, next_page: str = NextQuery):
    return render(request, "password.html", principal=principal, next_page=local_target(next_page))


@router.post("/password")
def password(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: PasswordChangePrincipal,
    current_password: str = Form(max_length=1024),
    new_password: str = Form(max_length=1024),
    confirm_password: str = Form(max_length=1024),
    next_page: str = NextField,
):
    def run():
        if new_password != confirm_password:
            raise InvalidInput("The two new passwords differ.", code="password_mismatch")
        service.change_password(
            db, c.settings, principal.user, current_password, new_password, principal.actor, principal.session
        )
        return service.start_session(
            db, c.settings, principal.user, SessionStage.full, principal.actor, replaces=principal.session
        )

    return submit(
        db,
        run,
        form=lambda **error: render(
            request, "password.html", principal=principal, next_page=local_target(next_page), **error
        ),
        done=lambda raw: _with_session(redirect(local_target(next_page)), c, raw),
    )


@router.post("/logout")
def logout(db: DbSession, c: AppComponents, principal: PartialPrincipal):
    if principal.session is not None:
        service.end_session(db, principal.session, principal.actor)
        db.commit()
    response = redirect("/login")
    clear_session_cookie(response, c.settings)
    return response


# The same words in the <dialog> (account.html) and on the page without script.
REMOVE_PASSKEY_QUESTION = "Remove the passkey “{name}”? It no longer signs you in nor confirms sensitive actions."
RECOVERY_CODES_QUESTION = "Replace your recovery codes? The ones you kept stop working at once."
REVOKE_QUESTION = "Revoke the API token “{name}”? Every program using it is refused at once; this cannot be undone."


def _account(request, db, principal, status_code=200, tokens_cursor: str | None = None, kept=None, **extra):
    """The account page; after a refused form, with what that form was sent with (`kept`, never a secret)."""
    user = principal.user
    tokens = service.list_api_tokens(db, user, cursor=tokens_cursor)
    return render(
        request,
        "account.html",
        status_code=status_code,
        principal=principal,
        tokens=tokens.items,
        token_links=page_links(request, tokens.next_cursor, "tokens_cursor"),
        passkeys=passkeys.list_passkeys(db, user),
        factor=service.factor_choice(db, user),
        passkey_required=passkey_policy.applies_to(db, user),
        notify=notifications.preferences(db, user),
        cadences=list(Cadence),
        mandatory={t.value for t in notifications.MANDATORY},
        kept=kept or {},
        remove_passkey_question=REMOVE_PASSKEY_QUESTION,
        revoke_token_question=REVOKE_QUESTION,
        recovery_codes_question=RECOVERY_CODES_QUESTION,
        **extra,
    )


@router.get("/account")
def account(request: Request, db: DbSession, principal: CurrentPrincipal, tokens_cursor: Cursor = None):
    return _account(request, db, principal, tokens_cursor=tokens_cursor)


@router.post("/account/tokens")
def create_token(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: CurrentPrincipal,
    name: str = Form(min_length=1, max_length=100),
    days: str = Form(default="", max_length=4),
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
):
    step = proof(code, passkey_assertion)

    def run():
        if not days.strip().isdigit() or not 1 <= int(days) <= 366:
            raise InvalidInput("A token is valid for 1 to 366 days.", code="invalid_days")
        service.step_up(db, c.settings, c.keys, principal, step, Action.AUTH_REAUTH_FAILED)
        return service.create_api_token(
            db, c.settings, principal.user, " ".join(name.split()), int(days), principal.actor
        )

    return submit(
        db,
        run,
        form=lambda **error: _account(request, db, principal, kept={"token": {"name": name, "days": days}}, **error),
        stepup=step,
        done=lambda made: _account(request, db, principal, new_token=made[1], new_token_name=made[0].name),
    )


@router.post("/account/passkeys")
def add_passkey(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: CurrentPrincipal,
    name: str = Form(max_length=100),
    credential: str = Form(max_length=passkeys.MAX_RESPONSE_CHARS),
    current_password: str = Form(default="", max_length=1024),
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
):
    """Register another passkey, after re-authenticating (password and a fresh factor)."""
    step = proof(code, passkey_assertion)
    return submit(
        db,
        lambda: service.register_passkey(
            db,
            c.settings,
            c.keys,
            principal,
            credential,
            name,
            password=current_password,
            proof=step,
        ),
        form=lambda **error: _account(request, db, principal, kept={"passkey": {"name": name}}, **error),
        done=lambda _: redirect("/account"),
    )


@router.post("/account/passkeys/{passkey_id}/remove")
def remove_passkey(
    request: Request,
    passkey_id: str,
    db: DbSession,
    c: AppComponents,
    principal: CurrentPrincipal,
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        return confirm_page(
            request,
            principal,
            question=REMOVE_PASSKEY_QUESTION.format(name=service.find_passkey(db, principal.user, passkey_id).name),
            fields={},
            cancel="/account",
            button="Remove passkey",
            factor=service.factor_choice(db, principal.user),
        )
    step = proof(code, passkey_assertion)
    return submit(
        db,
        lambda: service.remove_passkey(db, c.settings, c.keys, principal, passkey_id, step),
        form=lambda **error: _account(request, db, principal, **error),
        done=lambda _: redirect("/account"),
        stepup=step,
    )


@router.post("/account/notifications")
def set_notifications(
    request: Request,
    db: DbSession,
    principal: CurrentPrincipal,
    approvals: str = Form(default="", max_length=16),
    received: str = Form(default="", max_length=16),
    sent: str = Form(default="", max_length=16),
    alerts: str = Form(default="", max_length=16),
):
    """How often the user is told of each topic of their role (approval requests cannot be switched off)."""
    chosen = {"approvals": approvals, "received": received, "sent": sent, "alerts": alerts}
    return submit(
        db,
        lambda: notifications.set_preferences(
            db, principal.user, {k: v for k, v in chosen.items() if v}, principal.actor
        ),
        form=lambda **error: _account(request, db, principal, **error),
        done=lambda _: redirect("/account#notifications"),
    )


@router.post("/account/tokens/{token_id}/revoke")
def revoke_token(
    request: Request, token_id: str, db: DbSession, principal: CurrentPrincipal, confirmed: str = Confirmed
):
    if confirmed != "yes":
        return confirm_page(
            request,
            principal,
            question=REVOKE_QUESTION.format(name=service.find_api_token(db, principal.user, token_id).name),
            fields={},
            cancel="/account",
            button="Revoke token",
        )
    service.revoke_api_token(db, principal.user, token_id, principal.actor)
    db.commit()
    return redirect("/account")


@router.post("/account/recovery-codes")
def regenerate_codes(
    request: Request,
    db: DbSession,
    c: AppComponents,
    principal: CurrentPrincipal,
    code: str = OptionalCode,
    passkey_assertion: str = AssertionField,
    confirmed: str = Confirmed,
):
    if confirmed != "yes":
        return confirm_page(
            request,
            principal,
            question=RECOVERY_CODES_QUESTION,
            fields={},
            cancel="/account",
            button="Replace recovery codes",
            factor=service.factor_choice(db, principal.user),
        )
    step = proof(code, passkey_assertion)

    def run():
        service.step_up(db, c.settings, c.keys, principal, step, Action.AUTH_REAUTH_FAILED)
        codes = service.regenerate_recovery_codes(db, principal.user)
        record_event(
            db,
            Action.AUTH_RECOVERY_CODES_REGENERATED,
            actor=principal.actor,
            outcome=Outcome.success,
            target_type="user",
            target_id=principal.user.id,
            target_org_id=principal.user.org_id,
        )
        return codes

    return submit(
        db,
        run,
        form=lambda **error: _account(request, db, principal, **error),
        stepup=step,
        done=lambda codes: render(
            request, "recovery_codes.html", principal=principal, codes=codes, next_url="/account"
        ),
    )
