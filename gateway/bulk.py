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

from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar

from gateway.config import Settings

T = TypeVar("T")

# Per event loop, like anyio's own thread limiter: (places for streams, threads they may use).
_LIMITS: RunVar[tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]] = RunVar("phigate_bulk_streams")


def configure(streams: int) -> None:
    """Size this event loop's bulk streams (the app's lifespan calls it with the setting)."""
    _LIMITS.set((anyio.CapacityLimiter(streams), anyio.CapacityLimiter(streams)))


def _limits() -> tuple[anyio.CapacityLimiter, anyio.CapacityLimiter]:
    try:
        return _LIMITS.get()
    except LookupError:  # an app served without its lifespan (some test clients): the default size
        configure(Settings.model_fields["bulk_streams"].default)
        return _LIMITS.get()


async def run_sync(work: Callable[..., T], *args) -> T:
    """Run one whole upload (`work` reads the body and stores it) once a place is free."""
    streams, threads = _limits()
    async with streams:
        return await anyio.to_thread.run_sync(work, *args, limiter=threads)


async def stream(body: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Drive a download's sync body once a place is free, one segment per thread hop; close it however it ends."""
    streams, threads = _limits()
    try:
        async with streams:
            while True:
                chunk = await anyio.to_thread.run_sync(next, body, None, limiter=threads)
                if chunk is None:
                    return
                yield chunk
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(body.close, limiter=threads)
