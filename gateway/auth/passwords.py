"""Password hashing (argon2id) and policy (NIST SP 800-63B: length and a blocklist, no composition rules)."""

from __future__ import annotations

import gzip
import secrets
import unicodedata
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import InvalidInput

MIN_LENGTH = 12
MAX_LENGTH = 128

_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile
# Verified against when the account does not exist, so that an unknown username
# costs the same time as a wrong password and timing reveals nothing.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    data = resources.files("gateway.data").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(line.strip() for line in gzip.decompress(data).decode().splitlines() if line.strip())


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, *, username: str | None = None) -> None:
    """Raise InvalidInput with a reason the user can act on."""
    pw = normalise(password)
    if len(pw) < MIN_LENGTH:
        raise InvalidInput(f"The password must be at least {MIN_LENGTH} characters.", code="password_too_short")
    if len(pw) > MAX_LENGTH:
        raise InvalidInput(f"The password must be at most {MAX_LENGTH} characters.", code="password_too_long")
    if pw.lower() in _common_passwords():
        raise InvalidInput("This password is on a list of commonly used passwords.", code="password_common")
    if username and username.lower() in pw.lower():
        raise InvalidInput("The password must not contain the username.", code="password_contains_username")


def hash_password(password: str) -> str:
    return _hasher.hash(normalise(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Constant-cost check; pass None for an unknown account to burn the same time."""
    if len(password) > MAX_LENGTH * 4:
        password = password[: MAX_LENGTH * 4]
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, normalise(password)) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def one_time_password() -> str:
    """A random first-login password (about 120 bits), which the user must replace."""
    return "-".join(secrets.token_urlsafe(6) for _ in range(4))
