"""Resumable uploads: create (every gate checked first), append, complete, cancel, expire, make a transfer.

Runs in worker threads; takes plain values and iterators of bytes, never HTTP types.

How bytes become durable (docs/encrypted-object-format.md, "Resumable uploads"):

* the object's data key is generated and wrapped when the upload is created and recorded on
  its registry row, with its stream header on the upload, and the store begins assembling
  the object (S3: a multipart upload whose UploadId is on the upload; local: a file written
  in place), so any process can go on with it;
* a PATCH takes the upload's writer lease (one writer at a time: parts land at fixed
  places), seals whole segments as they arrive (crypto.SegmentCipher) and writes them into
  the object as parts of at most `PART_SEGMENTS` segments; a part is kept, and the durable
  offset moves, in one transaction whose update is conditional on the offset it started
  from and on the lease;
* the offset therefore only ever stands on a segment boundary (or at the end of the file):
  bytes of an unfinished segment are held in memory only and dropped if the request ends,
  and the answer tells the client where to resume.  On S3 a request's tail shorter than a
  part may be (5 MiB) is kept as a staged object of sealed segments until the next request
  starts its first part with it.  Nothing unencrypted is ever written;
* completion makes the parts the object without copying a byte (CompleteMultipartUpload;
  locally the trailer written and the file renamed);
* the SHA-256 of the plaintext is exact: the process that kept the last part keeps the hash
  state in memory and goes on with it; when a PATCH lands on another process (a replica, a
  restart) the hash is re-derived at completion by reading the object once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert, select, update
from sqlalchemy.orm import Session

from crypto import CryptoError, seal, unseal
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
from gateway.uploads.models import AssemblyPart, Upload, UploadPart, UploadState
from storage import AssemblyPart as StorePart

log = logging.getLogger("phigate.uploads")

PART_SEGMENTS = 8  # segments per part written: 8 MiB of ciphertext in memory at most per PATCH
LEASE = timedelta(seconds=60)  # how long a writer that died keeps others from an upload
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


class UploadLocked(GatewayError):
    status = 423
    code = "upload_locked"
    message = "Another request is writing this upload; wait a moment, ask for its offset (HEAD) and resume."


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
    if up.state == UploadState.offboarded:
        raise UploadGone(
            "This upload was ended when its vendor was offboarded; what it held was destroyed.",
            code="upload_offboarded",
        )
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
        assembly=begun.assembly,
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


def _update(sha, pieces: list[memoryview]) -> None:
    for p in pieces:
        sha.update(p)


class _PlaintextHash:
    """The plaintext's SHA-256, fed one sealed segment at a time and hashed in a helper thread
    while the request's thread encrypts and writes that segment (hashlib releases the
    interpreter lock), as a direct upload hashes beside its encryption; one segment in
    flight, in order.  `at` is the plaintext offset the state stands at."""

    def __init__(self, sha, offset: int):
        self._sha, self.at = sha, offset
        self._pending: Future | None = None

    def feed(self, pieces: list[memoryview], size: int) -> None:
        """Hash one segment's pieces (views of immutable request bytes, safe to read from another thread)."""
        self.drain()
        self._pending = sealed.PLAINTEXT_HASHING.submit(_update, self._sha, pieces)
        self.at += size

    def state(self):
        """The hash of everything fed so far, once the segment in flight is done."""
        self.drain()
        return self._sha

    def drain(self) -> None:
        """Wait for the segment in flight."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()


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


# -- the writer's lease ------------------------------------------------------------------


class _Lease:
    """One request writes an upload at a time: parts go into the object itself at fixed places,
    so two writers at one offset would overwrite each other's bytes before either could lose
    the race on the offset.  Claimed on the upload row, renewed as parts are kept, released
    at the end; a writer that died holds it until `LEASE` has passed."""

    def __init__(self, c, up: Upload, offset: int, db: Session | None = None):
        """Claim the lease, in the caller's transaction `db` if given (it then holds once that commits)."""
        self.c, self.upload_id, self.id = c, up.id, new_id()
        if db is None:
            with c.db.transaction() as own:
                self._claim(own, up, offset)
        else:
            self._claim(db, up, offset)
        self.renewed = time.monotonic()
        self.held = True

    def _claim(self, db: Session, up: Upload, offset: int) -> None:
        now = clock.now()
        claimed = cast(
            CursorResult,
            db.execute(
                update(Upload)
                .where(
                    Upload.id == up.id,
                    Upload.state == UploadState.open,
                    Upload.received == offset,
                    (Upload.writer.is_(None)) | (Upload.writer_until < now),
                )
                .values(writer=self.id, writer_until=now + LEASE)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if not claimed:
            current = db.get_one(Upload, up.id)
            db.refresh(current)
            if current.state != UploadState.open or current.received != offset:
                raise OffsetMismatch(headers={"Upload-Offset": str(current.received)})
            raise UploadLocked(headers={"Upload-Offset": str(current.received)})
        # What is kept so far, read under the lease (so nobody adds to it meanwhile), in the same transaction.
        self.parts = db.execute(
            select(
                func.count(),
                func.coalesce(func.sum(AssemblyPart.size), 0),
                func.coalesce(func.sum(AssemblyPart.end - AssemblyPart.start), 0),
            ).where(AssemblyPart.upload_id == up.id)
        ).one()
        # Only a store with a minimum part size (S3) ever has a staged tail: `_Writer` stages one only there.
        self.tail = (
            db.execute(
                select(
                    UploadPart.sealed_id,
                    UploadPart.object_key,
                    UploadPart.segments,
                    UploadPart.start,
                    UploadPart.end,
                    UploadPart.ciphertext_size,
                ).where(UploadPart.upload_id == up.id)
            ).first()
            if self.c.store.min_part_size > 1
            else None
        )

    def values(self) -> dict:
        """Columns that renew the lease, for the update that keeps parts."""
        self.renewed = time.monotonic()
        return {"writer_until": clock.now() + LEASE}

    def renew_if_due(self) -> None:
        """Before storing a part: make sure the lease is still ours, with time to spare."""
        if time.monotonic() - self.renewed < LEASE.total_seconds() / 3:
            return
        with self.c.db.transaction() as db:
            renewed = cast(
                CursorResult,
                db.execute(
                    update(Upload)
                    .where(Upload.id == self.upload_id, Upload.writer == self.id, Upload.state == UploadState.open)
                    .values(**self.values())
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
        if not renewed:
            raise OffsetMismatch("Another request moved this upload on; ask for its offset (HEAD) and resume.")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        with self.c.db.transaction() as db:
            db.execute(
                update(Upload)
                .where(Upload.id == self.upload_id, Upload.writer == self.id)
                .values(writer=None, writer_until=None)
                .execution_options(synchronize_session=False)
            )


# -- appending ---------------------------------------------------------------------------


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
    # One transaction finds the caller's upload and claims its lease: a PATCH costs two in all (this and its keep).
    with c.db.transaction() as db:
        up = find(db, principal, upload_id)
        obj = db.get_one(SealedObject, up.sealed_id)
        if up.state != UploadState.open or offset != up.received:
            raise OffsetMismatch(headers={"Upload-Offset": str(up.received)})
        if declared is not None and offset + declared > up.length:
            raise PastLength()
        if up.assembly is None:  # begun before uploads were assembled in place: cannot go on
            raise UploadGone()
        lease = _Lease(c, up, offset, db)
    try:
        cipher = sealed.kept_cipher(c, obj, up.stream_header)
        # The hash goes on in the process that kept the last part; elsewhere it is re-derived at completion.
        sha = _HASHES.take(up.id, offset) or (hashlib.sha256() if offset == 0 else None)
        writer = _Writer(c, up, obj, cipher, _PlaintextHash(sha, offset) if sha is not None else None, offset, lease)
        body = _Body(chunks, up.length - offset, checksum)
        try:
            writer.run(body, keep=checksum is None)
            if body.stopped is None:
                writer.keep()  # with a checksum: all of the request, now that it matched
        except BaseException:
            writer.discard()
            raise
        if body.stopped is not None:
            writer.discard()  # with a checksum nothing of the request was kept; without one, this is a no-op
            raise body.stopped
        if writer.position == up.length:
            return complete(c, up.id, sha=writer.hash_at(up.length), lease=lease)
    finally:
        lease.release()
    up.received, up.file_type = writer.kept, writer.file_type  # as the last keep wrote them
    return up


class _Body:
    """The request's plaintext, bounded by the upload's length and checked against its checksum.

    A body that stops early (the link dropped), goes past the length or does not match
    its checksum ends the iteration quietly and is recorded in `stopped`: the writer
    keeps the whole segments that came (without a checksum) and the error is then raised.
    """

    def __init__(self, chunks: Iterable[bytes], room: int, checksum: tuple[str, bytes] | None):
        self._chunks, self._room, self._checksum = chunks, room, checksum
        self._verifier = hashlib.sha256() if checksum is not None else None
        self.stopped: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                if self._verifier is not None:
                    self._verifier.update(chunk)
                if len(chunk) > self._room:
                    if self._room:
                        yield chunk[: self._room]
                    self.stopped = PastLength()
                    return
                self._room -= len(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except Exception as exc:
            if isinstance(exc, GatewayError) and not isinstance(exc, PastLength):
                raise
            self.stopped = exc
            return
        if self._verifier is not None and self._checksum is not None and self._verifier.digest() != self._checksum[1]:
            self.stopped = ChecksumMismatch()


@dataclass
class _Stored:
    """Ciphertext of segments [first_segment, +segments) = plaintext [start, end), stored but not yet kept:
    a part of the object (`part`) or a staged tail stored apart (`staged`)."""

    first_segment: int
    segments: int
    start: int
    end: int
    part: StorePart | None = None
    staged: sealed.Pending | None = None
    staged_size: int = 0


class _Writer:
    """Seals whole segments as plaintext arrives and writes them into the object as parts; keeps them (moves the offset).

    A part holds at most `PART_SEGMENTS` segments.  Where the store takes parts of any
    size (local), a part's segments go to the store as they are sealed, so the disk writes
    while the rest of the part arrives.  Where it has a minimum (S3: 5 MiB), a part is
    sealed in memory first; a request's tail shorter than the minimum (and not the end of
    the file) is stored apart as a staged object, kept like a part, and the next request,
    on any process, starts its first part with it.
    """

    def __init__(
        self, c, up: Upload, obj: SealedObject, cipher, sha: _PlaintextHash | None, offset: int, lease: _Lease
    ):
        self.c, self.up, self.obj, self.cipher, self.sha, self.lease = c, up, obj, cipher, sha, lease
        self.seg = cipher.segment_size
        self.min_part = c.store.min_part_size
        self.position = offset  # plaintext sealed so far (whole segments, or up to the end)
        self.kept = offset  # plaintext durably kept
        self.unkept: list[_Stored] = []
        self.file_type = up.file_type
        count, ciphertext, plaintext = (int(n) for n in lease.parts)  # PostgreSQL sums bigints as numeric
        self.tail = lease.tail  # a staged tail (its columns), if the last request left one
        self.number = count + 1  # the next part's number
        self.ct_offset = ciphertext  # where it starts in the object
        if plaintext + (self.tail.end - self.tail.start if self.tail else 0) != offset:
            raise IntegrityFailure(reason="upload_parts_not_contiguous")
        self.consumed: Any = None  # the staged tail (a row like `tail`), once a part holding it is written

    # -- sealing

    def _segments(self, body: Iterable[bytes]) -> Iterator[list[bytes]]:
        """Ciphertext of each whole segment of the body, sealed as its bytes arrive (a partial one is dropped).

        A segment is sealed from the pieces of the chunks that hold it, never copied into one buffer.
        """
        pieces: list[memoryview] = []
        held = 0
        for chunk in body:
            _UPLOADED.inc(len(chunk))
            # Immutable: a segment's pieces are hashed in another thread while later chunks arrive.
            view = memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk))
            while view:
                size = min(self.seg, self.up.length - self.position)  # of the segment being filled
                if size <= 0:  # the body is bounded by the length: never past the end
                    raise PastLength()
                pieces.append(view[: size - held])
                held += len(pieces[-1])
                view = view[len(pieces[-1]) :]
                if held == size:
                    out = self._seal(pieces)
                    pieces, held = [], 0
                    yield out

    def _seal(self, pieces: list[memoryview]) -> list[bytes]:
        index = self.position // self.seg
        size = sum(len(p) for p in pieces)
        if index == 0:
            # The content sniff, on the first bytes, before anything of them is stored.
            head = _head(pieces, filetypes.SNIFF_BYTES)
            self.file_type = filetypes.check(self.up.extension, head, self.c.settings.allowed_file_types)
        last = self.position + size == self.up.length
        if self.sha is not None:
            self.sha.feed(pieces, size)  # hashed beside the sealing
        ciphertext = self.cipher.seal_pieces(index, pieces, last)
        self.position += size
        return ciphertext

    def hash_at(self, offset: int):
        """The plaintext's hash standing exactly at `offset`, or None (then it is re-derived at completion)."""
        if self.sha is None or self.sha.at != offset:
            return None
        return self.sha.state()  # once the segment in flight is hashed

    # -- writing

    def run(self, body: Iterable[bytes], *, keep: bool) -> None:
        """Seal and write the whole body as parts, keeping each as it is written when `keep`."""
        segments = self._segments(body)
        first = next(segments, None)
        while first is not None:
            held = [first]
            first = self._stage_or_write(segments, held) if self.min_part > 1 else self._stream_part(segments, held)
            if keep:
                # The request's last keep also ends its lease (one transaction less), unless it completes the upload.
                self.keep(release=first is None and self.position < self.up.length)

    def _stream_part(self, segments: Iterator[list[bytes]], held: list) -> list[bytes] | None:
        """One part straight to the store, its segments sealed as the store takes them; returns the next segment."""
        begin = self.kept_end()
        index = begin // self.seg
        count = [0]  # segments in this part, as the store takes them

        def pieces() -> Iterator[bytes]:
            if index == 0:
                yield self.up.stream_header
            yield from held[0]
            count[0] = 1
            while count[0] < PART_SEGMENTS:
                piece = next(segments, None)
                if piece is None:
                    return
                # A slow link may take longer than the lease to bring a part: still ours before each write?
                self.lease.renew_if_due()
                count[0] += 1
                yield from piece

        self.lease.renew_if_due()
        part = sealed.write_assembly_part(
            self.c, self.obj, self.up.assembly or "", self.number, self.ct_offset, pieces()
        )
        self._written(part, index, count[0], begin)
        return next(segments, None) if count[0] >= PART_SEGMENTS else None

    def _stage_or_write(self, segments: Iterator[list[bytes]], held: list) -> list[bytes] | None:
        """One part sealed in memory (the staged tail first), written as a part, or staged if too short to be one."""
        begin = self.tail.start if self.tail is not None else self.kept_end()
        index = begin // self.seg
        ciphertext: list[bytes] = []
        count = 0
        if self.tail is not None:
            ciphertext = list(sealed.read_ciphertext(self.c, self.tail.object_key))
            if sum(len(b) for b in ciphertext) != self.tail.ciphertext_size:
                raise IntegrityFailure(reason="upload_part_corrupt")
            count = self.tail.segments
        ciphertext += held[0]
        count += 1
        nxt = None
        while count < PART_SEGMENTS:
            piece = next(segments, None)
            if piece is None:
                break
            ciphertext += piece
            count += 1
        else:
            nxt = next(segments, None)
        size = sum(len(b) for b in ciphertext) + (len(self.up.stream_header) if index == 0 else 0)
        self.lease.renew_if_due()
        if size < self.min_part and self.position < self.up.length:
            pending, stored = sealed.write_part(self.c, self.obj, ciphertext)
            self.unkept.append(_Stored(index, count, begin, self.position, staged=pending, staged_size=stored))
        else:
            body = [self.up.stream_header, *ciphertext] if index == 0 else ciphertext
            part = sealed.write_assembly_part(
                self.c, self.obj, self.up.assembly or "", self.number, self.ct_offset, body
            )
            self._written(part, index, count, begin)
        if self.tail is not None:
            self.consumed, self.tail = self.tail, None
        return nxt

    def kept_end(self) -> int:
        """Plaintext offset where the next part starts: after what is kept and what this request wrote."""
        return self.unkept[-1].end if self.unkept else self.kept

    def _written(self, part: StorePart, index: int, count: int, begin: int) -> None:
        self.unkept.append(_Stored(index, count, begin, self.position, part=part))
        self.number += 1
        self.ct_offset += part.size

    def keep(self, *, release: bool = False) -> None:
        """Move the durable offset over every part and staged tail this request wrote (one transaction)."""
        if not self.unkept:
            return
        up, stored = self.up, self.unkept
        consumed = self.consumed
        with self.c.db.transaction() as db:
            moved = cast(
                CursorResult,
                db.execute(
                    update(Upload)
                    .where(
                        Upload.id == up.id,
                        Upload.received == self.kept,
                        Upload.state == UploadState.open,
                        Upload.writer == self.lease.id,
                    )
                    .values(
                        received=stored[-1].end,
                        file_type=self.file_type,
                        **({"writer": None, "writer_until": None} if release else self.lease.values()),
                    )
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            if moved != 1:
                raise OffsetMismatch("Another request moved this upload on; ask for its offset (HEAD) and resume.")
            staged = [s.staged.id for s in stored if s.staged is not None]
            if staged:
                sealed.hold(db, staged, up.expires_at)
            if consumed is not None:
                db.execute(delete(UploadPart).where(UploadPart.sealed_id == consumed.sealed_id))
            parts = [
                {
                    "upload_id": up.id,
                    "number": s.part.number,
                    "offset": s.part.offset,
                    "size": s.part.size,
                    "checksum": s.part.checksum,
                    "etag": s.part.etag,
                    "first_segment": s.first_segment,
                    "segments": s.segments,
                    "start": s.start,
                    "end": s.end,
                }
                for s in stored
                if s.part is not None
            ]
            if parts:  # one INSERT, without the session's unit of work: nothing reads them back here
                db.execute(insert(AssemblyPart), parts)
            for s in stored:
                if s.part is None and s.staged is not None:
                    db.add(
                        UploadPart(
                            sealed_id=s.staged.id,
                            upload_id=up.id,
                            object_key=s.staged.object_key,
                            first_segment=s.first_segment,
                            segments=s.segments,
                            start=s.start,
                            end=s.end,
                            ciphertext_size=s.staged_size,
                        )
                    )
        self.kept, self.unkept, self.consumed = stored[-1].end, [], None
        self.lease.held = self.lease.held and not release
        if consumed is not None:
            _destroy_staged(self.c, [consumed.sealed_id])
        # Only a state standing exactly at the kept offset goes on: a segment already sealed for the next
        # part is in the hash too, and a request that dies before keeping it must not leave it counted.
        sha = self.hash_at(self.kept)
        if sha is not None:
            _HASHES.put(up.id, self.kept, sha)

    def discard(self) -> None:
        """Destroy staged tails stored by this request and not kept (never raises for storage).

        Parts written into the object and not kept need no removal: the next writer writes
        over them, and completion names only kept parts (S3 drops the others; the local file
        is cut at the last one).
        """
        if self.sha is not None:
            self.sha.drain()  # no hashing left running after the request
        sealed.discard(self.c, [s.staged for s in self.unkept if s.staged is not None])
        self.unkept = []


def _destroy_staged(c, sealed_ids: list[str]) -> None:
    """Storage first; a staged tail it cannot remove stays pending (held) and fsck removes it when that lapses."""
    with c.db.snapshot() as db:
        rows = [db.get(SealedObject, i) for i in sealed_ids]
    sealed.discard(c, [r for r in rows if r is not None])


def _head(pieces: list[memoryview], size: int) -> bytes:
    """The first `size` bytes of a segment in pieces, without joining the whole segment."""
    out = bytearray()
    for p in pieces:
        if len(out) >= size:
            break
        out += p[: size - len(out)]
    return bytes(out)


# -- completing --------------------------------------------------------------------------


def complete(c: Components, upload_id: str, *, sha=None, lease: _Lease | None = None) -> Upload:
    """Make a fully received upload's parts its object (stored), without copying; idempotent."""
    with c.db.snapshot() as db:
        up = db.get_one(Upload, upload_id)
        obj = db.get_one(SealedObject, up.sealed_id)
    if up.state != UploadState.open:
        return up
    if up.received != up.length:
        raise InvalidInput("This upload is not finished yet.", code="upload_unfinished")
    if up.assembly is None:
        raise UploadGone()
    own = lease is None
    if lease is None:
        lease = _Lease(c, up, up.length)
    try:
        with c.db.snapshot() as db:
            parts = list(
                db.scalars(select(AssemblyPart).where(AssemblyPart.upload_id == up.id).order_by(AssemblyPart.number))
            )
            tails = list(db.scalars(select(UploadPart.sealed_id).where(UploadPart.upload_id == up.id)))
        if sum(p.end - p.start for p in parts) != up.length:
            raise IntegrityFailure(reason="upload_parts_not_contiguous")
        written = sealed.complete_assembly(
            c,
            obj,
            up.assembly,
            [StorePart(p.number, p.offset, p.size, p.checksum, p.etag) for p in parts],
            up.length,
            sha.hexdigest() if sha is not None else None,
        )
        with c.db.transaction() as db:
            done = cast(
                CursorResult,
                db.execute(
                    update(Upload)
                    .where(Upload.id == up.id, Upload.state == UploadState.open, Upload.writer == lease.id)
                    .values(
                        state=UploadState.complete,
                        sha256=written.sha256,
                        completed_at=clock.now(),
                        writer=None,
                        writer_until=None,
                    )
                    .execution_options(synchronize_session=False)
                ),
            ).rowcount
            if done == 1:
                lease.held = False
                sealed.forget_cipher(up.sealed_id)
                sealed.commit(db, [written])
                db.execute(delete(AssemblyPart).where(AssemblyPart.upload_id == up.id))
                db.execute(delete(UploadPart).where(UploadPart.upload_id == up.id))
                record_event(
                    db,
                    Action.UPLOAD_COMPLETED,
                    actor=Actor(up.user_id),
                    target_type="upload",
                    target_id=up.id,
                    target_org_id=up.practice_id,
                    details={
                        "vendor_id": up.vendor_id,
                        "size": up.length,
                        "sha256": written.sha256,
                        "file_id": up.file_id,
                        "parts": len(parts),
                    },
                )
        if done == 1 and tails:
            _destroy_staged(c, tails)  # none in the normal course: the last part takes the staged tail in
    finally:
        if own:
            lease.release()
    with c.db.snapshot() as db:
        return db.get_one(Upload, up.id)


# -- ending ------------------------------------------------------------------------------


def cancel(c: Components, principal: Principal, upload_id: str) -> None:
    """The sender ends an upload (tus termination): everything it stored is destroyed."""
    with c.db.snapshot() as db:
        up = find(db, principal, upload_id)
    _end(c, up, UploadState.cancelled, principal.actor, Action.UPLOAD_CANCELLED)


@dataclass(frozen=True)
class _Ended:
    removed: int
    left: int
    aborted: int


def _end(c, up: Upload, state: UploadState, actor: Actor, action: Action, details: dict | None = None) -> _Ended | None:
    """End an upload still open or complete (None if another request ended it first) and destroy what it stored."""
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
            return None
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
        db.execute(delete(AssemblyPart).where(AssemblyPart.upload_id == up.id))
    sealed.forget_cipher(up.sealed_id)
    removed = left = aborted = 0
    for row in objects:
        try:
            # The object's key names its assembly too: S3 aborts the multipart upload, the local store removes its file.
            aborted += sealed.destroy_object(c, row).report.uploads_aborted
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
                "multipart_uploads_aborted": aborted,
                **(details or {}),
            },
        )
    return _Ended(removed, left, aborted)


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
            ended += _end(c, up, UploadState.expired, Actor(), Action.UPLOAD_EXPIRED) is not None


@dataclass
class Offboarded:
    """What offboarding a vendor did to its unfinished uploads (for the run report)."""

    uploads: int = 0
    bytes_received: int = 0
    objects_left_for_fsck: int = 0
    multipart_uploads_aborted: int = 0


def destroy_for_offboarding(c: Components, actor: Actor, vendor_id: str, jobs: dict[str, str]) -> Offboarded:
    """Destroy every unfinished upload between the vendor and these practices (practice id -> job id), both ways.

    Called once the BAAs are terminated (no upload can begin any more) and before the
    relationship keys are destroyed; each is audited with the offboarding job it belongs to.
    """
    done = Offboarded()
    with c.db.snapshot() as db:
        ups = list(
            db.scalars(
                select(Upload).where(
                    Upload.vendor_id == vendor_id,
                    Upload.practice_id.in_(list(jobs)),
                    Upload.state.in_([UploadState.open, UploadState.complete]),
                )
            )
        )
    for up in ups:
        details = {"job_id": jobs[up.practice_id], "why": "vendor_offboarded"}
        ended = _end(c, up, UploadState.offboarded, actor, Action.UPLOAD_OFFBOARDED, details)
        if ended is not None:
            done.uploads += 1
            done.bytes_received += up.received
            done.objects_left_for_fsck += ended.left
            done.multipart_uploads_aborted += ended.aborted
    return done


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
