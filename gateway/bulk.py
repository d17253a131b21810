"""Bulk streams: uploads and downloads move their bytes in a few threads of their own.

A transfer spends its time reading a body, hashing, encrypting, storing (or the reverse)
megabyte after megabyte in a worker thread. In one process every Python thread and the
event loop share one interpreter lock: with uploads and downloads in the framework's pool,
twenty of them would take turns with every list, search and sign-in (and with the loop
itself) and a read would wait behind them. So at most `PHIGATE_BULK_STREAMS` uploads and
downloads move bytes at once per process, in threads counted apart from the framework's
pool; the others wait for a place on an await (no thread; an upload's body is not read
meanwhile, so TCP holds its sender back), and reads keep the pool to themselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from contextlib import asynccontextmanager
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

T = TypeVar("T")


class BulkStreams:
    """One process's places for uploads and downloads (`Components.bulk`)."""

    def __init__(self, streams: int):
        self.streams = streams
        self.waiting = 0  # uploads and downloads of this process waiting for a place
        # Per event loop, like anyio's own thread limiter: (places for streams, threads they may use).
        self._limits: RunVar[tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]] = RunVar(f"bulk-{id(self)}")

    def _current(self) -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
        try:
            return self._limits.get()
        except LookupError:
            limits = anyio.CapacityLimiter(self.streams), anyio.CapacityLimiter(self.streams)
            self._limits.set(limits)
            return limits

    @asynccontextmanager
    async def _place(self, streams: anyio.CapacityLimiter) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            await streams.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            streams.release()

    async def run_sync(self, work: Callable[..., T], *args) -> T:
        """Run one whole upload (`work` reads the body and stores it) once a place is free."""
        streams, threads = self._current()
        async with self._place(streams):
            return await anyio.to_thread.run_sync(work, *args, limiter=threads)

    async def stream(self, body: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
        """A download's sync body for the response, once a place is free: one segment per thread hop, closed
        however it ends (a client that hangs up included)."""
        streams, threads = self._current()
        try:
            async with self._place(streams):
                while True:
                    chunk = await anyio.to_thread.run_sync(next, body, None, limiter=threads)
                    if chunk is None:
                        return
                    yield chunk
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(body.close, limiter=threads)
