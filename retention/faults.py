"""Crash points for the kill -9 tests.

`PHIGATE_TEST_KILL_AFTER=<step>[:<n>]` makes the process SIGKILL itself right after
the n-th time (default 1st) it completes `<step>` (a committed step, or "storage"
after a storage call and before its result is committed).  Ignored when
PHIGATE_ENV=production, so a stray variable can never hurt a real run.
"""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def after(step: str) -> None:
    spec = os.environ.get("PHIGATE_TEST_KILL_AFTER")
    if not spec or os.environ.get("PHIGATE_ENV") == "production":
        return
    name, _, nth = spec.partition(":")
    if name != step:
        return
    _counts[step] = _counts.get(step, 0) + 1
    if _counts[step] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
