"""Sending files: the gate at the moment of the request, then decrypt-as-you-stream.

Each attempt is logged: denied (with its reason), started, completed or aborted,
with bytes sent and the file's SHA-256.  A segment leaves only after its tag
verified; the first segment is verified before any header is sent, so a
tampered object fails cleanly, and a later bad segment cuts the connection
short (the Content-Length tells the client it is incomplete) and raises an
integrity alert.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import anyio
from sqlalchemy.orm import Session

from crypto import DecryptionError, WrappedKey, decrypt_range, decrypt_stream, unseal
from gateway import clock, metrics
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event
from gateway.auth.service import Principal
from gateway.components import Components
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.transfers import filenames, service
from gateway.transfers.models import Download, Transfer, TransferFile
from gateway.transfers.upload import file_context, name_context

log = logging.getLogger("phigate.transfers")

DENIAL_MESSAGES = {
    "not_recipient": "This file is not addressed to you.",
    "not_approved": "This transfer has not been approved.",
    "revoked": "This transfer was revoked.",
    "window_ended": "The access window of this transfer has ended.",
    "limit_reached": "The download limit of this transfer has been reached.",
    "baa_not_active": "There is no BAA in force between the practice and the vendor.",
    "destroyed": "This file has been destroyed.",
}


class RangeNotSatisfiable(GatewayError):
    status = 416
    code = "range_not_satisfiable"
    message = "The requested range is not satisfiable."


class IntegrityFailure(GatewayError):
    status = 502
    code = "integrity_failure"
    message = "The stored file failed its integrity check and was not sent. The security team has been alerted."


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """A single `bytes=` range as [start, stop), or None for the whole file."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match or (not match.group(1) and not match.group(2)):
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    first, last = match.group(1), match.group(2)
    if first:
        start = int(first)
        stop = min(int(last) + 1, size) if last else size
        if last and int(last) < start:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    else:
        start, stop = max(0, size - int(last)), size
    if start >= size or stop <= start:
        raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, stop


@dataclass
class Prepared:
    """A download that passed every gate; `body` yields verified plaintext."""

    status_code: int
    headers: dict[str, str]
    body: Iterator[bytes]


def _event(db: Session, action: str, actor: Actor, transfer: Transfer | None, transfer_id: str, file_id: str,
           outcome: Outcome = Outcome.success, severity: Severity = Severity.info, **details) -> None:
    record_event(db, action, actor=actor, outcome=outcome, severity=severity, target_type="transfer",
                 target_id=transfer_id, target_org_id=transfer.practice_id if transfer else None,
                 details={"file_id": file_id, **details})


def prepare(c: Components, db: Session, principal: Principal, transfer_id: str, file_id: str,
            range_header: str | None) -> Prepared:
    """Check the gates, log the start, verify the first segment; raise (after logging) on any denial."""
    actor = principal.actor
    try:
        transfer = service.find_transfer(db, principal, transfer_id)
        file = service.find_file(transfer, file_id)
    except NotFound:
        # Unknown and foreign ids are denied identically, and both leave a trace.
        _event(db, "transfer.download.denied", actor, None, transfer_id, file_id, Outcome.denied, reason="not_found")
        db.commit()
        raise
    try:
        span = parse_range(range_header, file.size)
    except RangeNotSatisfiable:
        _event(db, "transfer.download.denied", actor, transfer, transfer.id, file.id, Outcome.denied,
               reason="bad_range", sha256=file.sha256)
        db.commit()
        raise
    resuming = span is not None and span[0] > 0 and service.has_started_download(db, file, principal.user)
    reason = service.download_denial(db, principal, transfer, file, resuming=resuming)
    if reason:
        _event(db, "transfer.download.denied", actor, transfer, transfer.id, file.id, Outcome.denied, reason=reason,
               sha256=file.sha256)
        db.commit()
        raise Forbidden(DENIAL_MESSAGES[reason], code=f"download_{reason}")

    start, stop = span or (0, file.size)
    context = file_context(practice_id=transfer.practice_id, vendor_id=transfer.vendor_id, transfer_id=transfer.id,
                           file_id=file.id)
    download = Download(transfer_id=transfer.id, file_id=file.id, user_id=principal.user.id, started_at=clock.now(),
                        range_start=start, range_end=stop, bytes_sent=0, outcome="started", resumed=resuming)
    db.add(download)
    _event(db, "transfer.download.started", actor, transfer, transfer.id, file.id, size=file.size, sha256=file.sha256,
           range_start=start, range_end=stop, resumed=resuming)
    db.commit()

    tracker = _Tracker(c, actor, transfer, file, download.id)
    try:
        dek = c.keys.unwrap(WrappedKey.from_bytes(file.wrapped_dek), context)
        name = unseal(c.keys, file.name_sealed, name_context(file.id)).decode()
        if span is None:
            ciphertext = c.store.get(file.object_key)
            plaintext = decrypt_stream(ciphertext, dek, context)
        else:
            def fetch(offset: int, length: int):
                return c.store.get(file.object_key, start=offset, end=offset + length)

            plaintext = decrypt_range(fetch, dek, context, start, stop, file.ciphertext_size)
        # Verify the first segment before answering: a tampered object never gets a 200.
        first = next(plaintext, None)
    except Exception as exc:
        tracker.fail(exc)
        raise IntegrityFailure() from None
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Disposition": filenames.content_disposition(name),
        "Content-Length": str(stop - start),
        "Accept-Ranges": "bytes",
        "X-Content-SHA256": file.sha256,
    }
    if span is None:
        headers["Repr-Digest"] = f"sha-256=:{base64.b64encode(bytes.fromhex(file.sha256)).decode()}:"
        status = 200
    else:
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{file.size}"
        status = 206
    return Prepared(status, headers, tracker.wrap(first, plaintext))


class _Tracker:
    """Records how a started download ended: completed, aborted by the client, or failed its integrity check."""

    def __init__(self, c: Components, actor: Actor, transfer: Transfer, file: TransferFile, download_id: str):
        self.c, self.actor, self.transfer, self.file, self.download_id = c, actor, transfer, file, download_id
        self.sent = 0
        self.finished = False

    def wrap(self, first: bytes | None, rest: Iterator[bytes]) -> Iterator[bytes]:
        in_flight = metrics.IN_FLIGHT.labels(metrics.DOWNLOAD)
        sent = metrics.TRANSFER_BYTES.labels(metrics.DOWNLOAD)
        in_flight.inc()
        try:
            if first:
                self.sent += len(first)
                sent.inc(len(first))
                yield first
            for chunk in rest:
                self.sent += len(chunk)
                sent.inc(len(chunk))
                yield chunk
        except GeneratorExit:
            self._finish("aborted", "transfer.download.aborted", Outcome.failure)
            raise
        except Exception as exc:
            self.fail(exc)
            raise
        finally:
            in_flight.dec()
        self._finish("completed", "transfer.download.completed", Outcome.success)

    def fail(self, exc: Exception) -> None:
        integrity = isinstance(exc, DecryptionError)
        log.error("download of file %s failed: %s", self.file.id, type(exc).__name__)
        self._finish("failed", "transfer.download.failed", Outcome.failure,
                     severity=Severity.high if integrity else Severity.warning,
                     reason="integrity_check_failed" if integrity else type(exc).__name__, alert=integrity)

    def _finish(self, outcome: str, action: str, result: Outcome, severity: Severity = Severity.info, **extra) -> None:
        if self.finished:
            return
        self.finished = True
        with self.c.db.transaction() as db:
            download = db.get(Download, self.download_id)
            download.outcome, download.bytes_sent = outcome, self.sent
            _event(db, action, self.actor, self.transfer, self.transfer.id, self.file.id, result, severity,
                   bytes_sent=self.sent, sha256=self.file.sha256, **extra)


async def stream(body: Iterator[bytes]):
    """Drive the sync body from the event loop, one segment per worker-thread hop; close it on disconnect."""
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, body, None)
            if chunk is None:
                return
            yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(body.close)
