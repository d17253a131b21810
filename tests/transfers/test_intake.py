"""The request body as batches for a worker thread (gateway.transfers.intake.BodyChunks)."""

from __future__ import annotations

import asyncio
import os

import anyio

from gateway.transfers.intake import BATCH, PREFETCH, body_chunks


class Body:
    """An endless request body that records how much was read and whether the reading was stopped."""

    def __init__(self, piece: int = 64 * 1024, total: int | None = None):
        self.piece, self.total = piece, total
        self.read = 0
        self.stopped = asyncio.Event()  # the reading was ended before the body was
        self.data = bytearray()

    async def stream(self):
        try:
            while self.total is None or self.read < self.total:
                chunk = os.urandom(min(self.piece, (self.total or 2**62) - self.read))
                self.read += len(chunk)
                self.data += chunk
                yield chunk
                await asyncio.sleep(0)
        except (asyncio.CancelledError, GeneratorExit):
            # Cancelled while reading, or closed once the cancelled reader let go of it.
            self.stopped.set()
            raise


def test_started_early_it_reads_ahead_before_the_first_batch_is_taken_and_gives_every_byte():
    async def main():
        body = Body(total=5 * BATCH + 123)
        raw = body_chunks(body.stream())

        def work():
            raw.start()
            # Set-up work here (the database, the keys) while the body arrives, until the queue is full.
            for _ in range(10_000):
                if body.read > PREFETCH * BATCH:
                    break
                anyio.from_thread.run(asyncio.sleep, 0.001)
            ahead = body.read
            try:
                return ahead, list(raw)
            finally:
                raw.close()

        ahead, batches = await anyio.to_thread.run_sync(work)
        assert ahead > PREFETCH * BATCH  # read before the worker asked for anything
        assert ahead <= (PREFETCH + 2) * BATCH  # but no more than the queue holds and a batch being joined
        assert b"".join(batches) == bytes(body.data)
        assert all(len(b) >= BATCH for b in batches[:-1])

    asyncio.run(main())


def test_closed_before_any_batch_is_taken_it_stops_reading():
    """A worker that refuses the request before taking a batch (a wrong offset, say) stops the read-ahead."""

    async def main():
        body = Body()
        raw = body_chunks(body.stream())

        def work():
            raw.start()
            anyio.from_thread.run(asyncio.sleep, 0.02)
            raw.close()

        await anyio.to_thread.run_sync(work)
        # The cancellation reaches the reading task on a later turn of the loop (bounded, not timed).
        await asyncio.wait_for(body.stopped.wait(), timeout=60)
        assert list(raw) == []  # closed: nothing more is taken

    asyncio.run(main())


def test_not_started_it_reads_nothing_until_the_first_batch_is_taken():
    async def main():
        body = Body(total=2 * BATCH)
        raw = body_chunks(body.stream())

        def work():
            anyio.from_thread.run(asyncio.sleep, 0.02)
            before = body.read
            first = next(raw)
            raw.close()
            return before, first

        before, first = await anyio.to_thread.run_sync(work)
        assert before == 0 and len(first) >= BATCH

    asyncio.run(main())
