"""Crash points for the kill -9 tests, installed only in the CLI process those tests start.

`PHIGATE_TEST_KILL_AFTER=<step>[:<n>]` makes the process SIGKILL itself right after
the n-th time (default 1st) retention reports `<step>` done (retention.steps: a
committed step, or "storage" after a batch's storage calls and before their result
is committed).  Production code knows nothing of this: the handler below is attached
by `python -c "import tests.support.crash as c; c.install(); ..."`.
"""

from __future__ import annotations

import logging
import os
import signal


class KillAfter(logging.Handler):
    def __init__(self, spec: str):
        super().__init__(logging.DEBUG)
        name, _, nth = spec.partition(":")
        self.step, self.nth, self.seen = name, int(nth or 1), 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "step", None) == self.step:
            self.seen += 1
            if self.seen == self.nth:
                os.kill(os.getpid(), signal.SIGKILL)


def install() -> None:
    spec = os.environ.get("PHIGATE_TEST_KILL_AFTER")
    if not spec:
        return
    steps = logging.getLogger("phigate.retention.steps")
    steps.setLevel(logging.DEBUG)
    steps.propagate = False  # the records stay out of the process's own log
    steps.addHandler(KillAfter(spec))
