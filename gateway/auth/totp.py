"""TOTP (RFC 6238: 6 digits, 30 s steps, SHA-1 for authenticator compatibility).

Verification finds the matching time step within one step of drift, then the
caller claims it atomically in the database (`UPDATE ... WHERE last_step < :step`),
so a code cannot be accepted twice, not even by two parallel requests.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1
ISSUER = "PHI Gate"


def new_secret() -> str:
    return pyotp.random_base32(32)  # 160 bits, the RFC 4226 recommendation


def normalise_code(code: str) -> str:
    """Authenticator apps show `123 456`; people paste with spaces or dashes."""
    return "".join(ch for ch in code if ch not in " \t-")


def matching_step(secret: str, code: str, at: datetime) -> int | None:
    """The time step whose code equals `code`, within the allowed drift, or None."""
    code = normalise_code(code)
    # ASCII only: str.isdigit() accepts other scripts' digits ("１２３４５６"), which
    # hmac.compare_digest refuses with a TypeError (a 500 instead of a wrong code).
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(at.timestamp()) // STEP_SECONDS
    found = None
    # Check every candidate without early exit so the time taken does not say which matched.
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def code_at(secret: str, at: datetime) -> str:
    """The code for the step containing `at` (demo output and tests)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(at)


def provisioning_uri(secret: str, account: str) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(name=account, issuer_name=ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    """QR code rendered here, server-side: the secret never goes to an outside service."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
