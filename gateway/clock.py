"""The gateway's one source of time, replaceable in tests (idle and absolute timeouts)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

_source: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731


def now() -> datetime:
    """Current UTC time, timezone-aware."""
    return _source()


def set_source(source: Callable[[], datetime] | None) -> None:
    """Install a clock (tests); None restores the system clock."""
    global _source
    _source = source or (lambda: datetime.now(UTC))
