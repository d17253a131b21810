"""Each committed step of a destruction job, as one DEBUG record of the `phigate.retention.steps` logger.

An operator follows a long job at PHIGATE_LOG_LEVEL=DEBUG; the crash tests
(tests/support/crash.py) attach a handler here that kills the process at a chosen
step, to prove a rerun finishes the job exactly once.  A step is a committed
transaction, or "storage": every storage call of a batch returned, nothing of it
committed yet.  Records carry step names only, never ids or PHI.
"""

from __future__ import annotations

import logging

log = logging.getLogger("phigate.retention.steps")


def done(step: str) -> None:
    log.debug("retention step done: %s", step, extra={"step": step})
