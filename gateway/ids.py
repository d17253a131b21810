"""Opaque random identifiers: nothing in an id reveals order, count or content."""

import secrets


def new_id() -> str:
    """128 random bits, hex: safe in URLs, object keys and audit records."""
    return secrets.token_hex(16)
