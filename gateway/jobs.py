"""Every domain's scheduled work, composed for `phigate serve` (gateway.scheduler runs it).

This module sits with the adapters: it is the one place that knows every domain's
job, so the scheduler itself (the core) imports none of them.
"""

from __future__ import annotations

from gateway.audit.sequencer import integrate
from gateway.auditor.jobs import AuditJobs
from gateway.auth import throttle
from gateway.leader import Leadership
from gateway.notifications import service as notifications
from gateway.scheduler import Job, Scheduler
from gateway.transfers import notices
from gateway.uploads.service import expire
from retention.runner import scheduled_run


def serve_jobs(components) -> list[Job]:
    """Every domain's scheduled work for this process, with its configured interval; all of it leader-only."""
    settings = components.settings
    return [
        # On PostgreSQL every queued event reaches the log within this interval (gateway/audit/sequencer.py);
        # on a thread of its own, so that no long job (a checkpoint, retention) stretches that bound.
        Job(
            "audit-integrate",
            settings.audit_integrate_seconds,
            lambda: integrate(components.db),
            leader_only=True,
            own_thread=True,
        ),
        Job("audit", settings.audit_checkpoint_interval_seconds, AuditJobs(components).tick, leader_only=True),
        # Messages are delivered at commit; this only retries what a sink refused, from one replica.
        Job("outbox", settings.outbox_retry_seconds, components.outbox.deliver, leader_only=True),
        Job("retention", settings.retention_run_interval_seconds, lambda: scheduled_run(components), leader_only=True),
        # Closes ended address windows of the refusal ledger with one event each (gateway/auth/throttle.py).
        Job("address-windows", 60, lambda: close_address_windows(components), leader_only=True),
        Job("uploads", settings.upload_expiry_interval_seconds, lambda: expire(components), leader_only=True),
        Job("notifications", settings.notify_interval_seconds, lambda: notify(components), leader_only=True),
    ]


def notify(components) -> int:
    """Reminders of access that ends within a day, then the daily digests that are due; both leave by the outbox."""
    with components.db.transaction() as db:
        reminded = notices.remind_expiring(db)
    return reminded + notifications.run(components)


def close_address_windows(components) -> int:
    """The refusal ledger's sweep: one event per ended address window with what it counted."""
    with components.db.transaction() as db:
        return throttle.close_expired_windows(db, components.settings)


def serve_scheduler(components) -> Scheduler:
    """The scheduler `phigate serve` runs: the domains' jobs, with this process contending for leadership."""
    return Scheduler(
        serve_jobs(components), Leadership(components.db, lease_seconds=components.settings.scheduler_lease_seconds)
    )
