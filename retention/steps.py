"""Each committed step of a destruction job, as one DEBUG record of the `phigate.retention.steps` logger.

The point where a crash is most interesting: the crash tests (tests/support/crash.py)
attach a handler here that kills the process at a chosen step, to prove that a rerun
finishes the job exactly once.  A step is a committed transaction, or "storage":
every storage call of a batch returned, nothing of it committed yet.  The records
carry step names only, never ids or PHI, and the gateway logs at INFO, so in
production they cost one level check.
"""

from __future__ import annotations

import logging

log = logging.getLogger("phigate.retention.steps")


def done(step: str) -> None:
    log.debug("retention step done: %s", step, extra={"step": step})
