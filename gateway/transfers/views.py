"""Shaping transfers for callers: decrypted names only for the parties, never for auditors or admins."""

from __future__ import annotations

import logging

from crypto import CryptoError, unseal
from gateway.auth.service import Principal
from gateway.transfers.activity import FileDownload
from gateway.transfers.models import Transfer
from gateway.transfers.schemas import DownloadOut, FileOut, TransferDetail, TransferOut
from gateway.transfers.upload import name_context, note_context
from gateway.users.models import Role

log = logging.getLogger("phigate.transfers")


def may_read_names(principal: Principal, transfer: Transfer | None = None) -> bool:
    # The same for every transfer (the lists ask once per page). Auditors and administrators see ids, sizes and hashes: never names or notes (they can hold PHI).
    return principal.user.role not in (Role.auditor, Role.admin)


def file_name(keys, file) -> str | None:
    if file.name_sealed is None:
        return None
    try:
        return unseal(keys, file.name_sealed, name_context(file.id)).decode()
    except CryptoError:
        log.warning("file name of %s cannot be opened (key destroyed?)", file.id)
        return None


def note(keys, principal: Principal, transfer: Transfer) -> str | None:
    if transfer.note_sealed is None or not may_read_names(principal, transfer):
        return None
    try:
        return unseal(keys, transfer.note_sealed, note_context(transfer.id)).decode()
    except CryptoError:
        return None


def file_out(keys, f, names: bool) -> FileOut:
    """One file of a transfer (an ORM row or a column row of the lists); its name only where `names` allows."""
    return FileOut(
        id=f.id,
        name=file_name(keys, f) if names else None,
        file_type=f.file_type,
        size=f.size,
        sha256=f.sha256,
        state=f.state.value,
    )


def transfer_out(keys, principal: Principal, transfer: Transfer) -> TransferOut:
    names = may_read_names(principal, transfer)
    return TransferOut(
        id=transfer.id,
        direction=transfer.direction,
        status=transfer.status,
        practice_id=transfer.practice_id,
        vendor_id=transfer.vendor_id,
        purpose=transfer.purpose,
        created_by=transfer.created_by,
        created_at=transfer.created_at,
        decided_at=transfer.decided_at,
        access_ends_at=transfer.access_ends_at,
        download_limit=transfer.download_limit,
        recipient_ids=sorted(transfer.recipient_ids),
        emergency=transfer.emergency_reason is not None,
        files=[file_out(keys, f, names) for f in transfer.files],
    )


def transfer_detail(
    keys, principal: Principal, transfer: Transfer, downloads: list[FileDownload] | None
) -> TransferDetail:
    """The transfer with who downloaded which file (`activity.downloads_of`), for its own endpoint."""
    out = transfer_out(keys, principal, transfer)
    return TransferDetail(
        **out.model_dump(),
        downloads=None
        if downloads is None
        else [
            DownloadOut(
                file_id=d.file_id, user_id=d.user_id, user=d.user_name, at=d.at, bytes=d.bytes, complete=d.complete
            )
            for d in downloads
        ],
    )
