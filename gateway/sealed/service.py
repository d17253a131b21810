"""The sealed-object registry: the only code that encrypts, decrypts, rewraps or destroys an object.

Every object goes through the same life, whatever its kind:

1. `reserve` records the object (state `pending`, committed) before a byte is stored,
   so a crash leaves a row that `phigate fsck` finds, never an orphan;
2. `write` takes a fresh data key from the key provider, encrypts the stream as it
   arrives (crypto.encrypt_stream, the object format of docs/encrypted-object-format.md)
   and stores it; it measures the plaintext's size and SHA-256 on the way;
3. `commit`, inside the owner's own transaction, makes it `stored` together with the
   owner's rows (a transfer and its files, a BAA's copy), or `discard` destroys it;
4. `open` unwraps the data key and decrypts the whole object or a range, verifying the
   first segment before returning, so a tampered object never gets a success answer;
5. `rewrap_objects` moves wrapped data keys to their KEK's newest version (objects untouched);
6. destruction: `claim` (`destroying`: no read starts any more), `erase` (every stored
   version deleted and absence verified), `shred` (the wrapped key erased) and
   `mark_destroyed`; `destroy_object` runs them for one object.

Every failure of storage, the key service or an integrity check surfaces as one of
the errors of gateway/sealed/errors.py.  Work that calls the key service or storage
never runs inside a write transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Generator, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from crypto import CryptoError, KeyDestroyed, SegmentCipher, WrappedKey, decrypt_range, decrypt_stream, encrypt_stream
from gateway import clock
from gateway.ids import new_id
from gateway.sealed.errors import IntegrityFailure, ObjectDestroyed, SealedError, StorageUnavailable, translate
from gateway.sealed.keys import baa_copy_context, generation_of, transfer_file_context, upload_context
from gateway.sealed.models import SealedKind, SealedObject, SealedState
from storage import AbsenceProof, DeletionBlocked, DestroyReport, StorageError
from storage import AssemblyPart as StoreAssemblyPart

log = logging.getLogger("phigate.sealed")

OBJECT_FORMAT = "phg-stream-v1"
BATCH = 500


# -- what to seal ---------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """An object about to be sealed: what it is, whose, under which key and context."""

    kind: SealedKind
    owner_id: str
    practice_id: str
    vendor_id: str | None
    key_id: str
    context: Mapping[str, str]


def transfer_file(*, key_id: str, practice_id: str, vendor_id: str, transfer_id: str, file_id: str) -> Spec:
    return Spec(
        SealedKind.transfer_file,
        file_id,
        practice_id,
        vendor_id,
        key_id,
        transfer_file_context(practice_id=practice_id, vendor_id=vendor_id, transfer_id=transfer_id, file_id=file_id),
    )


def baa_copy(*, key_id: str, baa_id: str, practice_id: str, vendor_id: str) -> Spec:
    return Spec(
        SealedKind.baa_copy,
        baa_id,
        practice_id,
        vendor_id,
        key_id,
        baa_copy_context(baa_id=baa_id, practice_id=practice_id),
    )


def upload(*, key_id: str, practice_id: str, vendor_id: str, upload_id: str, file_id: str) -> Spec:
    return Spec(
        SealedKind.upload,
        upload_id,
        practice_id,
        vendor_id,
        key_id,
        upload_context(practice_id=practice_id, vendor_id=vendor_id, upload_id=upload_id, file_id=file_id),
    )


@dataclass(frozen=True)
class Pending:
    """A reserved object: its row is committed as pending; nothing stored yet."""

    id: str
    object_key: str
    spec: Spec


@dataclass(frozen=True)
class Sealed:
    """An object written to storage, waiting for its owner's transaction to `commit` it."""

    id: str
    object_key: str
    plaintext_size: int
    sha256: str
    ciphertext_size: int
    wrapped_dek: bytes = field(repr=False)
    key_version: int


# -- storing ----------------------------------------------------------------------------


def reserve(c, spec: Spec) -> Pending:
    """Record the object as pending (committed at once) before anything is stored."""
    pending = Pending(new_id(), new_id(), spec)
    with c.db.transaction() as db:
        db.add(_pending_row(c, pending))
    return pending


def _pending_row(c, pending: Pending) -> SealedObject:
    spec = pending.spec
    return SealedObject(
        id=pending.id,
        kind=spec.kind,
        owner_id=spec.owner_id,
        practice_id=spec.practice_id,
        vendor_id=spec.vendor_id,
        key_id=spec.key_id,
        key_generation=generation_of(spec.key_id),
        context=dict(spec.context),
        object_key=pending.object_key,
        storage_location=c.store.location_id,
        state=SealedState.pending,
        created_at=clock.now(),
    )


# Threads that hash uploads' plaintext beside their encryption, shared by every upload of the process
# (direct uploads here, resumable PATCHes in gateway/uploads/service.py): one hash in flight per upload.
PLAINTEXT_HASHING = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="plaintext-sha256")

#: Chunks at least this large are hashed in a worker thread while the caller encrypts and stores them.
HASH_BESIDE = 64 * 1024


class _Measured:
    """The caller's plaintext on its way to the encryptor: counted, hashed, and its own failures told apart.

    SHA-256 of the plaintext (the digest the file's record and its users compare) is
    the costliest step per byte of an upload.  hashlib releases the GIL for large
    buffers, so a chunk is hashed in a worker thread while this thread encrypts it
    and the store writes it; the next chunk waits for that hash (one in flight, in
    order).  On a machine with a core free the upload then costs what the slower of
    the two sides costs, not their sum.
    """

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = chunks
        self.sha = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        hashing: Future[None] | None = None
        try:
            for chunk in self._chunks:
                self.size += len(chunk)
                if hashing is not None:
                    hashing.result()
                    hashing = None
                if len(chunk) < HASH_BESIDE:
                    self.sha.update(chunk)  # a hand-off would cost more than the hash
                else:
                    chunk = bytes(chunk)  # immutable while the worker reads it (a no-op for bytes)
                    hashing = PLAINTEXT_HASHING.submit(self.sha.update, chunk)
                yield chunk
            if hashing is not None:
                hashing.result()
                hashing = None
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            if hashing is not None:  # never leave a hash running after the stream is done
                with contextlib.suppress(BaseException):
                    hashing.result()

    def raised(self, exc: BaseException) -> bool:
        """True when `exc` is (or was caused by) a failure of the caller's stream, not of ours."""
        seen = 0
        cur: BaseException | None = exc
        while cur is not None and seen < 5:
            if cur is self.error:
                return True
            cur, seen = cur.__cause__ or cur.__context__, seen + 1
        return False


def write(c, pending: Pending, chunks: Iterable[bytes]) -> Sealed:
    """Encrypt and store the stream under a fresh data key.

    A failure of the caller's own stream (bad input, a client that went away) is
    raised unchanged; a failure of the key service or of storage is raised as a
    SealedError.  Either way the caller then `discard`s the pending object.
    """
    spec = pending.spec
    plaintext = _Measured(chunks)
    try:
        dek, wrapped = c.keys.generate_data_key(spec.key_id, spec.context)
        info = c.store.put(
            pending.object_key, encrypt_stream(plaintext, dek, spec.context), metadata={"format": OBJECT_FORMAT}
        )
    except BaseException as exc:
        if plaintext.error is not None and plaintext.raised(exc):
            raise plaintext.error from None
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    return Sealed(
        id=pending.id,
        object_key=pending.object_key,
        plaintext_size=plaintext.size,
        sha256=plaintext.sha.hexdigest(),
        ciphertext_size=info.size,
        wrapped_dek=wrapped.to_bytes(),
        key_version=wrapped.key_version,
    )


def commit(db: Session, sealed: Iterable[Sealed]) -> None:
    """Make written objects stored, in the owner's transaction (so both commit or neither does)."""
    now = clock.now()
    for s in sealed:
        done = cast(
            CursorResult,
            db.execute(
                update(SealedObject)
                .where(SealedObject.id == s.id, SealedObject.state == SealedState.pending)
                .values(
                    state=SealedState.stored,
                    stored_at=now,
                    wrapped_dek=s.wrapped_dek,
                    key_version=s.key_version,
                    plaintext_size=s.plaintext_size,
                    sha256=s.sha256,
                    ciphertext_size=s.ciphertext_size,
                )
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
        if done != 1:
            # fsck reclaimed it: the write outlasted the in-flight window and was taken for a crash.
            raise StorageUnavailable(reason="object_reclaimed")


def discard(c, pending: Iterable[Pending | SealedObject]) -> tuple[int, int]:
    """Destroy objects a failed operation stored; returns (removed, left for fsck).

    An object whose removal fails (storage down) stays pending: `phigate fsck --repair`
    removes it once the in-flight window has passed.  Never raises for storage.
    """
    removed = left = 0
    for p in pending:
        try:
            c.store.destroy(p.object_key)
        except (StorageError, OSError) as exc:
            log.warning("could not remove object of a failed operation (%s); left for fsck", type(exc).__name__)
            left += 1
            continue
        with c.db.transaction() as db:
            db.execute(
                update(SealedObject)
                .where(SealedObject.id == p.id, SealedObject.state == SealedState.pending)
                .values(state=SealedState.destroyed, destroyed_at=clock.now())
                .execution_options(synchronize_session=False)
            )
        removed += 1
    return removed, left


# -- resumable objects -------------------------------------------------------------------
#
# An object written over many requests, possibly by several processes: its data key is
# wrapped and recorded when it is begun (pending, held until it expires), and the store
# begins assembling it (S3: a multipart upload; local: a file written in place).  Whole
# segments sealed with `SegmentCipher` go straight into it as parts; `complete_assembly`
# makes the parts the object without copying a byte.  On a store with a minimum part
# size a request's shorter tail is kept apart as a pending object of kind `upload_part`
# (`write_part`) until a later request makes it the start of a part.


@dataclass(frozen=True)
class Resumable:
    """A resumable object just begun: its row (pending, data key recorded), stream header and assembly token."""

    pending: Pending
    header: bytes
    assembly: str


def begin(c, spec: Spec, held_until: datetime) -> Resumable:
    """Reserve an object to be written in parts: fresh data key, wrapped and recorded now, so any process can go on."""
    try:
        dek, wrapped = c.keys.generate_data_key(spec.key_id, spec.context)
        header = SegmentCipher(dek, spec.context).header
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    pending = Pending(new_id(), new_id(), spec)
    with c.db.transaction() as db:
        row = _pending_row(c, pending)
        row.wrapped_dek, row.key_version, row.held_until = wrapped.to_bytes(), wrapped.key_version, held_until
        db.add(row)
    try:
        token = c.store.begin_assembly(pending.object_key, {"format": OBJECT_FORMAT})
    except BaseException as exc:
        discard(c, [pending])
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    return Resumable(pending, header, token)


def cipher(c, obj: SealedObject, header: bytes) -> SegmentCipher:
    """The segment cipher of a resumable object, rebuilt from its recorded data key and header."""
    if obj.state != SealedState.pending or obj.wrapped_dek is None:
        raise ObjectDestroyed()
    try:
        dek = c.keys.unwrap(WrappedKey.from_bytes(obj.wrapped_dek), obj.context or {})
        return SegmentCipher(dek, obj.context or {}, header=header)
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None


class _KeptCiphers:
    """Segment ciphers of uploads this process wrote in the last `ttl` seconds, by sealed object id.

    Rebuilding one unwraps the data key at the key service (a KMS round trip) and derives
    the segment key, for every PATCH; a run of PATCHes on one process now does it once.
    The database stays the truth: an entry is used only for the object row just read in
    the PATCH's own transaction (still pending, the same wrapped key and header), after
    `find` and the lease checked that the upload is open, so a cancelled, expired or
    offboarded upload never reaches it; it is dropped when the upload completes, and
    a data key stays in memory no longer than `ttl` after the last PATCH that used it.
    """

    def __init__(self, ttl: float = 60.0, size: int = 64):
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[bytes, bytes, float, SegmentCipher]] = OrderedDict()
        self._ttl, self._size = ttl, size

    def get(self, c, obj: SealedObject, header: bytes) -> SegmentCipher:
        now = time.monotonic()
        with self._lock:
            for stale in [k for k, v in self._items.items() if v[2] <= now]:
                del self._items[stale]
            found = self._items.pop(obj.id, None)
        if (
            found is not None
            and obj.state == SealedState.pending
            and obj.wrapped_dek is not None
            and (found[0], found[1]) == (obj.wrapped_dek, header)
        ):
            kept = found[3]
        else:
            kept = cipher(c, obj, header)  # checks the object is still pending with its key
        if obj.wrapped_dek is not None:
            with self._lock:
                self._items[obj.id] = (obj.wrapped_dek, header, now + self._ttl, kept)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return kept

    def drop(self, sealed_id: str) -> None:
        with self._lock:
            self._items.pop(sealed_id, None)


_KEPT = _KeptCiphers()


def kept_cipher(c, obj: SealedObject, header: bytes) -> SegmentCipher:
    """`cipher()`, kept for a minute after its last use by this process (resumable uploads: one unwrap per run)."""
    return _KEPT.get(c, obj, header)


def forget_cipher(sealed_id: str) -> None:
    """Drop the kept cipher of an object (its upload completed, or was cancelled, expired or offboarded)."""
    _KEPT.drop(sealed_id)


def write_part(c, obj: SealedObject, ciphertext: list[bytes]) -> tuple[Pending, int]:
    """Store one part of a resumable object (whole sealed segments); returns it (pending) and its size.

    On failure the part is discarded and the error raised as a SealedError.
    """
    if obj.owner_id is None or obj.practice_id is None or obj.key_id is None:
        # `begin` records all three on every resumable object
        raise RuntimeError(f"resumable object {obj.id} has no owner, practice or key")
    part = reserve(
        c, Spec(SealedKind.upload_part, obj.owner_id, obj.practice_id, obj.vendor_id, obj.key_id, obj.context or {})
    )
    try:
        info = c.store.put(part.object_key, ciphertext, metadata={"format": OBJECT_FORMAT + "-part"})
    except BaseException as exc:
        discard(c, [part])
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    return part, info.size


def hold(db: Session, ids: Iterable[str], until: datetime) -> None:
    """Keep pending objects (kept parts of an unfinished upload) past the in-flight window, until `until`."""
    db.execute(
        update(SealedObject)
        .where(SealedObject.id.in_(list(ids)), SealedObject.state == SealedState.pending)
        .values(held_until=until)
        .execution_options(synchronize_session=False)
    )


def read_ciphertext(c, object_key: str) -> Iterator[bytes]:
    """The stored ciphertext of a staged part; storage errors as SealedErrors."""
    try:
        yield from c.store.get(object_key)
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None


def write_assembly_part(
    c, obj: SealedObject, token: str, number: int, offset: int, ciphertext: Iterable[bytes]
) -> StoreAssemblyPart:
    """Store part `number` of a resumable object at ciphertext `offset`; durable when this returns.

    The ciphertext may be produced as the store takes it; a failure of the caller's
    iterator (a refused first segment) is raised unchanged.
    """
    try:
        return c.store.put_assembly_part(obj.object_key, token, number, offset, ciphertext)
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None


def complete_assembly(
    c, obj: SealedObject, token: str, parts: list[StoreAssemblyPart], plaintext_size: int, sha256: str | None
) -> Sealed:
    """Make the parts the object itself (no byte copied), for the owner to `commit`.

    `sha256` is the plaintext's, when the caller hashed every byte as it arrived; when the
    parts came through several processes it is None, and the plaintext's SHA-256 is
    re-derived here by reading (and verifying) the object once.
    """
    wrapped_dek, key_version = obj.wrapped_dek, obj.key_version
    if wrapped_dek is None or key_version is None:  # as `cipher`: no data key, nothing can open it
        raise ObjectDestroyed()
    try:
        info = c.store.complete_assembly(obj.object_key, token, parts, {"format": OBJECT_FORMAT})
        if sha256 is None:
            context = obj.context or {}
            dek = c.keys.unwrap(WrappedKey.from_bytes(wrapped_dek), context)
            sha = hashlib.sha256()
            size = 0
            for chunk in decrypt_stream(c.store.get(obj.object_key), dek, context):
                sha.update(chunk)
                size += len(chunk)
            if size != plaintext_size:
                raise IntegrityFailure(reason="upload_size_mismatch")
            sha256 = sha.hexdigest()
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    return Sealed(
        id=obj.id,
        object_key=obj.object_key,
        plaintext_size=plaintext_size,
        sha256=sha256,
        ciphertext_size=info.size,
        wrapped_dek=wrapped_dek,
        key_version=key_version,
    )


def adopt(db: Session, obj_id: str, *, kind: SealedKind, owner_id: str) -> None:
    """Hand a stored object to a new owner (a completed upload becomes a transfer's file), in the owner's transaction."""
    done = cast(
        CursorResult,
        db.execute(
            update(SealedObject)
            .where(SealedObject.id == obj_id, SealedObject.state == SealedState.stored)
            .values(kind=kind, owner_id=owner_id, held_until=None)
            .execution_options(synchronize_session=False)
        ),
    ).rowcount
    if done != 1:
        raise ObjectDestroyed()


# -- finding ---------------------------------------------------------------------------


def owned(
    db: Session, kind: SealedKind, owner_id: str, *, state: SealedState | None = SealedState.stored
) -> SealedObject | None:
    """The object of this kind that `owner_id` holds (the stored one by default)."""
    query = select(SealedObject).where(SealedObject.kind == kind, SealedObject.owner_id == owner_id)
    if state is not None:
        query = query.where(SealedObject.state == state)
    return db.scalars(query.order_by(SealedObject.created_at.desc()).limit(1)).first()


def owned_many(db: Session, kind: SealedKind, owner_ids: Iterable[str]) -> dict[str, SealedObject]:
    """owner id -> its newest object of this kind, whatever its state."""
    rows = db.scalars(
        select(SealedObject)
        .where(SealedObject.kind == kind, SealedObject.owner_id.in_(list(owner_ids)))
        .order_by(SealedObject.created_at)
    )
    return {r.owner_id: r for r in rows if r.owner_id is not None}  # never None: matched by `in_`


def live_under_key(db: Session, key_id: str) -> int:
    """Objects of any kind that still depend on `key_id` (not yet destroyed)."""
    return (
        db.scalar(
            select(func.count())
            .select_from(SealedObject)
            .where(SealedObject.key_id == key_id, SealedObject.state != SealedState.destroyed)
        )
        or 0
    )


def pending_since(db: Session, since: datetime, *, kind: SealedKind, vendor_id: str) -> int:
    """Objects of this kind being written for this vendor (or, from wave 1, for an unknown one) since `since`."""
    return (
        db.scalar(
            select(func.count())
            .select_from(SealedObject)
            .where(
                SealedObject.state == SealedState.pending,
                SealedObject.created_at >= since,
                SealedObject.kind == kind,
                (SealedObject.vendor_id == vendor_id) | SealedObject.vendor_id.is_(None),
            )
        )
        or 0
    )


# -- opening ---------------------------------------------------------------------------


def open_object(c, obj: SealedObject, span: tuple[int, int] | None = None) -> Generator[bytes, None, None]:
    """Plaintext of the whole object, or of bytes [start, stop); the first segment is verified before this returns.

    Raises a SealedError (storage, key service, integrity, destroyed); a later
    failure while iterating is raised as one too, so the caller can tell why a
    stream stopped.
    """
    if obj.state != SealedState.stored or obj.wrapped_dek is None:
        raise ObjectDestroyed()
    try:
        wrapped = WrappedKey.from_bytes(obj.wrapped_dek)
    except CryptoError:
        raise IntegrityFailure(reason="wrapped_key_corrupt") from None
    context = obj.context or {}
    try:
        dek = c.keys.unwrap(wrapped, context)
        if span is None:
            plaintext = decrypt_stream(c.store.get(obj.object_key), dek, context)
        else:

            def fetch(offset: int, length: int) -> Iterator[bytes]:
                return c.store.get(obj.object_key, start=offset, end=offset + length)

            if obj.ciphertext_size is None:  # `commit` records it with every stored object
                raise RuntimeError(f"stored object {obj.id} has no ciphertext size")
            plaintext = decrypt_range(fetch, dek, context, span[0], span[1], obj.ciphertext_size)
        first = next(plaintext, None)
    except BaseException as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    return _verified(first, plaintext)


def _verified(first: bytes | None, rest: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    try:
        if first:
            yield first
        yield from rest
    except GeneratorExit:
        raise
    except Exception as exc:
        err = translate(exc)
        if err is None:
            raise
        raise err from None
    finally:
        rest.close()  # release the storage read at once, however the stream ends


# -- rewrapping ------------------------------------------------------------------------


@dataclass
class RewrapResult:
    rewrapped: int = 0
    already_current: int = 0
    skipped_destroyed: int = 0
    # Objects still being written: their keys are wrapped when they commit; run rewrap again after.
    pending: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_key: dict[str, int] = field(default_factory=dict)


def rewrap_objects(c, versions: dict[str, int] | None = None) -> RewrapResult:
    """Re-wrap every object's data key that is not under its KEK's newest version; object data untouched.

    Key-service calls run between short transactions; each new wrapping is written only
    if the row still holds the wrapping it was made from (a concurrent destruction wins).
    """
    result = RewrapResult()
    versions = {} if versions is None else versions
    last = ""
    while True:
        with c.db.snapshot() as db:
            rows = db.execute(
                select(
                    SealedObject.id,
                    SealedObject.kind,
                    SealedObject.key_id,
                    SealedObject.key_version,
                    SealedObject.wrapped_dek,
                    SealedObject.context,
                )
                .where(SealedObject.id > last, SealedObject.wrapped_dek.is_not(None))
                .order_by(SealedObject.id)
                .limit(BATCH)
            ).all()
        if not rows:
            break
        last = rows[-1].id
        updates = []
        for row in rows:
            wrapped = WrappedKey.from_bytes(row.wrapped_dek)
            try:
                if wrapped.key_id not in versions:
                    versions[wrapped.key_id] = c.keys.current_version(wrapped.key_id)
                if wrapped.key_version >= versions[wrapped.key_id]:
                    result.already_current += 1
                    continue
                new = c.keys.rewrap(wrapped, row.context or {})
            except KeyDestroyed:
                result.skipped_destroyed += 1
                continue
            updates.append((row, new))
        if updates:
            with c.db.transaction() as db:
                for row, new in updates:
                    done = cast(
                        CursorResult,
                        db.execute(
                            update(SealedObject)
                            .where(SealedObject.id == row.id, SealedObject.wrapped_dek == row.wrapped_dek)
                            .values(wrapped_dek=new.to_bytes(), key_version=new.key_version)
                            .execution_options(synchronize_session=False)
                        ),
                    ).rowcount
                    if done:
                        result.rewrapped += 1
                        result.by_kind[row.kind.value] = result.by_kind.get(row.kind.value, 0) + 1
                        result.by_key[row.key_id] = result.by_key.get(row.key_id, 0) + 1
    with c.db.snapshot() as db:
        result.pending = (
            db.scalar(select(func.count()).select_from(SealedObject).where(SealedObject.state == SealedState.pending))
            or 0
        )
    return result


def wrapped_by_version(db: Session) -> dict[str, dict[int, int]]:
    """key id -> {KEK version: objects whose data key it still wraps}."""
    out: dict[str, dict[int, int]] = {}
    for key_id, version, n in db.execute(
        select(SealedObject.key_id, SealedObject.key_version, func.count())
        .where(SealedObject.wrapped_dek.is_not(None))
        .group_by(SealedObject.key_id, SealedObject.key_version)
    ):
        if key_id is None or version is None:  # recorded with every wrapped data key
            raise RuntimeError("a wrapped data key without its key id or version")
        out.setdefault(key_id, {})[version] = n
    return out


# -- destroying ------------------------------------------------------------------------


def claim(db: Session, kind: SealedKind, owner_ids: Iterable[str]) -> list[SealedObject]:
    """Mark the stored objects of these owners `destroying`, in the caller's transaction: no read starts after."""
    rows = list(
        db.scalars(
            select(SealedObject)
            .where(
                SealedObject.kind == kind,
                SealedObject.owner_id.in_(list(owner_ids)),
                SealedObject.state == SealedState.stored,
            )
            .with_for_update()
        )
    )
    now = clock.now()
    for row in rows:
        row.state, row.destroying_at = SealedState.destroying, now
    return rows


@dataclass(frozen=True)
class Erasure:
    """What storage did: the report (every version deleted or blocked) and whether Object Lock blocked any."""

    report: DestroyReport
    blocked: bool


def erase(c, object_key: str, storage_location: str | None) -> Erasure:
    """Delete every stored version of an object and verify it is absent (idempotent: absent is fine).

    Raises StorageUnavailable with a reason when storage fails or absence cannot be verified.
    """
    store = c.store
    if storage_location is not None and storage_location != store.location_id:
        raise StorageUnavailable(
            "The object is in another storage location than this gateway's store.", reason="other_storage_location"
        )
    try:
        report, blocked = store.destroy(object_key), False
    except DeletionBlocked as exc:
        report, blocked = exc.report, True
    except (StorageError, OSError) as exc:
        raise translate(exc) from None
    if report.proof is None:
        from dataclasses import replace

        report = replace(report, proof=verify_absent(c, object_key))
    if not blocked and not report.proof.absent:
        raise StorageUnavailable(reason="absence_not_verified")
    return Erasure(report, blocked)


def verify_absent(c, object_key: str) -> AbsenceProof:
    """Prove that nothing of the object remains in the store."""
    try:
        return c.store.verify_absent(object_key)
    except (StorageError, OSError) as exc:
        raise translate(exc) from None


def shred(db: Session, ids: Iterable[str]) -> None:
    """Erase the wrapped data keys (crypto-shredding), in the caller's transaction."""
    db.execute(
        update(SealedObject)
        .where(SealedObject.id.in_(list(ids)))
        .values(wrapped_dek=None)
        .execution_options(synchronize_session=False)
    )


def mark_destroyed(db: Session, ids: Iterable[str]) -> None:
    db.execute(
        update(SealedObject)
        .where(SealedObject.id.in_(list(ids)))
        .values(state=SealedState.destroyed, destroyed_at=clock.now(), wrapped_dek=None)
        .execution_options(synchronize_session=False)
    )


def destroy_object(c, obj: SealedObject) -> Erasure:
    """Destroy one object already claimed (`destroying`) or left `pending`: erase, shred, mark destroyed."""
    erasure = erase(c, obj.object_key, obj.storage_location)
    with c.db.transaction() as db:
        mark_destroyed(db, [obj.id])
    return erasure


__all__ = [
    "Erasure",
    "Pending",
    "Resumable",
    "RewrapResult",
    "Sealed",
    "SealedError",
    "Spec",
    "adopt",
    "baa_copy",
    "begin",
    "cipher",
    "claim",
    "commit",
    "complete_assembly",
    "destroy_object",
    "discard",
    "erase",
    "hold",
    "live_under_key",
    "mark_destroyed",
    "open_object",
    "owned",
    "owned_many",
    "pending_since",
    "read_ciphertext",
    "reserve",
    "rewrap_objects",
    "shred",
    "transfer_file",
    "upload",
    "verify_absent",
    "wrapped_by_version",
    "write",
    "write_assembly_part",
    "write_part",
]
