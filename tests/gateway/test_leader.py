"""Leader election through the database: one leader at a time, takeover when its lease runs out.

Leases are moved by hand (the row's `lease_until` rewritten) rather than waited
for, so these tests never depend on how fast the machine is.  The test with
real processes and SIGKILL is tests/gateway/test_leader_processes.py.
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from gateway.leader import LeaderLease, Leadership, current_leader
from gateway.scheduler import Job, Scheduler


def expire(components, name: str = "scheduler") -> None:
    with components.db.transaction() as db:
        db.execute(
            update(LeaderLease)
            .where(LeaderLease.name == name)
            .values(lease_until=datetime.now(UTC) - timedelta(seconds=1))
        )


def test_one_leader_among_contenders_and_takeover_after_the_lease_runs_out(components):
    a, b, c = (Leadership(components.db, lease_seconds=60, owner=f"host|{n}|x") for n in "abc")
    assert a.step() is True
    assert b.step() is False and c.step() is False
    assert a.step() is True  # renewal keeps the same term
    assert current_leader(components.db).owner == a.owner and a.term == 1

    expire(components)  # a stopped renewing (killed): its lease ran out
    assert b.step() is True
    assert c.step() is False
    row = current_leader(components.db)
    assert row.owner == b.owner and row.term == 2 == b.term

    # The old leader comes back: it must not renew a lease that is no longer its own.
    a._until = 0.0  # its own belief lapsed while it was away (the margin)
    assert a.step() is False
    assert current_leader(components.db).owner == b.owner


def test_a_leader_that_cannot_renew_stops_believing_before_anyone_may_take_over(components, monkeypatch):
    a = Leadership(components.db, lease_seconds=40, owner="host|1|a")
    assert a.step()
    # Its belief ends a quarter lease before the lease the others go by.
    belief = a._until - time.monotonic()
    lease = (current_leader(components.db).lease_until - datetime.now(UTC)).total_seconds()
    assert belief < lease - a.interval + 0.5

    def unreachable(now):
        raise OperationalError("BEGIN", {}, Exception("connection refused"))

    monkeypatch.setattr(a, "_claim", unreachable)
    assert a.step() is True  # a failed renewal keeps the belief it still has...
    a._until = time.monotonic() - 0.001  # ...until the margin is reached
    assert a.step() is False
    assert not a.is_leader()


def test_resigning_hands_over_at_once(components):
    a, b = (
        Leadership(components.db, lease_seconds=60, owner="h|1|a"),
        Leadership(components.db, lease_seconds=60, owner="h|2|b"),
    )
    assert a.step() and not b.step()
    a.resign()
    assert not a.is_leader()
    assert b.step()
    assert current_leader(components.db).owner == b.owner


def test_leader_only_jobs_run_only_on_the_leader(components):
    ran = []
    leading = Leadership(components.db, lease_seconds=60, owner="h|1|a")
    following = Leadership(components.db, lease_seconds=60, owner="h|2|b")
    assert leading.step() and not following.step()
    job = Job("integrate", 1, lambda: ran.append(1), leader_only=True)
    everywhere = Job("local", 1, lambda: ran.append(2))
    on_leader, on_follower = Scheduler([job, everywhere], leading), Scheduler([job, everywhere], following)
    assert on_leader.may_run(job) and on_leader.may_run(everywhere)
    assert not on_follower.may_run(job) and on_follower.may_run(everywhere)
    with pytest.raises(ValueError):
        Scheduler([job])  # leader-only work without an election is a programming error
    # No leader-only job switched on: the process does not contend at all.
    assert Scheduler([everywhere], following).leadership is None
