"""The auditor's scheduled work (run by gateway.scheduler): checkpoints, alert rules, the daily access review."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from gateway import clock
from gateway.audit.checkpoint import maybe_checkpoint
from gateway.audit.service import Actor
from gateway.auditor import alerts, review

log = logging.getLogger("phigate.audit")


class AuditJobs:
    """The audit log's scheduled work (run by gateway.scheduler): checkpoints, alerts, daily review."""

    def __init__(self, components):
        self.components = components
        self._last_review: datetime | None = None

    def tick(self) -> None:
        for job in (lambda: maybe_checkpoint(self.components), lambda: alerts.run(self.components), self._daily_review):
            try:
                job()
            except Exception:
                log.exception("audit scheduler job failed")

    def _daily_review(self) -> None:
        now = clock.now()
        if self._last_review is None or now - self._last_review >= timedelta(days=1):
            review.disable_inactive(self.components, Actor.system())
            self._last_review = now
