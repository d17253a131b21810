"""Request bodies as plain iterators, for the upload pipeline running in a worker thread.

The upload path is: request body -> (multipart parser) -> sniff/limit/hash ->
encrypt_stream -> ObjectStore.put, all pull-based generators, so at most a few
segments are in memory and nothing is ever written to disk in plaintext.
Starlette's own `request.form()` would spool file parts to temporary files on
disk, which the non-negotiables forbid; this module parses multipart itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.from_thread
from python_multipart.multipart import MultipartParser, parse_options_header

from gateway.errors import GatewayError, InvalidInput, MalformedBody

if TYPE_CHECKING:  # defined for type checkers only
    from python_multipart.multipart import MultipartCallbacks


class MalformedMultipart(MalformedBody):
    """A body that is not well-formed multipart: a bad request (400), as a malformed JSON body is, not a field's error."""

    code = "malformed_multipart"
    message = "The multipart body is malformed."


BATCH = 1024 * 1024
PREFETCH = 4  # batches read ahead of the encryptor: a few MiB per upload at most
MAX_FIELD_BYTES = 4096


class BodyChunks(Iterator[bytes]):
    """An async byte stream (a request body: gateway.web.request_body) as ~1 MiB batches, for a worker thread.

    A task on the event loop keeps reading the socket into a small bounded queue
    while the worker hashes, encrypts and stores the previous batches; without it
    the two would take turns (the server stops reading while nobody asks).  The task
    starts at the first batch taken, or earlier with `start()`: a worker with set-up
    to do first (database, keys) lets the body arrive meanwhile.  `close()` stops the
    reading however the worker ended, started or not.
    """

    def __init__(self, stream: AsyncIterator[bytes], prefetch: int = PREFETCH):
        self._stream, self._prefetch = stream, prefetch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._ended = False

    async def _pump(self) -> None:
        queue = self._queue
        assert queue is not None  # noqa: S101 - set by _begin before the task is created
        try:
            parts, size = [], 0
            async for chunk in self._stream:
                parts.append(chunk)
                size += len(chunk)
                if size >= BATCH:
                    await queue.put(b"".join(parts))
                    parts, size = [], 0
            if parts:
                await queue.put(b"".join(parts))
            await queue.put(None)
        except Exception as exc:  # noqa: BLE001 - ClientDisconnected and friends reach the worker as they are
            await queue.put(exc)
        finally:
            # Cancelled while waiting for room in the queue (the worker stopped early), the body is not being
            # read at that moment: end it here, not whenever the generator is collected.
            aclose = getattr(self._stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _begin(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(maxsize=self._prefetch)
        self._task = self._loop.create_task(self._pump())

    async def _take(self):
        assert self._queue is not None  # noqa: S101 - taken only once started
        return await self._queue.get()

    def start(self) -> None:
        """From the worker thread: begin reading the body now (at most `prefetch` batches ahead)."""
        if self._task is None and not self._ended:
            anyio.from_thread.run(self._begin)

    def __next__(self) -> bytes:
        if self._ended:
            raise StopIteration
        self.start()
        try:
            item = anyio.from_thread.run(self._take)
        except BaseException:
            self.close()
            raise
        if item is None:
            self.close()
            raise StopIteration
        if isinstance(item, Exception):
            self.close()
            raise item
        return item

    def close(self) -> None:
        """Stop reading the body (the worker stopped early: bad input, limit, storage error; or it is done).

        Thread-safe from wherever it is called, even after the loop has gone."""
        self._ended = True
        if self._task is not None and self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)


def body_chunks(stream: AsyncIterator[bytes], prefetch: int = PREFETCH) -> BodyChunks:
    """The request body as ~1 MiB batches for a worker thread (`BodyChunks`)."""
    return BodyChunks(stream, prefetch)


@dataclass
class IncomingFile:
    """A file part of an upload: its client-side name and a one-shot iterator of its bytes."""

    name: str
    chunks: Iterator[bytes]


class MultipartReader:
    """Pull-based multipart/form-data: fields first, then files as streams, in the order sent."""

    def __init__(self, content_type: str, raw: Iterator[bytes]):
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary or len(boundary) > 200:
            raise MalformedMultipart("Expected multipart/form-data with a boundary.")
        self._raw = raw
        self._events: deque = deque()
        self._header_field = b""
        self._header_value = b""
        self._ended = False
        callbacks: MultipartCallbacks = {
            "on_part_begin": lambda: self._events.append(("begin",)),
            "on_part_data": lambda data, start, end: self._events.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self._events.append(("end",)),
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": lambda: self._events.append(("headers_done",)),
            "on_end": lambda: self._events.append(("eof",)),
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _on_header_field(self, data, start, end):
        self._header_field += bytes(data[start:end])

    def _on_header_value(self, data, start, end):
        self._header_value += bytes(data[start:end])

    def _on_header_end(self):
        self._events.append(("header", self._header_field.decode("latin-1").lower(), self._header_value))
        self._header_field = self._header_value = b""

    def _next(self):
        while not self._events:
            if self._ended:
                raise MalformedMultipart("The multipart body ended early.")
            chunk = next(self._raw, None)
            try:
                if chunk is None:
                    self._ended = True
                    self._parser.finalize()
                else:
                    self._parser.write(chunk)
            except GatewayError:  # a field too long, a part without a name: already said
                raise
            except Exception:  # noqa: BLE001 - whatever the parser raises, the body is malformed
                raise MalformedMultipart("The multipart body is malformed.") from None
            if self._ended and not self._events:
                raise MalformedMultipart("The multipart body ended early.")
        return self._events.popleft()

    def _part_headers(self) -> dict[str, bytes]:
        headers = {}
        while True:
            event = self._next()
            if event[0] == "header":
                headers[event[1]] = event[2]
            elif event[0] == "headers_done":
                return headers
            else:
                raise MalformedMultipart("The multipart body is malformed.")

    def _part_data(self) -> Iterator[bytes]:
        while True:
            event = self._next()
            if event[0] == "data":
                if event[1]:
                    yield event[1]
            elif event[0] == "end":
                return
            else:
                raise MalformedMultipart("The multipart body is malformed.")

    def parts(self) -> Iterator[tuple[str, str | IncomingFile]]:
        """Yield (field name, value) for fields and (field name, IncomingFile) for files.

        A file's chunks must be consumed before asking for the next part.
        """
        while True:
            event = self._next()
            if event[0] == "eof":
                return
            if event[0] != "begin":
                raise MalformedMultipart("The multipart body is malformed.")
            headers = self._part_headers()
            disposition, params = parse_options_header(headers.get("content-disposition", b""))
            if disposition != b"form-data" or b"name" not in params:
                raise MalformedMultipart("A multipart part has no form-data name.")
            name = params[b"name"].decode("utf-8", "replace")
            if b"filename" in params:
                filename = params[b"filename"].decode("utf-8", "replace")
                data = self._part_data()
                yield name, IncomingFile(filename, data)
                for _ in data:  # drain whatever the consumer left
                    pass
            else:
                value = bytearray()
                for chunk in self._part_data():
                    value += chunk
                    if len(value) > MAX_FIELD_BYTES:
                        raise InvalidInput(f"The form field {name!r} is too long.", code="field_too_long")
                yield name, value.decode("utf-8", "replace")
