"""The one in-process scheduler of `phigate serve`: a thread that runs each job at its interval.

Jobs come from the domains (audit checkpoints and alerts, outbox retries, retention runs), listed
by gateway.jobs; a job with interval 0 is off.  Each job waits one interval before its first run, so
short-lived processes (tests, CLI) never see it act, and a failing job never
stops the others.

Among several replicas, a job marked `leader_only` runs only in the replica that
leads (gateway.leader: a lease in the database), so that exactly one replica
signs checkpoints, retries alerts and runs the daily review; when the leader
dies another takes over within one lease.  Leadership is kept by its own thread,
so a long job never lets the lease lapse.  A job that must never overlap with
itself even across a change of leader (retention) still takes its own lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.leader import Leadership

log = logging.getLogger("phigate.scheduler")


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: float
    run: Callable[[], object]  # what it returns is not used
    leader_only: bool = False


class Scheduler:
    def __init__(self, jobs: list[Job], leadership: Leadership | None = None):
        self.jobs = [j for j in jobs if j.interval_seconds > 0]
        if leadership is None and any(j.leader_only for j in self.jobs):
            raise ValueError("leader-only jobs need a Leadership")
        # Contend for leadership only when there is leader-only work to do.
        self.leadership = leadership if any(j.leader_only for j in self.jobs) else None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        if self.leadership is not None:
            self.leadership.start()
        if self.jobs:
            self.thread = threading.Thread(target=self._loop, name="phigate-scheduler", daemon=True)
            self.thread.start()

    def _loop(self) -> None:
        due = {job.name: time.monotonic() + job.interval_seconds for job in self.jobs}
        while not self.stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for job in self.jobs:
                if time.monotonic() >= due[job.name]:
                    if self.may_run(job):
                        self.run_once(job)
                    due[job.name] = time.monotonic() + job.interval_seconds

    def may_run(self, job: Job) -> bool:
        return not job.leader_only or (self.leadership is not None and self.leadership.is_leader())

    @staticmethod
    def run_once(job: Job) -> None:
        try:
            job.run()
        except Exception:  # the next interval tries again
            log.exception("scheduled job %s failed", job.name)

    def shutdown(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
        if self.leadership is not None:
            self.leadership.stop()
