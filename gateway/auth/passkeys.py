"""Passkeys (WebAuthn, through py_webauthn): registration, assertions, and the challenges behind them.

* **The relying party is the configuration's.** The rp id and the origin come from
  `PHIGATE_PUBLIC_URL` (`Settings.webauthn_rp_id`, `webauthn_origin`), never from the
  request: a phishing page on another name gets answers signed for that name, which do
  not verify here.  That is what makes a passkey phishing-resistant where a TOTP code is not.
* **Challenges** are 32 random bytes per ceremony, stored only as their SHA-256 with the
  session they were issued to, their purpose (register, login, stepup) and an expiry.  The
  answer's clientDataJSON names its challenge; spending it is one DELETE of the row for this
  session and purpose that has not expired, so a challenge is accepted once, in its session,
  in time, even when two requests race with the same answer.  Every answer spends its
  challenge, good or bad: one try per ceremony.
* **User verification** (PIN or biometric on the authenticator) is required in every
  ceremony, so a passkey stands for the person, not only for the device in their bag.
* **The signature counter.** py_webauthn compares counters before it checks the signature,
  so a forged answer could raise a clone alarm.  We let it verify the signature with the
  counter check off (a stored count of 0), then compare ourselves: an answer with a valid
  signature whose counter does not move forward means a second copy of the private key
  exists (or a captured answer is replayed).  The new count is stored by a conditional
  UPDATE, so of two parallel answers with one count only one is accepted.  Authenticators
  that keep no counter (synced passkeys report 0 for ever) rely on the challenge alone.
* **Attestation** is "none" by default; with `PHIGATE_PASSKEY_MDS_FILE` only the models
  listed there register (`gateway/auth/mds.py`).

Functions here raise `PasskeyRejected` with a reason for the audit log; `auth.service`
records it, counts it towards the lockout like a wrong code, and answers the user with
the same opaque `LoginFailed` (registration: `InvalidInput`).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import timedelta
from typing import cast

from sqlalchemy import CursorResult, delete, func, select, update
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    aaguid_to_string,
    base64url_to_bytes,
    options_to_json_dict,
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_authenticator_data,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from gateway import clock, paging
from gateway.auth import mds
from gateway.auth.models import Passkey, PasskeyChallenge, WebSession
from gateway.config import Settings
from gateway.errors import InvalidInput
from gateway.paging import Page
from gateway.users.models import User

PURPOSES = frozenset({"register", "login", "stepup"})
# A session may have a few ceremonies open at once (two tabs); older ones are dropped.
MAX_OPEN_CHALLENGES = 5
MAX_RESPONSE_CHARS = 16384
RP_NAME = "PHI Gate"
# ES256 first (every platform authenticator), then Ed25519 and RS256 (Windows Hello).
ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]


class PasskeyRejected(Exception):
    """An answer that does not verify; `reason` goes to the audit log, never to the user."""

    def __init__(self, reason: str, passkey: Passkey | None = None, **details):
        super().__init__(reason)
        self.reason = reason
        self.passkey = passkey
        self.details = details


def _hash(challenge: bytes) -> str:
    return hashlib.sha256(challenge).hexdigest()


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in filter(None, passkey.transports.split(",")):
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue  # a transport this library does not know is only a hint: leave it out
    return PublicKeyCredentialDescriptor(id=base64url_to_bytes(passkey.credential_id), transports=transports or None)


# -- challenges -------------------------------------------------------------------


def _issue_challenge(db: Session, settings: Settings, session: WebSession, purpose: str) -> bytes:
    if purpose not in PURPOSES:
        raise InvalidInput("Unknown passkey ceremony.", code="invalid_purpose")
    now = clock.now()
    db.execute(
        delete(PasskeyChallenge)
        .where(PasskeyChallenge.session_id_hash == session.id_hash, PasskeyChallenge.expires_at <= now)
        .execution_options(synchronize_session=False)
    )
    stale = list(
        db.scalars(
            select(PasskeyChallenge.challenge_hash)
            .where(PasskeyChallenge.session_id_hash == session.id_hash)
            .order_by(PasskeyChallenge.expires_at.desc())
            .offset(MAX_OPEN_CHALLENGES - 1)
        )
    )
    if stale:
        db.execute(
            delete(PasskeyChallenge)
            .where(PasskeyChallenge.challenge_hash.in_(stale))
            .execution_options(synchronize_session=False)
        )
    challenge = secrets.token_bytes(32)
    db.add(
        PasskeyChallenge(
            challenge_hash=_hash(challenge),
            session_id_hash=session.id_hash,
            purpose=purpose,
            expires_at=now + timedelta(seconds=settings.passkey_challenge_seconds),
        )
    )
    return challenge


def _spend_challenge(db: Session, session: WebSession, purpose: str, client_data_json: bytes):
    """Spend the challenge the answer names; returns the parsed client data. Single use, this session only."""
    try:
        client_data = parse_client_data_json(client_data_json)
    except Exception:  # noqa: BLE001 - any malformed input is one refusal
        raise PasskeyRejected("malformed_response") from None
    digest = _hash(client_data.challenge)
    spent = cast(
        CursorResult,
        db.execute(
            delete(PasskeyChallenge)
            .where(
                PasskeyChallenge.challenge_hash == digest,
                PasskeyChallenge.session_id_hash == session.id_hash,
                PasskeyChallenge.purpose == purpose,
                PasskeyChallenge.expires_at > clock.now(),
            )
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if spent == 1:
        return client_data
    row = db.get(PasskeyChallenge, digest)
    if row is None:
        raise PasskeyRejected("challenge_not_issued")  # never issued, or spent already (a replay)
    if row.session_id_hash != session.id_hash or row.purpose != purpose:
        # Issued to another session (a relayed answer) or for another ceremony: it stays for its owner.
        raise PasskeyRejected("challenge_of_another_session")
    db.delete(row)
    raise PasskeyRejected("challenge_expired")


def _check_relying_party(settings: Settings, client_data, rp_id_hash: bytes, user_verified: bool) -> None:
    """The checks py_webauthn makes too, made first so that the audit log says which one failed."""
    if client_data.origin != settings.webauthn_origin:
        raise PasskeyRejected("wrong_origin")
    if rp_id_hash != hashlib.sha256(settings.webauthn_rp_id.encode()).digest():
        raise PasskeyRejected("wrong_rp_id")
    if not user_verified:
        raise PasskeyRejected("user_not_verified")


def _parse(parser, value):
    """One of py_webauthn's parsers over browser input: any failure is one `malformed_response`.

    JSON text or objects are refused unread when implausibly large.
    """
    if isinstance(value, str | dict):
        size = len(value) if isinstance(value, str) else len(json.dumps(value, default=str))
        if size > MAX_RESPONSE_CHARS:
            raise PasskeyRejected("malformed_response")
    try:
        return parser(value)
    except Exception:  # noqa: BLE001 - whatever the parser raises, the answer is malformed
        raise PasskeyRejected("malformed_response") from None


# -- registration ----------------------------------------------------------------


def registration_options(db: Session, settings: Settings, user: User, session: WebSession) -> dict:
    """Options for navigator.credentials.create(); the challenge is bound to this session."""
    challenge = _issue_challenge(db, settings, session, "register")
    options = generate_registration_options(
        rp_id=settings.webauthn_rp_id,
        rp_name=RP_NAME,
        user_name=user.username,
        user_id=user.id.encode(),  # an opaque random id: the authenticator learns nothing from it
        user_display_name=user.full_name,
        challenge=challenge,
        timeout=settings.passkey_challenge_seconds * 1000,
        attestation=(
            AttestationConveyancePreference.DIRECT
            if settings.passkey_mds_file
            else AttestationConveyancePreference.NONE
        ),
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.REQUIRED
        ),
        exclude_credentials=[_descriptor(p) for p in list_passkeys(db, user)],
        supported_pub_key_algs=ALGORITHMS,
    )
    return options_to_json_dict(options)


def register(db: Session, settings: Settings, user: User, session: WebSession, response, name: str) -> Passkey:
    """Verify the browser's answer to `registration_options` and store the credential."""
    credential = _parse(parse_registration_credential_json, response)
    attestation = _parse(parse_attestation_object, credential.response.attestation_object)
    client_data = _spend_challenge(db, session, "register", credential.response.client_data_json)
    auth_data = attestation.auth_data
    _check_relying_party(settings, client_data, auth_data.rp_id_hash, auth_data.flags.uv)
    roots = None
    if settings.passkey_mds_file:
        try:
            models = mds.load(settings.passkey_mds_file)
        except mds.MetadataFileInvalid:
            raise PasskeyRejected("metadata_file_invalid") from None
        aaguid = (
            aaguid_to_string(auth_data.attested_credential_data.aaguid) if auth_data.attested_credential_data else ""
        )
        model = models.get(aaguid)
        if model is None:
            raise PasskeyRejected("unknown_authenticator_model", aaguid=aaguid)
        # Self-attestation (no certificate) proves nothing about the model: a certificate chain is required.
        if attestation.fmt == AttestationFormat.NONE or not attestation.att_stmt.x5c:
            raise PasskeyRejected("attestation_missing", aaguid=aaguid)
        roots = {fmt: list(model.roots_pem) for fmt in AttestationFormat}
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=client_data.challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
            require_user_verification=True,
            supported_pub_key_algs=ALGORITHMS,
            pem_root_certs_bytes_by_fmt=roots,
        )
    except Exception:  # noqa: BLE001 - InvalidRegistrationResponse and the parsers' own errors alike
        raise PasskeyRejected("attestation_invalid" if roots else "invalid_response") from None
    credential_id = credential.id
    if db.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)) is not None:
        raise PasskeyRejected("credential_already_registered")
    passkey = Passkey(
        user_id=user.id,
        credential_id=credential_id,
        name=name,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=",".join(t.value for t in credential.response.transports or ())[:200],
        aaguid=verified.aaguid,
        attestation_format=str(getattr(verified.fmt, "value", verified.fmt))[:32],
        backup_eligible=auth_data.flags.be,
        backed_up=verified.credential_backed_up,
        created_at=clock.now(),
    )
    db.add(passkey)
    db.flush()
    return passkey


# -- assertions ------------------------------------------------------------------


def assertion_options(db: Session, settings: Settings, user: User, session: WebSession, purpose: str) -> dict:
    """Options for navigator.credentials.get() listing the user's passkeys; the challenge is bound to this session."""
    passkeys = list_passkeys(db, user)
    if not passkeys:
        raise InvalidInput("You have no passkey yet.", code="no_passkey")
    challenge = _issue_challenge(db, settings, session, purpose)
    options = generate_authentication_options(
        rp_id=settings.webauthn_rp_id,
        challenge=challenge,
        timeout=settings.passkey_challenge_seconds * 1000,
        allow_credentials=[_descriptor(p) for p in passkeys],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json_dict(options)


def verify_assertion(
    db: Session, settings: Settings, user: User, session: WebSession, response, purpose: str
) -> Passkey:
    """Verify an answer to `assertion_options` by one of this user's passkeys and move its counter forward."""
    credential = _parse(parse_authentication_credential_json, response)
    auth_data = _parse(parse_authenticator_data, credential.response.authenticator_data)
    client_data = _spend_challenge(db, session, purpose, credential.response.client_data_json)
    # Scoped to the user: another user's credential answers like an unknown one.
    passkey = db.scalar(select(Passkey).where(Passkey.credential_id == credential.id, Passkey.user_id == user.id))
    if passkey is None:
        raise PasskeyRejected("unknown_credential")
    _check_relying_party(settings, client_data, auth_data.rp_id_hash, auth_data.flags.uv)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=client_data.challenge,
            expected_rp_id=settings.webauthn_rp_id,
            expected_origin=settings.webauthn_origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=0,  # counters compared below, once the signature is known good
            require_user_verification=True,
        )
    except Exception:  # noqa: BLE001
        raise PasskeyRejected("bad_signature", passkey) from None
    stored, presented = passkey.sign_count, verified.new_sign_count
    if (stored or presented) and presented <= stored:
        raise PasskeyRejected("sign_count_regressed", passkey, stored=stored, presented=presented)
    # Without a counter (both 0) only the single-use challenge stands against a replay.
    forward = Passkey.sign_count < presented if presented else Passkey.sign_count == 0
    moved = cast(
        CursorResult,
        db.execute(
            update(Passkey)
            .where(Passkey.id == passkey.id, forward)
            .values(sign_count=presented, last_used_at=clock.now(), backed_up=verified.credential_backed_up)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if moved != 1:
        # A parallel request accepted this count first: the same answer twice.
        raise PasskeyRejected("sign_count_regressed", passkey, stored=stored, presented=presented)
    db.refresh(passkey)
    return passkey


# -- the user's passkeys ---------------------------------------------------------------


# Oldest first, as registered.
ORDER = paging.Order("passkeys", (Passkey.created_at, Passkey.id))


def list_passkeys(db: Session, user: User) -> list[Passkey]:
    """Every passkey of the user: a WebAuthn ceremony names them all."""
    return list(paging.every(lambda cursor: passkey_page(db, user, limit=paging.MAX_LIMIT, cursor=cursor)))


def passkey_page(db: Session, user: User, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None) -> Page:
    """One page of the user's own passkeys (scoped in SQL), oldest first."""
    return ORDER.page(db, select(Passkey).where(Passkey.user_id == user.id), limit=limit, cursor=cursor)


def count(db: Session, user: User) -> int:
    return db.scalar(select(func.count()).select_from(Passkey).where(Passkey.user_id == user.id)) or 0
