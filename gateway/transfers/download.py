"""Sending files: the gate at the moment of the request, then decrypt-as-you-stream.

Each attempt is logged: denied (with its reason), started, then completed, aborted,
failed (with the reason) or, for a range that ends before the file does, the part
delivered; with bytes sent and the file's SHA-256, against both organisations.

A download is a place under the approval's limit, reserved with the check in one
locked step (so parallel requests cannot both take the last place) and given back
when the gateway fails before delivering anything.  A later ranged request of the
same user resumes it from what was already delivered; a completed download is never
resumed, so once the limit is reached no range of the file leaves.  The registry
verifies the first segment before any header is sent: a tampered object fails
cleanly; a later bad segment cuts the connection short (the Content-Length tells the
client it is incomplete).  Every failure says what happened (gateway/sealed/errors.py).
The route streams the prepared body as a bulk stream (gateway/bulk.py).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Generator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from crypto import CryptoError, unseal
from gateway import clock, metrics
from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity
from gateway.audit.service import Actor, record_event
from gateway.auth.service import Principal
from gateway.components import Components
from gateway.errors import Forbidden, GatewayError, NotFound
from gateway.ids import new_id
from gateway.sealed import service as sealed
from gateway.sealed.errors import ObjectDestroyed, SealedError, StorageUnavailable, translate
from gateway.sealed.models import SealedKind
from gateway.transfers import filenames, notices, service
from gateway.transfers.models import Download, DownloadOutcome, Transfer, TransferFile
from gateway.transfers.upload import name_context

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
    body: Generator[bytes, None, None]


def _event(
    db: Session,
    action: Action,
    actor: Actor,
    parties: tuple[str, str] | None,
    transfer_id: str,
    file_id: str,
    outcome: Outcome = Outcome.success,
    severity: Severity = Severity.info,
    **details,
) -> None:
    # Both organisations: the practice as the target, the vendor in the details, so each side's auditors see it.
    record_event(
        db,
        action,
        actor=actor,
        outcome=outcome,
        severity=severity,
        target_type="transfer",
        target_id=transfer_id,
        target_org_id=parties[0] if parties else None,
        details={"file_id": file_id, **({"vendor_id": parties[1]} if parties else {}), **details},
    )


def prepare(
    c: Components, db: Session, principal: Principal, transfer_id: str, file_id: str, range_header: str | None
) -> Prepared:
    """Check the gates, reserve or resume the download, log the start, open the object.

    Raises (after recording it) on any refusal or failure.
    """
    actor = principal.actor
    try:
        transfer = service.find_transfer(db, principal, transfer_id)
        file = service.find_file(transfer, file_id)
    except NotFound:
        # Unknown and foreign ids are denied identically, and both leave a trace that the
        # transfer's own organisations see (a biller trying a transfer not yet approved).
        _event(
            db,
            Action.TRANSFER_DOWNLOAD_DENIED,
            actor,
            service.parties(db, transfer_id),
            transfer_id,
            file_id,
            Outcome.denied,
            reason="not_found",
        )
        db.commit()
        raise
    parties = (transfer.practice_id, transfer.vendor_id)
    try:
        span = parse_range(range_header, file.size)
    except RangeNotSatisfiable:
        _event(
            db,
            Action.TRANSFER_DOWNLOAD_DENIED,
            actor,
            parties,
            transfer.id,
            file.id,
            Outcome.denied,
            reason="bad_range",
            sha256=file.sha256,
        )
        db.commit()
        raise
    start, stop = span or (0, file.size)
    service.lock_downloads_of(db, file)
    resumed = service.resumable_download(
        db, file, principal.user, start, stale_after=timedelta(minutes=c.settings.retention_in_flight_minutes)
    )
    reason = service.download_denial(db, principal, transfer, file, resuming=resumed is not None)
    if reason:
        _event(
            db,
            Action.TRANSFER_DOWNLOAD_DENIED,
            actor,
            parties,
            transfer.id,
            file.id,
            Outcome.denied,
            reason=reason,
            sha256=file.sha256,
        )
        db.commit()
        raise Forbidden(DENIAL_MESSAGES[reason], code=f"download_{reason}")

    now = clock.now()
    if resumed is not None:
        download = resumed
        download.outcome, download.active_at, download.range_end = DownloadOutcome.started, now, stop
        download.resumptions += 1
    else:
        download = Download(
            id=new_id(),
            transfer_id=transfer.id,
            file_id=file.id,
            user_id=principal.user.id,
            started_at=now,
            active_at=now,
            range_start=start,
            range_end=stop,
            delivered_to=start,
            bytes_sent=0,
            outcome=DownloadOutcome.started,
            resumptions=0,
            resumed=False,
        )
        db.add(download)
    _event(
        db,
        Action.TRANSFER_DOWNLOAD_STARTED,
        actor,
        parties,
        transfer.id,
        file.id,
        size=file.size,
        sha256=file.sha256,
        range_start=start,
        range_end=stop,
        resumed=resumed is not None,
        download_id=download.id,
    )
    obj = sealed.owned(db, SealedKind.transfer_file, file.id)
    db.commit()

    tracker = _Tracker(c, actor, transfer, file, download.id, start)
    try:
        if obj is None:
            raise StorageUnavailable(reason="object_not_registered")
        if file.name_sealed is None:  # shredded by retention with the file's data key
            raise ObjectDestroyed()
        name = unseal(c.keys, file.name_sealed, name_context(file.id)).decode()
        body = sealed.open_object(c, obj, span)
    except (SealedError, CryptoError) as exc:
        err = translate(exc)
        tracker.fail(err)
        raise err from None
    except Exception as exc:
        tracker.fail(None, exc)
        raise
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
    return Prepared(status, headers, tracker.wrap(body))


class _Tracker:
    """Records how one request of a download ended, and what that leaves of the download.

    The bytes it delivered extend the download's `delivered_to`; the download is
    completed once that reaches the end of the file, paused (resumable) otherwise,
    and given back (failed) when the gateway failed before anything was delivered.
    """

    def __init__(
        self, c: Components, actor: Actor, transfer: Transfer, file: TransferFile, download_id: str, start: int
    ):
        self.c, self.actor, self.transfer, self.file, self.download_id = c, actor, transfer, file, download_id
        self.start = start
        self.sent = 0
        self.finished = False

    def wrap(self, body: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
        in_flight = metrics.IN_FLIGHT.labels(metrics.DOWNLOAD)
        sent = metrics.TRANSFER_BYTES.labels(metrics.DOWNLOAD)
        in_flight.inc()
        try:
            for chunk in body:
                self.sent += len(chunk)
                sent.inc(len(chunk))
                yield chunk
        except GeneratorExit:
            self._finish(client_left=True)
            raise
        except Exception as exc:
            err = translate(exc) if isinstance(exc, SealedError | CryptoError) else None
            self.fail(err, exc)
            if err is not None and err is not exc:
                raise err from None
            raise
        finally:
            in_flight.dec()
            body.close()
        self._finish()

    def fail(self, err: SealedError | None, exc: BaseException | None = None) -> None:
        if err is not None and err.alert:
            log.error("download of file %s failed its integrity check", self.file.id)
        else:
            log.warning("download of file %s failed: %s", self.file.id, err.reason if err else type(exc).__name__)
        self._finish(failure=err, error=exc)

    def _finish(
        self, *, client_left: bool = False, failure: SealedError | None = None, error: BaseException | None = None
    ) -> None:
        if self.finished:
            return
        self.finished = True
        failed = failure is not None or error is not None
        with self.c.db.transaction() as db:
            download = db.get_one(Download, self.download_id)
            download.bytes_sent = (download.bytes_sent or 0) + self.sent
            before = download.delivered_to if download.delivered_to is not None else download.range_start
            download.delivered_to = max(before, self.start + self.sent)
            if download.delivered_to >= self.file.size:
                download.outcome = DownloadOutcome.completed
            elif failed and download.delivered_to == download.range_start:
                download.outcome = DownloadOutcome.failed  # nothing delivered: the place under the limit is given back
            else:
                download.outcome = DownloadOutcome.aborted  # its user may resume from delivered_to
            common: dict[str, Any] = {
                "bytes_sent": self.sent,
                "sha256": self.file.sha256,
                "download_id": self.download_id,
                "delivered_to": download.delivered_to,
            }
            parties = (self.transfer.practice_id, self.transfer.vendor_id)
            if failed:
                details = (
                    failure.details()
                    if failure is not None
                    else {"reason": type(error).__name__, "error": "internal_error", "alert": False}
                )
                _event(
                    db,
                    Action.TRANSFER_DOWNLOAD_FAILED,
                    self.actor,
                    parties,
                    self.transfer.id,
                    self.file.id,
                    Outcome.failure,
                    failure.severity if failure is not None else Severity.warning,
                    released=download.outcome == DownloadOutcome.failed,
                    **details,
                    **common,
                )
            elif download.outcome == DownloadOutcome.completed:
                _event(
                    db,
                    Action.TRANSFER_DOWNLOAD_COMPLETED,
                    self.actor,
                    parties,
                    self.transfer.id,
                    self.file.id,
                    **common,
                )
                notices.downloaded(db, db.get_one(Transfer, self.transfer.id), by=self.actor.user_id)
            elif client_left:
                _event(
                    db,
                    Action.TRANSFER_DOWNLOAD_ABORTED,
                    self.actor,
                    parties,
                    self.transfer.id,
                    self.file.id,
                    Outcome.failure,
                    **common,
                )
            else:
                _event(
                    db,
                    Action.TRANSFER_DOWNLOAD_RANGE_DELIVERED,
                    self.actor,
                    parties,
                    self.transfer.id,
                    self.file.id,
                    **common,
                )
