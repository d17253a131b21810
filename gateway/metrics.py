"""Prometheus metrics of one gateway process, served on a port of their own, never the public one.

`PHIGATE_METRICS_PORT` starts a small HTTP server (a thread of its own, off the
event loop) answering `GET /metrics`; it listens on `PHIGATE_METRICS_HOST`
(loopback by default) and, when `PHIGATE_METRICS_TOKEN` is set, answers only a
matching `Authorization: Bearer` header.  The reverse proxy never routes to it.

One process, one set of numbers: the deployment runs one uvicorn worker per
container and scales by replicas (PHIGATE_WORKERS > 1 is refused together with
metrics, see gateway.config), so no multiprocess aggregation is needed.

Counters that describe what the audit log records (approvals, denied downloads,
objects destroyed, events appended) are counted from the events themselves when
their transaction commits: one place, and a rolled-back action counts nothing.
Values that live in the database (the age of the newest checkpoint) are read
when Prometheus scrapes, in the metrics server's thread.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import event
from sqlalchemy.orm import Session

from gateway import clock
from gateway.audit.actions import Action

log = logging.getLogger("phigate.metrics")

HTTP_LATENCY = Histogram(
    "phigate_http_request_duration_seconds",
    "HTTP requests by method, route template and status: count and time to the end of the response body",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
TRANSFER_BYTES = Counter("phigate_transfer_bytes_total", "Plaintext bytes of files received and sent", ["direction"])
IN_FLIGHT = Gauge("phigate_transfers_in_flight", "Uploads and downloads streaming now", ["direction"])
AUDIT_EVENTS = Counter("phigate_audit_events_appended_total", "Audit events committed by this process", ["action"])
DECISIONS = Counter(
    "phigate_transfer_decisions_total", "Approvals, rejections and revocations of transfers", ["decision"]
)
DOWNLOADS_DENIED = Counter("phigate_downloads_denied_total", "Download attempts refused at a gate")
OBJECTS_DESTROYED = Counter(
    "phigate_retention_objects_destroyed_total", "Stored files destroyed (retention and offboarding)"
)
LEADER = Gauge("phigate_scheduler_leader", "1 while this process leads the scheduler (runs the leader-only jobs)")

UPLOAD, DOWNLOAD = "upload", "download"
for _direction in (UPLOAD, DOWNLOAD):
    TRANSFER_BYTES.labels(_direction)
    IN_FLIGHT.labels(_direction)
for _decision in ("approved", "rejected", "revoked"):
    DECISIONS.labels(_decision)

# Audit actions that also feed a metric of their own.
_BY_ACTION = {
    Action.TRANSFER_APPROVED: DECISIONS.labels("approved"),
    Action.TRANSFER_REJECTED: DECISIONS.labels("rejected"),
    Action.TRANSFER_REVOKED: DECISIONS.labels("revoked"),
    Action.TRANSFER_DOWNLOAD_DENIED: DOWNLOADS_DENIED,
    Action.RETENTION_OBJECT_DESTROYED: OBJECTS_DESTROYED,
}
_PENDING = "phigate_audit_actions"


def events_appended(db: Session, actions: Iterable[str]) -> None:
    """Called by record_event(): count these actions if and when the session commits."""
    db.info.setdefault(_PENDING, []).extend(actions)


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    for action in session.info.pop(_PENDING, ()):
        AUDIT_EVENTS.labels(action).inc()
        counter = _BY_ACTION.get(action)
        if counter is not None:
            counter.inc()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    session.info.pop(_PENDING, None)


def follow_leadership(leadership) -> None:
    """The leadership gauge reads this process's Leadership at each scrape."""
    LEADER.set_function(lambda: 1.0 if leadership is not None and leadership.is_leader() else 0.0)


class _DatabaseCollector:
    """Values read from the database at scrape time."""

    def __init__(self, components):
        self.components = components

    def collect(self):
        from sqlalchemy import func, select

        from gateway.audit.checkpoint import latest_checkpoint
        from gateway.audit.models import AuditQueued

        age = GaugeMetricFamily(
            "phigate_audit_checkpoint_age_seconds", "Seconds since the newest signed audit checkpoint"
        )
        # Above PHIGATE_AUDIT_INTEGRATE_SECONDS for long: no replica is integrating (no leader, or it is stuck).
        queued = GaugeMetricFamily(
            "phigate_audit_queue_oldest_seconds",
            "Seconds the oldest audit event not yet integrated into the log has waited (0: none waits)",
        )
        try:
            with self.components.db.snapshot() as db:
                cp = latest_checkpoint(db)
                oldest = db.scalar(select(func.min(AuditQueued.occurred_at)))
            if cp is not None:
                age.add_metric([], (clock.now() - cp.created_at).total_seconds())
            queued.add_metric([], 0.0 if oldest is None else max(0.0, (clock.now() - oldest).total_seconds()))
        except Exception as exc:  # noqa: BLE001 - a scrape must answer even with the database down
            log.warning("metrics: audit log figures unavailable: %s", type(exc).__name__)
        yield age
        yield queued


class _Registry:
    """The process's metrics plus the database-backed ones of this app."""

    def __init__(self, components):
        self.database = _DatabaseCollector(components)

    def collect(self):
        yield from REGISTRY.collect()
        yield from self.database.collect()


def wsgi_app(components, token: str = ""):
    registry = _Registry(components)
    expected = f"Bearer {token}".encode() if token else b""

    def app(environ, start_response):
        if environ.get("PATH_INFO") != "/metrics" or environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        offered = environ.get("HTTP_AUTHORIZATION", "").encode()
        # Constant time: the token is a secret shared with Prometheus only.
        if expected and not hmac.compare_digest(offered, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"unauthorized\n"]
        body = generate_latest(registry)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # scrapes are not worth a log line each
        pass


class MetricsServer:
    """`GET /metrics` on its own address, in a thread; started and stopped with the app."""

    def __init__(self, components, host: str, port: int, token: str = ""):
        self.server = make_server(
            host, port, wsgi_app(components, token), server_class=_ThreadingServer, handler_class=_QuietHandler
        )
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, name="phigate-metrics", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("metrics on port %d", self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
