"""Every domain's scheduled work, composed for `phigate serve` (gateway.scheduler runs it).

This module sits with the adapters: it is the one place that knows every domain's
job, so the scheduler itself (the core) imports none of them.
"""

from __future__ import annotations

from gateway.audit.checkpoint import AuditJobs
from gateway.leader import Leadership
from gateway.scheduler import Job, Scheduler
from retention.runner import scheduled_run


def serve_jobs(components) -> list[Job]:
    """Every domain's scheduled work for this process, with its configured interval; all of it leader-only."""
    settings = components.settings
    return [
        Job("audit", settings.audit_checkpoint_interval_seconds, AuditJobs(components).tick, leader_only=True),
        # Messages are delivered at commit; this only retries what a sink refused, from one replica.
        Job("outbox", settings.outbox_retry_seconds, components.outbox.deliver, leader_only=True),
        Job("retention", settings.retention_run_interval_seconds, lambda: scheduled_run(components),
            leader_only=True),
    ]


def serve_scheduler(components) -> Scheduler:
    """The scheduler `phigate serve` runs: the domains' jobs, with this process contending for leadership."""
    return Scheduler(serve_jobs(components),
                     Leadership(components.db, lease_seconds=components.settings.scheduler_lease_seconds))
