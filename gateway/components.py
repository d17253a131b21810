"""The real components one gateway process works with, chosen by configuration."""

from __future__ import annotations

import logging
from functools import cached_property

from sqlalchemy import text

from gateway.bulk import BulkStreams
from gateway.config import Settings
from gateway.db import Database, PoolSettings

log = logging.getLogger("phigate")


class Components:
    """Settings, database, outbox, bulk streams, key provider and object store; providers open on first use."""

    def __init__(self, settings: Settings):
        from gateway.audit import sequencer as audit_sequencer
        from gateway.outbox import Outbox

        self.settings = settings
        self.db = Database(
            settings.effective_database_url,
            PoolSettings(
                size=settings.db_pool_size,
                max_overflow=settings.db_max_overflow,
                timeout=settings.db_pool_timeout,
                sqlite_busy_timeout=settings.sqlite_busy_timeout,
            ),
        )
        # Installed before any session commits: every commit of this process delivers its own messages.
        # Channels are added by the adapters that compose a process (gateway.auditor.alerts.install):
        # a topic with no channel here waits in the outbox for a process that has one.
        self.outbox = Outbox(self.db, {})
        self.outbox.install()
        # Every commit that queued audit events tries to integrate them at once (gateway/audit/sequencer.py).
        audit_sequencer.install(self.db)
        self.bulk = BulkStreams(settings.bulk_streams)

    @cached_property
    def keys(self):
        from crypto import open_key_provider

        s = self.settings
        return open_key_provider(
            s.effective_key_provider_url,
            onshore_regions=s.onshore_regions,
            kms_timeouts=(s.kms_connect_timeout, s.kms_read_timeout, s.kms_max_attempts),
        )

    @cached_property
    def store(self):
        from storage import open_object_store

        return open_object_store(
            self.settings.effective_storage_url,
            onshore_regions=self.settings.onshore_regions,
            onshore_endpoints=self.settings.onshore_endpoints,
        )

    def readiness(self) -> dict[str, str]:
        """Each dependency's state: "ok" or a short reason (no secrets, no paths)."""
        out = {}
        try:
            with self.db.reader.connect() as conn:
                conn.execute(text("SELECT 1"))
            out["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - report, do not crash the probe
            log.warning("readiness: database: %s", type(exc).__name__)
            out["database"] = "unreachable"
        for name in ("store", "keys"):
            try:
                getattr(self, name).check()
                out["storage" if name == "store" else "key_provider"] = "ok"
            except Exception as exc:  # noqa: BLE001
                log.warning("readiness: %s: %s", name, type(exc).__name__)
                self.__dict__.pop(name, None)  # reopen on the next probe
                out["storage" if name == "store" else "key_provider"] = "unreachable"
        return out

    def close(self) -> None:
        self.db.dispose()
