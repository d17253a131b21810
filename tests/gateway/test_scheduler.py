"""The one in-process scheduler: every job at its own interval, a failing job never stops the others."""

import threading

from gateway.scheduler import Job, Scheduler


def test_jobs_run_at_their_intervals_and_failures_are_contained():
    ran = {"ok": 0, "failing": 0}
    enough = threading.Event()

    def ok():
        ran["ok"] += 1
        if ran["ok"] >= 3 and ran["failing"] >= 2:
            enough.set()

    def failing():
        ran["failing"] += 1
        raise RuntimeError("a broken job")

    scheduler = Scheduler([Job("ok", 0.01, ok), Job("failing", 0.02, failing), Job("off", 0, ok)])
    assert [j.name for j in scheduler.jobs] == ["ok", "failing"]  # interval 0 means off
    scheduler.start()
    try:
        assert enough.wait(30)  # a bound on waiting, not a timing assertion
    finally:
        scheduler.shutdown()
    assert ran["ok"] >= 3 and ran["failing"] >= 2
    assert not scheduler.thread.is_alive()


def test_nothing_runs_before_the_first_interval():
    ran = []
    scheduler = Scheduler([Job("slow", 3600, lambda: ran.append(1))])
    scheduler.start()
    scheduler.shutdown()
    assert ran == []
