"""Small helpers shared by the backends (private)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .errors import DeletionBlocked, InvalidRange, StorageError

if TYPE_CHECKING:
    from .types import DestroyReport


def utcnow() -> datetime:
    return datetime.now(UTC)


def check_range_args(start: object, end: object) -> tuple[int, int | None]:
    """Validate the caller's range before any I/O (types, sign, order)."""
    if isinstance(start, bool) or not isinstance(start, int):
        raise InvalidRange("range start must be an int")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int)):
        raise InvalidRange("range end must be an int or None")
    if start < 0:
        raise InvalidRange("range start must be >= 0")
    if end is not None and end < start:
        raise InvalidRange("range end must be >= start")
    return start, end


def resolve_range(start: int, end: int | None, size: int) -> tuple[int, int]:
    """Clamp ``[start, end)`` to an object of ``size`` bytes.

    ``end`` past the object is clamped (like a Python slice), so ``end=None`` and any
    ``end >= size`` both mean "to the end". ``start == size`` is an empty range.
    ``start > size`` is an error: it means the caller's idea of the object is wrong.
    """
    if start > size:
        raise InvalidRange(f"range start {start} is past the end of the object ({size} bytes)")
    stop = size if end is None else min(end, size)
    return start, stop


class ChunkSource:
    """Wraps the caller's chunk iterator and remembers an exception it raised.

    A put must re-raise the caller's own failure unchanged (a client that went away
    is not a storage outage), while translating failures of the backend itself.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.error: BaseException | None = None

    def __iter__(self) -> ChunkSource:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self._it)
        except StopIteration:
            raise
        except BaseException as exc:
            self.error = exc
            raise
        if isinstance(chunk, bytes):
            return chunk
        if isinstance(chunk, bytearray | memoryview):
            # The caller may reuse its buffer after we move on: snapshot it.
            return bytes(chunk)
        raise TypeError(f"chunks must be bytes-like, not {type(chunk).__name__}")


def settle(report: DestroyReport) -> DestroyReport:
    """Return a destroy report only if nothing remains; otherwise raise, never claim success."""
    if report.blocked:
        raise DeletionBlocked(report.key, report)
    if report.proof is None or not report.proof.absent:
        raise StorageError(
            f"object {report.key} is still present after destroy: {'; '.join(report.proof.checks if report.proof else ())}"
        )
    return report
