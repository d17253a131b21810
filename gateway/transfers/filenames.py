"""File names as users give them, made safe to store and to send back.

A name is PHI (it often holds a patient's name): it is sealed in the database
and never reaches logs, object keys, URLs or audit events.  Here it is only made
harmless: no path parts, no control or bidi-override characters, NFC, at most
255 bytes of UTF-8.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

from gateway.errors import InvalidInput

MAX_BYTES = 255


def sanitise(raw: str) -> str:
    """The safe form of a user-supplied file name, or InvalidInput."""
    name = unicodedata.normalize("NFC", raw or "")
    # Keep only the last path component, whichever separator the client used.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    # Cc: control characters; Cf: format characters, which include the bidi
    # overrides (U+202A-U+202E, U+2066-U+2069) used to disguise extensions.
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp"))
    name = name.strip().strip(".").strip()
    if not name:
        raise InvalidInput("The file has no usable name.", code="invalid_file_name")
    if len(name.encode()) > MAX_BYTES:
        raise InvalidInput(f"File names are limited to {MAX_BYTES} bytes.", code="file_name_too_long")
    return name


def extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def content_disposition(name: str) -> str:
    """RFC 6266 `attachment`: an ASCII fallback plus the exact name as RFC 5987 `filename*`."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;%' else "_" for ch in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
