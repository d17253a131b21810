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
    # On a thread of its own, so that its interval is a bound no other job's long run can stretch.
    own_thread: bool = False


class Scheduler:
    def __init__(self, jobs: list[Job], leadership: Leadership | None = None):
        self.jobs = [j for j in jobs if j.interval_seconds > 0]
        if leadership is None and any(j.leader_only for j in self.jobs):
            raise ValueError("leader-only jobs need a Leadership")
        # Contend for leadership only when there is leader-only work to do.
        self.leadership = leadership if any(j.leader_only for j in self.jobs) else None
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.leadership is not None:
            self.leadership.start()
        shared = [j for j in self.jobs if not j.own_thread]
        if shared:
            self.thread = threading.Thread(target=self._loop, args=(shared,), name="phigate-scheduler", daemon=True)
            self.thread.start()
        for job in self.jobs:
            if job.own_thread:
                thread = threading.Thread(target=self._loop, args=([job],), name=f"phigate-{job.name}", daemon=True)
                self.threads.append(thread)
                thread.start()

    def _loop(self, jobs: list[Job]) -> None:
        due = {job.name: time.monotonic() + job.interval_seconds for job in jobs}
        while not self.stop.wait(max(0.0, min(due.values()) - time.monotonic())):
            for job in jobs:
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
        for thread in [self.thread, *self.threads]:
            if thread is not None:
                thread.join(timeout=5)
        if self.leadership is not None:
            self.leadership.stop()
