"""The allow-list of file types, by extension and by sniffed content.

Both must agree: a renamed executable (`scan.exe` -> `scan.pdf`) fails the
content check, and a real PDF named `.png` fails the extension check.  The
decision is taken on the first bytes, before anything is stored.  `PlaintextMeter`
applies it, and the size limit, to any file as it streams in (transfers, BAA copies).
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway import metrics
from gateway.errors import GatewayError, InvalidInput

SNIFF_BYTES = 8192

# extension -> the content family it must sniff as
EXTENSIONS = {
    "pdf": "pdf",
    "tif": "tiff",
    "tiff": "tiff",
    "png": "png",
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "txt": "text",
    "csv": "text",
    "835": "x12",
    "837": "x12",
    "x12": "x12",
    "edi": "x12",
    "docx": "zip",
    "xlsx": "zip",
    "zip": "zip",
}
DEFAULT_ALLOWED = tuple(EXTENSIONS)


def sniff(head: bytes) -> str | None:
    """The content family of a file from its first bytes, or None when it is none we accept."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if b"\x00" in head:
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the sniff boundary is still text.
        if exc.start < len(head) - 3:
            return None
        text = head[: exc.start].decode("utf-8")
    if any(ord(ch) < 32 and ch not in "\t\r\n\f" for ch in text):
        return None
    if text.lstrip("\ufeff \r\n\t").startswith("ISA"):
        return "x12"
    return "text"


def check(extension: str, head: bytes, allowed: tuple[str, ...]) -> str:
    """Return the file type label, or raise InvalidInput naming what is accepted."""
    from gateway.errors import InvalidInput

    family = EXTENSIONS.get(extension)
    if extension not in allowed or family is None:
        raise InvalidInput(
            f"This type of file is not accepted. Accepted: {', '.join(sorted(allowed))}.", code="file_type_not_allowed"
        )
    found = sniff(head)
    # An X12 file is also text; a .txt/.csv holding X12 is accepted as text.
    if found == family or (family == "text" and found == "x12") or (family == "x12" and found == "x12"):
        return extension
    raise InvalidInput("The file's content does not match its extension.", code="file_content_mismatch")


class FileTooLarge(GatewayError):
    status = 413
    code = "file_too_large"


_UPLOADED = metrics.TRANSFER_BYTES.labels(metrics.UPLOAD)


class PlaintextMeter:
    """Wraps the incoming bytes: checks the type on the first bytes and enforces the size limit.

    (The registry measures the size and SHA-256 it records.)
    """

    def __init__(self, chunks: Iterator[bytes], extension: str, allowed: tuple[str, ...], limit: int):
        self.chunks, self.extension, self.allowed, self.limit = chunks, extension, allowed, limit
        self.size = 0
        self.file_type = ""

    def __iter__(self) -> Iterator[bytes]:
        head = bytearray()
        pending: list[bytes] = []
        for chunk in self.chunks:
            if not self.file_type:
                head += chunk[: SNIFF_BYTES - len(head)]
                pending.append(chunk)
                if len(head) < SNIFF_BYTES:
                    continue
                self.file_type = check(self.extension, bytes(head), self.allowed)
                for held in pending:
                    yield from self._count(held)
                pending = []
                continue
            yield from self._count(chunk)
        if not self.file_type:
            if not head:
                raise InvalidInput("The file is empty.", code="empty_file")
            self.file_type = check(self.extension, bytes(head), self.allowed)
            for held in pending:
                yield from self._count(held)

    def _count(self, chunk: bytes) -> Iterator[bytes]:
        self.size += len(chunk)
        if self.size > self.limit:
            raise FileTooLarge(f"A file may be at most {self.limit} bytes.")
        _UPLOADED.inc(len(chunk))
        yield chunk
