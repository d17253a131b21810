from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, Enum, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base, UTCDateTime
from gateway.ids import new_id


class SessionStage(str, enum.Enum):
    # Password accepted, TOTP not yet: only the MFA pages are reachable.
    mfa = "mfa"
    # Password accepted, no TOTP enrolled yet: only enrolment is reachable.
    enrol = "enrol"
    # Password and second factor accepted, but a passkey policy applies and the user has none:
    # only passkey registration is reachable.
    passkey = "passkey"
    full = "full"


class WebSession(Base):
    """Server-side session; the cookie carries a random id whose SHA-256 is the key."""

    __tablename__ = "sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    stage: Mapped[SessionStage] = mapped_column(Enum(SessionStage, native_enum=False, length=8))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Step-up: when the user last re-entered a TOTP code in this session.
    reauth_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(256))


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class AddressThrottle(Base):
    """Failures per client address in a fixed window (shared by all replicas); see gateway/auth/throttle.py."""

    __tablename__ = "address_throttles"

    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    # Failed sign-ins and unauthenticated refusals counted against the limit.
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # Of those, how many have no event of their own (they go into the window's closing event).
    unrecorded: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Requests refused by the limit itself (429), never looked at further.
    refused: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class Passkey(Base):
    """A WebAuthn credential of one user: what the server needs to verify its assertions, no secret."""

    __tablename__ = "passkeys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # base64url of the raw credential id (at most 1023 bytes by the specification).
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # COSE_Key, as registered
    # The authenticator's signature counter as last seen; an assertion that does not move it
    # forward comes from a cloned authenticator (or a replay), unless both are zero.
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    transports: Mapped[str] = mapped_column(String(200), default="")  # comma-separated hints for the browser
    aaguid: Mapped[str] = mapped_column(String(36))  # the authenticator model (all zeros when not attested)
    attestation_format: Mapped[str] = mapped_column(String(32))
    backup_eligible: Mapped[bool] = mapped_column(Boolean, default=False)  # a synced (multi-device) passkey
    backed_up: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PasskeyChallenge(Base):
    """A challenge handed to a browser for one ceremony: bound to the session, single-use, short-lived.

    Only its SHA-256 is kept: the row proves the challenge was issued to this session for this
    purpose; deleting it is what spends it.
    """

    __tablename__ = "passkey_challenges"

    challenge_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    session_id_hash: Mapped[str] = mapped_column(ForeignKey("sessions.id_hash", ondelete="CASCADE"), index=True)
    purpose: Mapped[str] = mapped_column(String(16))  # register, login or stepup
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PasskeyPolicy(Base):
    """An administrator's rule: users of this role, or of this organisation, must sign in with a passkey."""

    __tablename__ = "passkey_policies"
    __table_args__ = (UniqueConstraint("scope", "value", name="uq_passkey_policies_scope_value"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    scope: Mapped[str] = mapped_column(String(8))  # "role" or "org"
    value: Mapped[str] = mapped_column(String(64))  # a role name or an organisation id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(32), nullable=True)
