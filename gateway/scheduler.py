"""The one in-process scheduler of `phigate serve`: a thread that runs each job at its interval.

Jobs come from the domains (audit checkpoints and alerts, outbox retries, retention runs); a job
with interval 0 is off.  Each job waits one interval before its first run, so
short-lived processes (tests, CLI) never see it act, and a failing job never
stops the others.  In a replicated deployment the same jobs can run from a
CronJob instead; the jobs themselves take database locks where two runners
must not overlap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("phigate.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[], None]


class Scheduler:
    def __init__(self, jobs: list[Job]):
        self.jobs = [j for j in jobs if j.interval_seconds > 0]
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.jobs:
            self.thread = threading.Thread(target=self._loop, name="phigate-scheduler", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        due = {job.name: time.monotonic() + job.interval_seconds for job in self.jobs}
        while not self.stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for job in self.jobs:
                if time.monotonic() >= due[job.name]:
                    self.run_once(job)
                    due[job.name] = time.monotonic() + job.interval_seconds

    @staticmethod
    def run_once(job: Job) -> None:
        try:
            job.run()
        except Exception:  # noqa: BLE001 - the next interval tries again
            log.exception("scheduled job %s failed", job.name)

    def shutdown(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)


def serve_jobs(components) -> list[Job]:
    """Every domain's scheduled work for this process, with its configured interval."""
    from gateway.audit.checkpoint import AuditJobs
    from gateway.retention.pages import scheduled_run

    settings = components.settings
    return [
        Job("audit", settings.audit_checkpoint_interval_seconds, AuditJobs(components).tick),
        # Messages are delivered at commit; this only retries what a sink refused.
        Job("outbox", settings.outbox_retry_seconds, components.outbox.deliver),
        Job("retention", settings.retention_run_interval_seconds, lambda: scheduled_run(components)),
    ]
