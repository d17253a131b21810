"""The gateway's onshore secrets: small values sealed under the gateway's own KEK.

TOTP secrets are sealed per user with the user id bound as context, so a sealed
value copied onto another user's row does not open.
"""

from __future__ import annotations

from crypto import KeyProvider, seal, unseal

GATEWAY_SECRETS_KEY = "gateway-secrets"


def seal_totp_secret(keys: KeyProvider, user_id: str, secret: str) -> bytes:
    return seal(keys, GATEWAY_SECRETS_KEY, secret.encode(), {"purpose": "totp-secret", "user": user_id})


def open_totp_secret(keys: KeyProvider, user_id: str, sealed: bytes) -> str:
    return unseal(keys, sealed, {"purpose": "totp-secret", "user": user_id}).decode()
