"""Sign-in, second factor (TOTP, recovery codes, passkeys), step-up, sessions and API tokens.

Every failure records its audit event and commits it before raising, because
the failure itself is the security-relevant action; every success records its
event in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from crypto import DecryptionError
from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event
from gateway.auth import passkey_policy, passkeys, passwords, throttle, totp
from gateway.auth.models import ApiToken, Passkey, SessionStage, WebSession
from gateway.config import Settings
from gateway.errors import Conflict, Forbidden, InvalidInput, LoginFailed, NotFound, RateLimited
from gateway.keys import open_totp_secret, seal_totp_secret
from gateway.paging import Page
from gateway.users.models import RecoveryCode, User

RECOVERY_CODE_COUNT = 10
TOKEN_PREFIX = "phg_"  # noqa: S105 - the public mark of a token, not a secret


def digest(raw: str) -> str:
    """Session ids, API tokens and recovery codes are high-entropy: SHA-256 is enough to store them."""
    return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class Principal:
    """The authenticated caller: a user reached through a session cookie or an API token."""

    user: User
    session: WebSession | None
    token: ApiToken | None
    actor: Actor


def _fail(
    db: Session, settings: Settings, user: User | None, actor: Actor, action: Action, reason: str, **details
) -> None:
    """Count a failed attempt against the address and the account, record it, commit."""
    counts = user is not None and reason not in ("locked", "disabled")
    if counts and user is not None:  # (restated for the type checker)
        # Re-read under a row lock so parallel guesses each count (no lost updates). Locks are
        # always taken user row first, then address row (as the TOTP claim does): no deadlock.
        db.refresh(user, attribute_names=["failed_attempts", "locked_until"], with_for_update=True)
    throttle.count_address_failure(db, settings, actor.ip or throttle.UNKNOWN, recorded=True)
    record_event(
        db,
        action,
        actor=actor,
        outcome=Outcome.failure,
        target_type="user" if user else None,
        target_id=user.id if user else None,
        target_org_id=user.org_id if user else None,
        details={"reason": reason, **details},
    )
    if counts and user is not None:
        user.failed_attempts += 1
        if user.failed_attempts >= settings.lockout_threshold:
            user.locked_until = clock.now() + timedelta(minutes=settings.lockout_minutes)
            record_event(
                db,
                Action.AUTH_ACCOUNT_LOCKED,
                actor=actor,
                outcome=Outcome.success,
                severity=Severity.high,
                target_type="user",
                target_id=user.id,
                target_org_id=user.org_id,
                details={"failed_attempts": user.failed_attempts, "minutes": settings.lockout_minutes},
            )
    db.commit()


def _refuse_if_throttled(db: Session, settings: Settings, actor: Actor) -> None:
    """Refuse an address over its limit before any account is looked at.

    The refusal is counted in the address's window, not recorded one by one: the
    `auth.address.throttled` event already says the limit was reached.
    """
    address = actor.ip or throttle.UNKNOWN
    try:
        throttle.check_address(db, settings, address)
    except RateLimited:
        throttle.count_refused(db, settings, address)
        db.commit()
        raise


def check_password(db: Session, settings: Settings, username: str, password: str, actor: Actor) -> User:
    """First factor. The error never says whether the account exists, is disabled or is locked."""
    _refuse_if_throttled(db, settings, actor)
    user = db.scalar(select(User).where(User.username == username.strip().lower()))
    stored = user.password_hash if user else None
    # argon2 takes tens of milliseconds by design: no transaction (on SQLite, no write lock) waits on it.
    db.commit()
    # Always pay for one argon2 verification, even for unknown users (timing).
    ok = passwords.verify_password(stored, password)
    if user is not None:
        # The account as it is now: disabled or locked while the hash ran counts.
        db.refresh(user)
    reason = None
    if user is None:
        reason = "unknown_user"
    elif not user.active or not user.org.active:
        reason = "disabled"
    elif user.locked_until and user.locked_until > clock.now():
        reason = "locked"
    elif not ok:
        reason = "bad_password"
    if reason or user is None:
        _fail(db, settings, user, actor, Action.AUTH_LOGIN_FAILED, reason or "unknown_user")
        raise LoginFailed()
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    record_event(
        db,
        Action.AUTH_LOGIN_PASSWORD_ACCEPTED,
        actor=_as(actor, user),
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
    )
    return user


def _as(actor: Actor, user: User) -> Actor:
    return Actor(user_id=user.id, org_id=user.org_id, ip=actor.ip, user_agent=actor.user_agent)


def check_second_factor(
    db: Session,
    settings: Settings,
    keys,
    user: User,
    code: str,
    actor: Actor,
    *,
    allow_recovery: bool = True,
    action: Action = Action.AUTH_MFA_FAILED,
) -> str:
    """Verify a TOTP code (never the same step twice) or, at login, a recovery code.

    Returns "totp" or "recovery". Failures count towards the account lockout.
    """
    _refuse_if_throttled(db, settings, actor)
    actor = _as(actor, user)
    if user.locked_until and user.locked_until > clock.now():
        _fail(db, settings, user, actor, action, "locked")
        raise LoginFailed()
    if user.totp_secret_sealed is None:
        _fail(db, settings, user, actor, action, "not_enrolled")
        raise LoginFailed()
    try:
        secret = open_totp_secret(keys, user.id, user.totp_secret_sealed)
    except DecryptionError:
        # Sealed for another user (a copied row) or damaged: no code can match, and the
        # user gets the same answer as for a wrong code, never a 500.
        record_event(
            db,
            Action.AUTH_MFA_SECRET_UNREADABLE,
            actor=actor,
            outcome=Outcome.failure,
            severity=Severity.high,
            target_type="user",
            target_id=user.id,
            target_org_id=user.org_id,
        )
        _fail(db, settings, user, actor, action, "secret_unreadable")
        raise LoginFailed() from None
    step = totp.matching_step(secret, code, clock.now())
    if step is not None:
        # Claim the step atomically: of two parallel requests with one code, the
        # database lets exactly one move last_step forward.
        claimed = cast(
            CursorResult,
            db.execute(
                update(User)
                .where(User.id == user.id, or_(User.totp_last_step.is_(None), User.totp_last_step < step))
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if claimed == 1:
            user.totp_last_step = step
            return "totp"
        _fail(db, settings, user, actor, action, "replayed_code")
        raise LoginFailed()
    if allow_recovery:
        normalised = normalise_recovery_code(code)
        if normalised:
            used = cast(
                CursorResult,
                db.execute(
                    update(RecoveryCode)
                    .where(
                        RecoveryCode.user_id == user.id,
                        RecoveryCode.code_hash == digest(normalised),
                        RecoveryCode.used_at.is_(None),
                    )
                    .values(used_at=clock.now())
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            if used == 1:
                remaining = db.scalar(
                    select(RecoveryCode.id)
                    .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
                    .limit(1)
                )
                record_event(
                    db,
                    Action.AUTH_RECOVERY_CODE_USED,
                    actor=actor,
                    severity=Severity.warning,
                    target_type="user",
                    target_id=user.id,
                    target_org_id=user.org_id,
                    details={"codes_left": remaining is not None},
                )
                return "recovery"
            reused = db.scalar(
                select(RecoveryCode.id).where(
                    RecoveryCode.user_id == user.id, RecoveryCode.code_hash == digest(normalised)
                )
            )
            if reused is not None:
                _fail(db, settings, user, actor, action, "reused_recovery_code")
                raise LoginFailed()
    _fail(db, settings, user, actor, action, "bad_code")
    raise LoginFailed()


# -- one gate for the second factor: sign-in and step-up --------------------------------


@dataclass(frozen=True)
class Proof:
    """What a user presents as a second factor: a code, or a passkey's answer (JSON text or object)."""

    code: str = ""
    passkey_assertion: str | dict | None = None


def check_factor(
    db: Session,
    settings: Settings,
    keys,
    user: User,
    session: WebSession | None,
    proof: Proof,
    actor: Actor,
    *,
    purpose: str,
    action: Action,
) -> str:
    """The second factor at sign-in (`purpose="login"`) or before a sensitive action (`"stepup"`).

    A passkey answer, or else a code: TOTP, or at sign-in only a recovery code. Under a
    passkey policy a user who has a passkey must use it (a recovery code still signs in).
    Returns "passkey", "totp" or "recovery"; every failure is recorded and counts towards
    the account lockout.
    """
    if proof.passkey_assertion:
        verify_passkey(db, settings, user, session, proof.passkey_assertion, actor, purpose=purpose, action=action)
        return "passkey"
    code = proof.code.strip()
    if not code:
        raise InvalidInput(
            "Enter the code from your authenticator app, or use your passkey.", code="second_factor_required"
        )
    recovery = purpose == "login"
    # A 16-character recovery code can never pass as a 6-digit TOTP code, so letting it through
    # here does not let TOTP in.
    if not factor_choice(db, user).code and not (recovery and normalise_recovery_code(code)):
        # Phishing resistance is the point of the policy: a relayed TOTP code must not do what a passkey does.
        record_event(
            db,
            action,
            actor=_as(actor, user),
            outcome=Outcome.denied,
            target_type="user",
            target_id=user.id,
            target_org_id=user.org_id,
            details={"reason": "passkey_required"},
        )
        db.commit()
        exc = Forbidden(
            "Your organisation requires your passkey here: use it instead of a code.", code="passkey_required"
        )
        exc.audited = True
        raise exc
    return check_second_factor(db, settings, keys, user, code, actor, allow_recovery=recovery, action=action)


@dataclass(frozen=True)
class FactorChoice:
    """What a form asking for a second factor offers this user."""

    passkey: bool  # the user has a passkey (offered first)
    code: bool  # a TOTP code is accepted: no policy, or no passkey yet


def factor_choice(db: Session, user: User) -> FactorChoice:
    has_passkey = passkeys.count(db, user) > 0
    return FactorChoice(passkey=has_passkey, code=not (has_passkey and passkey_policy.applies_to(db, user)))


def step_up(db: Session, settings: Settings, keys, principal: Principal, proof: Proof, action: Action) -> str:
    """A fresh second factor before releasing PHI, destroying data or minting credentials.

    A hijacked session alone must not be enough; recovery codes do not count here.
    """
    return check_factor(
        db, settings, keys, principal.user, principal.session, proof, principal.actor, purpose="stepup", action=action
    )


def verify_passkey(
    db: Session,
    settings: Settings,
    user: User,
    session: WebSession | None,
    assertion,
    actor: Actor,
    *,
    purpose: str,
    action: Action,
) -> Passkey:
    """A passkey answer to a challenge of this session: user-verified, counter moving forward."""
    _refuse_if_throttled(db, settings, actor)
    actor = _as(actor, user)
    if session is None:
        # Challenges are bound to a browser session; a bearer token has none to bind to.
        raise InvalidInput(
            "Passkeys confirm actions in a signed-in browser; with an API token, send a code.",
            code="passkey_needs_session",
        )
    if user.locked_until and user.locked_until > clock.now():
        _fail(db, settings, user, actor, action, "locked")
        raise LoginFailed()
    try:
        passkey = passkeys.verify_assertion(db, settings, user, session, assertion, purpose)
    except passkeys.PasskeyRejected as exc:
        extra = {"passkey_id": exc.passkey.id} if exc.passkey else {}
        if exc.reason == "sign_count_regressed":
            # A valid signature with a counter that did not move forward: a second copy of the
            # private key is in use somewhere, or an answer is being replayed.
            record_event(
                db,
                Action.AUTH_PASSKEY_CLONE_WARNING,
                actor=actor,
                outcome=Outcome.failure,
                severity=Severity.high,
                target_type="passkey",
                target_id=exc.passkey.id if exc.passkey else None,  # always set for this reason
                target_org_id=user.org_id,
                details={**exc.details, "purpose": purpose},
            )
        _fail(db, settings, user, actor, action, exc.reason, method="passkey", **extra)
        raise LoginFailed() from None
    record_event(
        db,
        Action.AUTH_PASSKEY_USED,
        actor=actor,
        target_type="passkey",
        target_id=passkey.id,
        target_org_id=user.org_id,
        details={"purpose": purpose, "sign_count": passkey.sign_count},
    )
    return passkey


def finish_sign_in(db: Session, settings: Settings, principal: Principal, method: str) -> tuple[SessionStage, str]:
    """Second factor accepted: record the sign-in and rotate the session id, to a full session, or to one
    held for passkey registration when a policy requires a passkey the user has not registered yet.

    Returns the new stage and the raw session id (for the cookie).
    """
    user = principal.user
    complete_login(db, user, principal.actor, method)
    stage = SessionStage.full
    if passkey_policy.applies_to(db, user) and not passkeys.count(db, user):
        stage = SessionStage.passkey
        record_event(
            db,
            Action.AUTH_PASSKEY_ENROLMENT_REQUIRED,
            actor=principal.actor,
            target_type="user",
            target_id=user.id,
            target_org_id=user.org_id,
        )
    return stage, start_session(db, settings, user, stage, principal.actor, replaces=principal.session)


def complete_login(db: Session, user: User, actor: Actor, method: str) -> None:
    user.failed_attempts = 0
    user.locked_until = None
    user.last_login_at = clock.now()
    record_event(
        db,
        Action.AUTH_LOGIN_SUCCEEDED,
        actor=_as(actor, user),
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
        details={"second_factor": method},
    )


# -- passkeys ---------------------------------------------------------------------


def register_passkey(
    db: Session,
    settings: Settings,
    keys,
    principal: Principal,
    response,
    name: str,
    *,
    password: str = "",
    proof: Proof = Proof(),
) -> Passkey:
    """Add a passkey to the caller's account.

    Right after a sign-in that a policy holds at the `passkey` stage, the ceremony alone
    suffices (password and second factor were given a moment ago in this very session);
    from the account page the user re-authenticates first: password and a fresh factor.
    """
    user, session = principal.user, principal.session
    if session is None:
        raise InvalidInput("Passkeys are registered in a signed-in browser.", code="passkey_needs_session")
    name = " ".join(name.split())
    if not name or len(name) > 100:
        raise InvalidInput("Name the passkey (at most 100 characters).", code="invalid_name")
    actor = _as(principal.actor, user)
    via = "policy" if session.stage == SessionStage.passkey else "account"
    if via == "account":
        # argon2 before the transaction's first statement: no lock waits on the hash.
        if not passwords.verify_password(user.password_hash, password):
            _fail(db, settings, user, actor, Action.AUTH_REAUTH_FAILED, "bad_password")
            exc = InvalidInput("The current password is not correct.", code="bad_current_password")
            exc.audited = True
            raise exc
        step_up(db, settings, keys, principal, proof, Action.AUTH_REAUTH_FAILED)
    try:
        passkey = passkeys.register(db, settings, user, session, response, name)
    except passkeys.PasskeyRejected as exc:
        record_event(
            db,
            Action.AUTH_PASSKEY_REGISTER_FAILED,
            actor=actor,
            outcome=Outcome.failure,
            target_type="user",
            target_id=user.id,
            target_org_id=user.org_id,
            details={"reason": exc.reason, **exc.details},
        )
        db.commit()
        error = InvalidInput(
            "The passkey could not be registered. Try again, or use another authenticator.",
            code="passkey_not_registered",
        )
        error.audited = True
        raise error from None
    record_event(
        db,
        Action.AUTH_PASSKEY_REGISTERED,
        actor=actor,
        target_type="passkey",
        target_id=passkey.id,
        target_org_id=user.org_id,
        details={
            "via": via,
            "aaguid": passkey.aaguid,
            "attestation_format": passkey.attestation_format,
            "backup_eligible": passkey.backup_eligible,
            "backed_up": passkey.backed_up,
            "transports": passkey.transports,
        },
    )
    return passkey


def find_passkey(db: Session, user: User, passkey_id: str) -> Passkey:
    """One of the user's own passkeys: another user's passkey id is simply not found."""
    passkey = db.scalar(select(Passkey).where(Passkey.id == passkey_id, Passkey.user_id == user.id))
    if passkey is None:
        raise NotFound("No such passkey.", code="passkey_not_found")
    return passkey


def remove_passkey(db: Session, settings: Settings, keys, principal: Principal, passkey_id: str, proof: Proof) -> None:
    """Remove one of the caller's passkeys after a fresh factor; never the last one a policy requires."""
    user = principal.user
    passkey = find_passkey(db, user, passkey_id)
    if passkey_policy.applies_to(db, user) and passkeys.count(db, user) <= 1:
        # With a policy, TOTP alone is not enough: this passkey is the last factor the policy accepts.
        record_event(
            db,
            Action.AUTH_PASSKEY_REMOVE_REFUSED,
            actor=principal.actor,
            outcome=Outcome.denied,
            target_type="passkey",
            target_id=passkey.id,
            target_org_id=user.org_id,
            details={"reason": "last_factor"},
        )
        db.commit()
        exc = Conflict(
            "Your organisation requires a passkey: register another one before removing this one.", code="last_factor"
        )
        exc.audited = True
        raise exc
    step_up(db, settings, keys, principal, proof, Action.AUTH_REAUTH_FAILED)
    db.delete(passkey)
    record_event(
        db,
        Action.AUTH_PASSKEY_REMOVED,
        actor=principal.actor,
        severity=Severity.warning,
        target_type="passkey",
        target_id=passkey.id,
        target_org_id=user.org_id,
        details={"aaguid": passkey.aaguid},
    )


def reset_passkeys(db: Session, user: User, actor: Actor) -> int:
    """An administrator removes every passkey of a user who lost them; the user registers anew at sign-in."""
    removed = cast(
        CursorResult,
        db.execute(delete(Passkey).where(Passkey.user_id == user.id).execution_options(synchronize_session=False)),
    ).rowcount
    record_event(
        db,
        Action.ADMIN_USER_PASSKEYS_RESET,
        actor=actor,
        severity=Severity.high,
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
        details={"passkeys": removed},
    )
    revoke_user_sessions(db, user.id, actor, "passkeys_reset")
    return removed


# -- TOTP enrolment -------------------------------------------------------------


def begin_enrolment(db: Session, keys, user: User) -> str:
    """A fresh secret for a user not yet enrolled; active only after `confirm_enrolment`."""
    if user.mfa_enrolled:
        raise InvalidInput("Two-factor authentication is already set up.", code="mfa_already_enrolled")
    secret = totp.new_secret()
    user.totp_secret_sealed = seal_totp_secret(keys, user.id, secret)
    return secret


def pending_secret(keys, user: User) -> str | None:
    if user.mfa_enrolled or user.totp_secret_sealed is None:
        return None
    return open_totp_secret(keys, user.id, user.totp_secret_sealed)


def confirm_enrolment(db: Session, settings: Settings, keys, user: User, code: str, actor: Actor) -> list[str]:
    """Activate TOTP after one valid code; returns the ten recovery codes (shown once)."""
    if user.mfa_enrolled:
        raise InvalidInput("Two-factor authentication is already set up.", code="mfa_already_enrolled")
    check_second_factor(
        db, settings, keys, user, code, actor, allow_recovery=False, action=Action.AUTH_MFA_ENROL_FAILED
    )
    user.totp_enrolled_at = clock.now()
    codes = regenerate_recovery_codes(db, user)
    record_event(
        db,
        Action.AUTH_MFA_ENROLLED,
        actor=_as(actor, user),
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
    )
    return codes


def normalise_recovery_code(code: str) -> str:
    cleaned = "".join(ch for ch in code.lower() if ch.isalnum())
    return cleaned if len(cleaned) == 16 else ""


def regenerate_recovery_codes(db: Session, user: User) -> list[str]:
    """Replace every recovery code; only their hashes are stored."""
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(alphabet) for _ in range(16))  # about 79 bits each
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
        db.add(RecoveryCode(user_id=user.id, code_hash=digest(raw), created_at=clock.now()))
    return codes


# -- sessions -------------------------------------------------------------------


def start_session(
    db: Session,
    settings: Settings,
    user: User,
    stage: SessionStage,
    actor: Actor,
    *,
    replaces: WebSession | None = None,
) -> str:
    """Create a session and return its raw id (for the cookie only). Replacing rotates the id."""
    now = clock.now()
    raw = secrets.token_urlsafe(32)  # 256 bits
    expires_at = replaces.expires_at if replaces else now + timedelta(hours=settings.session_absolute_hours)
    if replaces is not None:
        db.delete(replaces)
    db.add(
        WebSession(
            id_hash=digest(raw),
            user_id=user.id,
            stage=stage,
            csrf_token=secrets.token_urlsafe(32),
            created_at=replaces.created_at if replaces else now,
            last_seen_at=now,
            expires_at=expires_at,
            reauth_at=now if stage == SessionStage.full else None,
            ip=(actor.ip or "")[:64],
            user_agent=(actor.user_agent or "")[:256],
        )
    )
    return raw


# A session's last-seen time and a token's last use are written at most this often: a reader
# that only looks must not write on every request, and the idle timeout is minutes long.
TOUCH_INTERVAL = timedelta(seconds=30)


def check_session(db: Session, settings: Settings, raw: str) -> tuple[WebSession | None, str | None]:
    """Read only: the session for a cookie value and, if it has ended, why (to be recorded by `expire_session`)."""
    if not raw or len(raw) > 100:
        return None, None
    session = db.get(WebSession, digest(raw))
    if session is None:
        return None, None
    now = clock.now()
    if now >= session.expires_at:
        return session, "absolute_timeout"
    if now - session.last_seen_at >= timedelta(minutes=settings.session_idle_minutes):
        return session, "idle_timeout"
    user = db.get(User, session.user_id)
    if user is None or not user.active or not user.org.active:
        return session, "user_disabled"
    return session, None


def expire_session(db: Session, session: WebSession, reason: str, actor: Actor) -> None:
    """Remove an ended session and record why, once (a parallel request may have done it already)."""
    removed = cast(
        CursorResult,
        db.execute(
            delete(WebSession).where(WebSession.id_hash == session.id_hash).execution_options(synchronize_session=False)
        ),
    ).rowcount
    if removed:
        record_event(
            db,
            Action.AUTH_SESSION_EXPIRED,
            actor=actor,
            target_type="user",
            target_id=session.user_id,
            details={"reason": reason},
        )


def needs_touch(last: datetime | None) -> bool:
    return last is None or clock.now() - last >= TOUCH_INTERVAL


def touch_session(db: Session, session: WebSession) -> None:
    now = clock.now()
    db.execute(
        update(WebSession)
        .where(WebSession.id_hash == session.id_hash, WebSession.last_seen_at < now)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(session, "last_seen_at", now)  # as stored: the request's own session has nothing to flush


def end_session(db: Session, session: WebSession, actor: Actor, reason: str = "logout") -> None:
    db.delete(session)
    record_event(
        db,
        Action.AUTH_SESSION_REVOKED,
        actor=actor,
        target_type="user",
        target_id=session.user_id,
        details={"reason": reason},
    )


def revoke_user_sessions(
    db: Session, user_id: str, actor: Actor, reason: str, *, keep: WebSession | None = None
) -> int:
    """Kill every live session of a user at once (disable, password change, offboarding)."""
    query = delete(WebSession).where(WebSession.user_id == user_id)
    if keep is not None:
        query = query.where(WebSession.id_hash != keep.id_hash)
    count = cast(CursorResult, db.execute(query.execution_options(synchronize_session=False))).rowcount
    if count:
        record_event(
            db,
            Action.AUTH_SESSION_REVOKED,
            actor=actor,
            target_type="user",
            target_id=user_id,
            details={"reason": reason, "sessions": count},
        )
    return count


def change_password(
    db: Session, settings: Settings, user: User, current: str, new: str, actor: Actor, session: WebSession | None
) -> None:
    """Check the current password, apply the policy, revoke every other session."""
    if not passwords.verify_password(user.password_hash, current):
        _fail(db, settings, user, _as(actor, user), Action.AUTH_PASSWORD_CHANGE_FAILED, "bad_password")
        exc = InvalidInput("The current password is not correct.", code="bad_current_password")
        exc.audited = True  # _fail recorded it
        raise exc
    passwords.check_policy(new, username=user.username)
    if passwords.verify_password(user.password_hash, new):
        raise InvalidInput("Choose a password different from the current one.", code="password_unchanged")
    user.password_hash = passwords.hash_password(new)
    user.must_change_password = False
    user.password_changed_at = clock.now()
    record_event(
        db,
        Action.AUTH_PASSWORD_CHANGED,
        actor=_as(actor, user),
        target_type="user",
        target_id=user.id,
        target_org_id=user.org_id,
    )
    revoke_user_sessions(db, user.id, _as(actor, user), "password_changed", keep=session)


# -- API tokens -----------------------------------------------------------------


def create_api_token(
    db: Session, settings: Settings, user: User, name: str, days: int, actor: Actor
) -> tuple[ApiToken, str]:
    """A named, expiring personal token; the raw value is returned once and stored hashed."""
    if not 1 <= days <= settings.api_token_max_days:
        raise InvalidInput(f"A token lasts 1 to {settings.api_token_max_days} days.", code="token_lifetime")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user_id=user.id,
        name=name,
        token_hash=digest(raw),
        prefix=raw[:10],
        created_at=clock.now(),
        expires_at=clock.now() + timedelta(days=days),
    )
    db.add(token)
    db.flush()
    record_event(
        db,
        Action.AUTH_API_TOKEN_CREATED,
        actor=actor,
        target_type="api_token",
        target_id=token.id,
        target_org_id=user.org_id,
        details={"days": days},
    )
    return token, raw


# Newest first; revoked and expired tokens stay listed, so the list grows with time.
TOKENS = paging.Order("tokens", (ApiToken.created_at, ApiToken.id), descending=True)


def list_api_tokens(
    db: Session, user: User, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[ApiToken]:
    """One page of the user's own tokens (scoped in SQL), newest first."""
    return TOKENS.page(db, select(ApiToken).where(ApiToken.user_id == user.id), limit=limit, cursor=cursor)


def find_api_token(db: Session, user: User, token_id: str) -> ApiToken:
    """One of the user's own tokens still in force: another user's token id is simply not found."""
    token = db.scalar(select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id))
    if token is None or token.revoked_at is not None:
        raise NotFound()
    return token


def revoke_api_token(db: Session, user: User, token_id: str, actor: Actor) -> None:
    token = find_api_token(db, user, token_id)
    token.revoked_at = clock.now()
    record_event(
        db,
        Action.AUTH_API_TOKEN_REVOKED,
        actor=actor,
        target_type="api_token",
        target_id=token.id,
        target_org_id=user.org_id,
    )


def revoke_user_tokens(db: Session, user_id: str, actor: Actor, reason: str) -> int:
    count = cast(
        CursorResult,
        db.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=clock.now())
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if count:
        record_event(
            db,
            Action.AUTH_API_TOKEN_REVOKED,
            actor=actor,
            target_type="user",
            target_id=user_id,
            details={"reason": reason, "tokens": count},
        )
    return count


def resolve_api_token(db: Session, raw: str) -> tuple[ApiToken, User] | None:
    """Read only: the live token and its user, or None (`touch_api_token` records the use)."""
    if not raw.startswith(TOKEN_PREFIX) or len(raw) > 100:
        return None
    token = db.scalar(select(ApiToken).where(ApiToken.token_hash == digest(raw)))
    if token is None or token.revoked_at is not None or token.expires_at <= clock.now():
        return None
    user = db.get(User, token.user_id)
    if user is None or not user.active or not user.org.active or not user.mfa_enrolled:
        return None
    return token, user


def touch_api_token(db: Session, token: ApiToken) -> None:
    now = clock.now()
    db.execute(
        update(ApiToken)
        .where(ApiToken.id == token.id)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(token, "last_used_at", now)


def session_csrf_token(db: Session, raw: str) -> str:
    """The CSRF token of the session whose cookie value is `raw` (just started or promoted)."""
    return db.get_one(WebSession, digest(raw)).csrf_token
