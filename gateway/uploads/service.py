"""Resumable uploads: create (every gate checked first), append, complete, cancel, expire, make a transfer.

Runs in worker threads; takes plain values and iterators of bytes, never HTTP types.

How bytes become durable (docs/encrypted-object-format.md, "Resumable uploads"):

* the object's data key is generated and wrapped when the upload is created and recorded on
  its registry row, with its stream header on the upload, so any process can go on with it;
* a PATCH seals whole segments as they arrive (crypto.SegmentCipher) and stores them in
  parts of at most `PART_SEGMENTS` segments; a part is kept, and the durable offset moves,
  in one transaction whose update is conditional on the offset it started from, so two
  writers at the same offset cannot both win;
* the offset therefore only ever stands on a segment boundary (or at the end of the file):
  bytes of an unfinished segment are held in memory only and dropped if the request ends,
  and the answer tells the client where to resume.  Nothing unencrypted is ever written;
* the SHA-256 of the plaintext is exact: the process that kept the last part keeps the hash
  state in memory and goes on with it; any other process (another replica, a restart)
  re-derives it by decrypting the kept parts, which it needs the key for anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import cast

from sqlalchemy import CursorResult, delete, func, select, update

from crypto import CryptoError, seal, unseal
from crypto.stream import TAG_SIZE as _TAG
from gateway import clock, filetypes, metrics
from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_event
from gateway.auth.service import Principal
from gateway.components import Components
from gateway.errors import Conflict, GatewayError, InvalidInput, NotFound
from gateway.ids import new_id
from gateway.sealed import service as sealed
from gateway.sealed.errors import IntegrityFailure, SealedError, translate
from gateway.sealed.keys import live_relationship_key, practice_key
from gateway.sealed.models import SealedKind, SealedObject, SealedState
from gateway.transfers import filenames
from gateway.transfers.models import Direction
from gateway.transfers.upload import (
    FileTooLarge,
    Request,
    StoredFile,
    check_request,
    name_context,
    note_context,
    record_transfer,
)
from gateway.uploads.models import Upload, UploadPart, UploadState

log = logging.getLogger("phigate.uploads")

PART_SEGMENTS = 8  # segments per stored part: 8 MiB of ciphertext in memory at most per PATCH
MAX_METADATA_BYTES = 8192
MAX_RECIPIENTS = 100
CHECKSUM_ALGORITHMS = ("sha256",)
_UPLOADED = metrics.TRANSFER_BYTES.labels(metrics.UPLOAD)


class OffsetMismatch(GatewayError):
    status = 409
    code = "upload_offset_mismatch"
    message = "The upload is not at this offset; ask for its offset (HEAD) and resume from there."


class UploadGone(GatewayError):
    status = 410
    code = "upload_expired"
    message = "This upload expired and what it held was destroyed; start again."


class PastLength(GatewayError):
    status = 413
    code = "upload_past_length"
    message = "The data goes past the upload's declared length; nothing past it was kept."


class ChecksumMismatch(GatewayError):
    status = 460
    code = "checksum_mismatch"
    message = "The data does not match its Upload-Checksum; nothing of this request was kept."


class UploadLimit(GatewayError):
    status = 429
    code = "upload_limit"
    message = "You have too many unfinished uploads; finish or cancel some first."


def note_upload_context(upload_id: str) -> dict[str, str]:
    return {"purpose": "upload-note", "upload": upload_id}


# -- metadata ----------------------------------------------------------------------------


def parse_metadata(header: str) -> dict[str, str]:
    """tus `Upload-Metadata` (`key base64,key base64`) as text; control characters refused (the name's are removed)."""
    if len(header) > MAX_METADATA_BYTES:
        raise InvalidInput("Upload-Metadata is too long.", code="invalid_metadata")
    out: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = item.partition(" ")
        if not key.isascii() or not key.replace("_", "").replace("-", "").isalnum() or key in out:
            raise InvalidInput("Upload-Metadata has a malformed or repeated key.", code="invalid_metadata")
        try:
            text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(
                "Upload-Metadata values must be base64 of UTF-8 text.", code="invalid_metadata"
            ) from None
        out[key] = text
    for key, text in out.items():
        if key != "filename" and any(
            ord(ch) < 32 or ord(ch) == 127 for ch in text if ch not in "\n\t" or key != "note"
        ):
            raise InvalidInput("Upload-Metadata values may not hold control characters.", code="invalid_metadata")
    return out


def _request_of(meta: dict[str, str]) -> Request:
    recipients = [r.strip() for r in meta.get("recipients", "").split(",") if r.strip()]
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidInput("Too many recipients.", code="invalid_recipients")
    return Request(
        partner_id=meta.get("partner_id", "")[:64],
        purpose=meta.get("purpose", ""),
        note=meta.get("note", "")[:2000],
        biller_ids=recipients,
    )


# -- finding -----------------------------------------------------------------------------


def find(db, principal: Principal, upload_id: str) -> Upload:
    """The caller's own upload; anyone else's is answered exactly like one that does not exist."""
    up = db.scalar(select(Upload).where(Upload.id == upload_id, Upload.user_id == principal.user.id))
    if up is None or up.state in (UploadState.cancelled, UploadState.used):
        raise NotFound("No such upload.", code="upload_not_found")
    if up.state == UploadState.expired or up.expires_at <= clock.now():
        raise UploadGone()
    return up


def unfinished(db, principal: Principal) -> list[Upload]:
    """The caller's uploads not yet made into a transfer (open or complete), newest first."""
    return list(
        db.scalars(
            select(Upload)
            .where(
                Upload.user_id == principal.user.id,
                Upload.state.in_([UploadState.open, UploadState.complete]),
                Upload.expires_at > clock.now(),
            )
            .order_by(Upload.created_at.desc())
        )
    )


def file_name(c: Components, up: Upload) -> str:
    return unseal(c.keys, up.name_sealed, name_context(up.file_id)).decode()


# -- creating ----------------------------------------------------------------------------


def create(c: Components, principal: Principal, meta: dict[str, str], length: int) -> Upload:
    """Check every gate (BAA, partner, purpose, recipients, type, size, the sender's limits), then begin the object."""
    settings = c.settings
    if length < 1:
        raise InvalidInput("The file is empty.", code="empty_file")
    if length > settings.max_file_size:
        raise FileTooLarge(f"A file may be at most {settings.max_file_size} bytes.")
    name = filenames.sanitise(meta.get("filename", ""))
    extension = filenames.extension(name)
    if extension not in settings.allowed_file_types:
        raise InvalidInput(
            f"This type of file is not accepted. Accepted: {', '.join(sorted(settings.allowed_file_types))}.",
            code="file_type_not_allowed",
        )
    req = _request_of(meta)
    with c.db.sessions() as db:
        direction, practice_id, vendor_id, billers = check_request(db, principal, req)
        held = db.execute(
            select(func.count(), func.coalesce(func.sum(Upload.length), 0)).where(
                Upload.user_id == principal.user.id,
                Upload.state.in_([UploadState.open, UploadState.complete]),
                Upload.expires_at > clock.now(),
            )
        ).one()
        db.commit()
    if held[0] >= settings.upload_max_unfinished:
        raise UploadLimit(
            f"You have {held[0]} unfinished uploads (at most {settings.upload_max_unfinished}); "
            "finish or cancel some first."
        )
    if held[1] + length > settings.upload_max_bytes_held:
        raise UploadLimit(
            f"Your unfinished uploads would hold more than {settings.upload_max_bytes_held} bytes; "
            "finish or cancel some first.",
            code="upload_bytes_limit",
        )
    upload_id, file_id = new_id(), new_id()
    now = clock.now()
    expires = now + timedelta(hours=settings.upload_expiry_hours)
    try:
        key_id = (
            live_relationship_key(c.keys, practice_id, vendor_id)
            if direction == Direction.outbound
            else practice_key(practice_id)
        )
        c.keys.ensure_key(key_id)
        begun = sealed.begin(
            c,
            sealed.upload(
                key_id=key_id, practice_id=practice_id, vendor_id=vendor_id, upload_id=upload_id, file_id=file_id
            ),
            expires,
        )
        name_sealed = seal(c.keys, key_id, name.encode(), name_context(file_id))
        note_sealed = (
            seal(c.keys, key_id, req.note.encode(), note_upload_context(upload_id)) if req.note.strip() else None
        )
    except (CryptoError, SealedError) as exc:
        raise translate(exc) from None
    up = Upload(
        id=upload_id,
        user_id=principal.user.id,
        direction=direction,
        practice_id=practice_id,
        vendor_id=vendor_id,
        partner_id=req.partner_id,
        purpose=" ".join(req.purpose.split()),
        note_sealed=note_sealed,
        recipients=sorted(b.id for b in billers),
        file_id=file_id,
        name_sealed=name_sealed,
        extension=extension,
        file_type="",
        key_id=key_id,
        sealed_id=begun.pending.id,
        stream_header=begun.header,
        length=length,
        received=0,
        state=UploadState.open,
        created_at=now,
        expires_at=expires,
    )
    with c.db.transaction() as db:
        db.add(up)
        record_event(
            db,
            Action.UPLOAD_CREATED,
            actor=principal.actor,
            target_type="upload",
            target_id=upload_id,
            target_org_id=practice_id,
            details={
                "direction": direction.value,
                "vendor_id": vendor_id,
                "length": length,
                "file_id": file_id,
                "expires_at": expires.isoformat(),
            },
        )
    return up


# -- appending ---------------------------------------------------------------------------


class _Hashes:
    """SHA-256 states of uploads this process is writing, by upload id, with the offset they stand at."""

    def __init__(self, size: int = 256):
        self._lock = threading.Lock()
        self._states: OrderedDict[str, tuple[int, object]] = OrderedDict()
        self._size = size

    def take(self, upload_id: str, offset: int):
        with self._lock:
            found = self._states.pop(upload_id, None)
        return found[1] if found is not None and found[0] == offset else None

    def put(self, upload_id: str, offset: int, sha) -> None:
        with self._lock:
            self._states[upload_id] = (offset, sha.copy())
            while len(self._states) > self._size:
                self._states.popitem(last=False)


_HASHES = _Hashes()


@dataclass
class _Part:
    pending: sealed.Pending
    size: int
    first_segment: int
    segments: int
    start: int
    end: int


def checksum_of(header: str | None) -> tuple[str, bytes] | None:
    """`Upload-Checksum: sha256 <base64>` as (algorithm, digest); 400 for anything else."""
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidInput("Unsupported checksum algorithm; use sha256.", code="checksum_algorithm_unsupported")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise InvalidInput("Upload-Checksum is not base64.", code="invalid_checksum") from None
    if len(digest) != 32:
        raise InvalidInput("Upload-Checksum is not a SHA-256 digest.", code="invalid_checksum")
    return algorithm, digest


def append(
    c: Components,
    principal: Principal,
    upload_id: str,
    offset: int,
    chunks: Iterable[bytes],
    *,
    checksum: tuple[str, bytes] | None = None,
    declared: int | None = None,
) -> Upload:
    """Encrypt and keep the bytes sent at `offset`; returns the upload as it now stands.

    Without a checksum, what was sealed is kept even when the body stops part-way (a
    dropped link); with one, the request is all or nothing, as tus requires.
    """
    with c.db.snapshot() as db:
        up = find(db, principal, upload_id)
        obj = db.get_one(SealedObject, up.sealed_id)
    if up.state != UploadState.open or offset != up.received:
        raise OffsetMismatch(headers={"Upload-Offset": str(up.received)})
    if declared is not None and offset + declared > up.length:
        raise PastLength()
    cipher = sealed.cipher(c, obj, up.stream_header)
    sha = _HASHES.take(up.id, offset) or _rederive(c, up, cipher)
    writer = _Writer(c, up, obj, cipher, sha, offset)
    verifier = hashlib.sha256() if checksum is not None else None
    try:
        for chunk in chunks:
            room = up.length - writer.position - len(writer.buffer)
            if verifier is not None:
                verifier.update(chunk)
            writer.feed(chunk[:room], keep=verifier is None)
            if len(chunk) > room:
                raise PastLength()
        if verifier is not None and checksum is not None and verifier.digest() != checksum[1]:
            raise ChecksumMismatch()
        writer.flush(keep=True)
    except BaseException as exc:
        if verifier is None and _is_input_stop(exc):
            # The link dropped or the client sent too much: keep every whole segment that arrived.
            try:
                writer.flush(keep=True)
            except Exception:  # noqa: BLE001 - the request's own error is what the client must see
                log.warning("could not keep what arrived before an upload stopped")
        writer.discard()
        raise
    if writer.position == up.length:
        return complete(c, up.id, sha=writer.sha)
    with c.db.snapshot() as db:
        return db.get_one(Upload, up.id)


def _is_input_stop(exc: BaseException) -> bool:
    return isinstance(exc, PastLength) or not isinstance(exc, GatewayError | SealedError | CryptoError)


class _Writer:
    """Seals whole segments as plaintext arrives, stores them as parts, keeps parts (moves the offset)."""

    def __init__(self, c, up: Upload, obj: SealedObject, cipher, sha, offset: int):
        self.c, self.up, self.obj, self.cipher, self.sha = c, up, obj, cipher, sha
        self.seg = cipher.segment_size
        self.position = offset  # plaintext sealed so far (whole segments, or up to the end)
        self.kept = offset  # plaintext durably kept
        self.buffer = bytearray()  # plaintext of the segment being filled (memory only)
        self.sealed: list[bytes] = []
        self.sealed_from = offset
        self.segments = 0
        self.unkept: list[_Part] = []
        self.file_type = up.file_type

    def feed(self, chunk: bytes, *, keep: bool) -> None:
        self.buffer += chunk
        _UPLOADED.inc(len(chunk))
        while len(self.buffer) >= self.seg or (self.buffer and self.position + len(self.buffer) == self.up.length):
            take = min(self.seg, len(self.buffer))
            plaintext = bytes(self.buffer[:take])
            del self.buffer[:take]
            self._seal(plaintext)
            if self.segments >= PART_SEGMENTS:
                self._store()
                if keep:
                    self._keep()

    def _seal(self, plaintext: bytes) -> None:
        index = self.position // self.seg
        if index == 0:
            # The content sniff, on the first bytes, before anything of them is stored.
            self.file_type = filetypes.check(
                self.up.extension, plaintext[: filetypes.SNIFF_BYTES], self.c.settings.allowed_file_types
            )
        last = self.position + len(plaintext) == self.up.length
        self.sealed += self.cipher.seal(index, plaintext, last)
        self.sha.update(plaintext)
        self.position += len(plaintext)
        self.segments += 1

    def _store(self) -> None:
        if not self.segments:
            return
        part, size = sealed.write_part(self.c, self.obj, self.sealed)
        self.unkept.append(
            _Part(part, size, self.sealed_from // self.seg, self.segments, self.sealed_from, self.position)
        )
        self.sealed, self.segments, self.sealed_from = [], 0, self.position

    def _keep(self) -> None:
        if not self.unkept:
            return
        up, parts = self.up, self.unkept
        with self.c.db.transaction() as db:
            moved = cast(
                CursorResult,
                db.execute(
                    update(Upload)
                    .where(Upload.id == up.id, Upload.received == self.kept, Upload.state == UploadState.open)
                    .values(received=parts[-1].end, file_type=self.file_type)
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            if moved != 1:
                raise OffsetMismatch("Another request moved this upload on; ask for its offset (HEAD) and resume.")
            sealed.hold(db, [p.pending.id for p in parts], up.expires_at)
            for p in parts:
                db.add(
                    UploadPart(
                        sealed_id=p.pending.id,
                        upload_id=up.id,
                        object_key=p.pending.object_key,
                        first_segment=p.first_segment,
                        segments=p.segments,
                        start=p.start,
                        end=p.end,
                        ciphertext_size=p.size,
                    )
                )
        self.kept, self.unkept = parts[-1].end, []
        _HASHES.put(up.id, self.kept, self.sha)

    def flush(self, *, keep: bool) -> None:
        self._store()
        if keep:
            self._keep()

    def discard(self) -> None:
        """Destroy parts stored by this request and not kept (never raises for storage)."""
        sealed.discard(self.c, [p.pending for p in self.unkept])
        self.unkept = []


def _kept_parts(c, upload_id: str) -> list[UploadPart]:
    with c.db.snapshot() as db:
        return list(
            db.scalars(select(UploadPart).where(UploadPart.upload_id == upload_id).order_by(UploadPart.first_segment))
        )


def _rederive(c, up: Upload, cipher) -> object:
    """The SHA-256 state at the upload's offset, from its kept parts (decrypted part by part, in memory)."""
    sha = hashlib.sha256()
    seg = cipher.segment_size
    at = 0
    for part in _kept_parts(c, up.id):
        if part.start != at or part.first_segment * seg != part.start:
            raise IntegrityFailure(reason="upload_parts_not_contiguous")
        # Segment by segment as the store streams it: a part may hold a whole PATCH of hundreds of MiB.
        chunks = sealed.read_ciphertext(c, part.object_key)
        pending = bytearray()
        for index in range(part.first_segment, part.first_segment + part.segments):
            size = min(seg, up.length - index * seg)
            while len(pending) < size + _TAG:
                chunk = next(chunks, None)
                if chunk is None:
                    raise IntegrityFailure(reason="upload_part_corrupt")
                pending += chunk
            try:
                sha.update(cipher.open(index, bytes(pending[: size + _TAG]), index * seg + size == up.length))
            except CryptoError:
                raise IntegrityFailure(reason="upload_part_corrupt") from None
            del pending[: size + _TAG]
        held = sum(min(seg, up.length - i * seg) for i in range(part.first_segment, part.first_segment + part.segments))
        if pending or next(chunks, None) or min(part.end, up.length) != part.start + held:
            raise IntegrityFailure(reason="upload_part_corrupt")
        at = part.end
    if at != up.received:
        raise IntegrityFailure(reason="upload_parts_not_contiguous")
    return sha


# -- completing --------------------------------------------------------------------------


def complete(c: Components, upload_id: str, *, sha=None) -> Upload:
    """Assemble a fully received upload into its object (stored) and destroy its parts; idempotent."""
    with c.db.snapshot() as db:
        up = db.get_one(Upload, upload_id)
        obj = db.get_one(SealedObject, up.sealed_id)
    if up.state != UploadState.open:
        return up
    if up.received != up.length:
        raise InvalidInput("This upload is not finished yet.", code="upload_unfinished")
    parts = _kept_parts(c, up.id)
    if sha is None:
        sha = _rederive(c, up, sealed.cipher(c, obj, up.stream_header))
    written = sealed.assemble(c, obj, up.stream_header, [p.object_key for p in parts], up.length, sha.hexdigest())
    with c.db.transaction() as db:
        done = cast(
            CursorResult,
            db.execute(
                update(Upload)
                .where(Upload.id == up.id, Upload.state == UploadState.open)
                .values(state=UploadState.complete, sha256=written.sha256, completed_at=clock.now())
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if done == 1:
            sealed.commit(db, [written])
            db.execute(delete(UploadPart).where(UploadPart.upload_id == up.id))
            record_event(
                db,
                Action.UPLOAD_COMPLETED,
                actor=Actor(up.user_id),
                target_type="upload",
                target_id=up.id,
                target_org_id=up.practice_id,
                details={"vendor_id": up.vendor_id, "size": up.length, "sha256": written.sha256, "file_id": up.file_id},
            )
    if done == 1:
        _destroy_parts(c, parts)
    with c.db.snapshot() as db:
        return db.get_one(Upload, up.id)


def _destroy_parts(c, parts: list[UploadPart]) -> None:
    """Storage first; a part it cannot remove stays pending (held) and fsck removes it when that lapses."""
    with c.db.snapshot() as db:
        rows = [db.get(SealedObject, p.sealed_id) for p in parts]
    sealed.discard(c, [r for r in rows if r is not None])


# -- ending ------------------------------------------------------------------------------


def cancel(c: Components, principal: Principal, upload_id: str) -> None:
    """The sender ends an upload (tus termination): everything it stored is destroyed."""
    with c.db.snapshot() as db:
        up = find(db, principal, upload_id)
    _end(c, up, UploadState.cancelled, principal.actor, Action.UPLOAD_CANCELLED)


def _end(c, up: Upload, state: UploadState, actor: Actor, action: Action) -> bool:
    with c.db.transaction() as db:
        done = cast(
            CursorResult,
            db.execute(
                update(Upload)
                .where(Upload.id == up.id, Upload.state.in_([UploadState.open, UploadState.complete]))
                .values(state=state, ended_at=clock.now())
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if not done:
            return False
        objects = list(
            db.scalars(
                select(SealedObject).where(
                    SealedObject.owner_id == up.id,
                    SealedObject.kind.in_([SealedKind.upload, SealedKind.upload_part]),
                    SealedObject.state.in_([SealedState.pending, SealedState.stored]),
                )
            )
        )
        for row in objects:
            row.state, row.destroying_at = SealedState.destroying, clock.now()
        db.execute(delete(UploadPart).where(UploadPart.upload_id == up.id))
    removed = left = 0
    for row in objects:
        try:
            sealed.destroy_object(c, row)
            removed += 1
        except SealedError:
            left += 1  # stays `destroying`: fsck --repair finishes it
    with c.db.transaction() as db:
        record_event(
            db,
            action,
            actor=actor,
            target_type="upload",
            target_id=up.id,
            target_org_id=up.practice_id,
            details={
                "vendor_id": up.vendor_id,
                "received": up.received,
                "length": up.length,
                "objects_removed": removed,
                "objects_left_for_fsck": left,
            },
        )
    return True


def expire(c: Components) -> int:
    """Destroy every upload past its expiry that was not made into a transfer (the job runner calls this)."""
    ended = 0
    while True:
        with c.db.snapshot() as db:
            batch = list(
                db.scalars(
                    select(Upload)
                    .where(Upload.state.in_([UploadState.open, UploadState.complete]), Upload.expires_at <= clock.now())
                    .order_by(Upload.expires_at)
                    .limit(100)
                )
            )
        if not batch:
            return ended
        for up in batch:
            ended += _end(c, up, UploadState.expired, Actor(), Action.UPLOAD_EXPIRED)


# -- making a transfer -------------------------------------------------------------------


def make_transfer(c: Components, principal: Principal, upload_ids: list[str]) -> str:
    """One transfer of completed uploads, all or nothing, with the events of a direct upload."""
    ids = list(dict.fromkeys(upload_ids))
    if not ids:
        raise InvalidInput("Name at least one upload.", code="no_files")
    if len(ids) > c.settings.max_files_per_transfer:
        raise InvalidInput(f"At most {c.settings.max_files_per_transfer} files per transfer.", code="too_many_files")
    with c.db.snapshot() as db:
        ups = [find(db, principal, i) for i in ids]
    first = ups[0]
    if any(
        (u.direction, u.practice_id, u.vendor_id, u.partner_id, u.purpose, u.recipients, u.key_id)
        != (
            first.direction,
            first.practice_id,
            first.vendor_id,
            first.partner_id,
            first.purpose,
            first.recipients,
            first.key_id,
        )
        for u in ups
    ):
        raise InvalidInput(
            "The uploads of one transfer must share partner, purpose and recipients.", code="uploads_differ"
        )
    ups = [complete(c, u.id) if u.state == UploadState.open else u for u in ups]
    transfer_id = new_id()
    try:
        note = unseal(c.keys, first.note_sealed, note_upload_context(first.id)).decode() if first.note_sealed else ""
        note_sealed = seal(c.keys, first.key_id, note.encode(), note_context(transfer_id)) if note else None
    except (CryptoError, SealedError) as exc:
        raise translate(exc) from None
    req = Request(partner_id=first.partner_id, purpose=first.purpose, note=note, biller_ids=list(first.recipients))
    with c.db.sessions() as db:
        # The gates again: a BAA ended or a biller left while the bytes were arriving refuses the transfer.
        direction, practice_id, vendor_id, billers = check_request(db, principal, req)
        taken = cast(
            CursorResult,
            db.execute(
                update(Upload)
                .where(Upload.id.in_(ids), Upload.state == UploadState.complete)
                .values(state=UploadState.used, transfer_id=transfer_id, ended_at=clock.now())
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if taken != len(ids):
            db.rollback()
            raise Conflict("An upload is already part of a transfer, or not finished.", code="upload_not_complete")
        for u in ups:
            sealed.adopt(db, u.sealed_id, kind=SealedKind.transfer_file, owner_id=u.file_id)
        record_transfer(
            db,
            principal,
            transfer_id=transfer_id,
            direction=direction,
            practice_id=practice_id,
            vendor_id=vendor_id,
            key_id=first.key_id,
            purpose=first.purpose,
            note_sealed=note_sealed,
            billers=billers,
            files=[_stored_file(u) for u in ups],
        )
        for u in ups:
            record_event(
                db,
                Action.UPLOAD_USED,
                actor=principal.actor,
                target_type="upload",
                target_id=u.id,
                target_org_id=practice_id,
                details={"transfer_id": transfer_id, "file_id": u.file_id},
            )
        db.commit()
    return transfer_id


def _stored_file(up: Upload) -> StoredFile:
    if up.sha256 is None:  # set in the same update that makes an upload complete
        raise RuntimeError(f"upload {up.id} is complete but has no SHA-256")
    return StoredFile(up.file_id, up.name_sealed, up.file_type, up.length, up.sha256)


def expires_header(when: datetime) -> str:
    """RFC 9110 date, for `Upload-Expires`."""
    return format_datetime(when.astimezone(UTC), usegmt=True)
