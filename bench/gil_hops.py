"""What one thread hop costs the event loop while worker threads compute, by switch interval.

    python bench/gil_hops.py [--busy 2,6] [--intervals-ms 5,1,0.5] [--hops 300] [--rounds 2]

Why: a request to the gateway is a few hops between the event loop and worker threads (a
dependency, the handler, a session's close). Each hop ends with a thread asking for Python's
interpreter lock while others hold it; a holder lets go only after the switch interval
(`sys.setswitchinterval`, Python's default 5 ms), and the lock goes to whichever waiter the OS
wakes. So under load a hop waits a multiple of the interval, and a read that is a few
milliseconds of work answers after hundreds. This measures it in isolation: `busy` threads run
pure-Python loops (as list and search handlers do) while the loop times `hops` round trips of a
small handler through anyio's thread pool; and the busy threads' work per CPU second, which is what
a shorter interval could cost. The gateway sets `PHIGATE_SWITCH_INTERVAL_MS` (gateway/app.py).
Last stdout line: JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time

import anyio.to_thread


async def _measure(interval: float, busy: int, hops: int) -> dict:
    sys.setswitchinterval(interval)
    stop, counts = threading.Event(), [0] * busy

    def burn(k: int) -> None:
        n = 0
        while not stop.is_set():
            for _ in range(1000):
                pass
            n += 1
        counts[k] = n

    threads = [threading.Thread(target=burn, args=(k,), daemon=True) for k in range(busy)]
    cpu = time.process_time()
    for t in threads:
        t.start()
    lat = []
    for _ in range(hops):
        start = time.perf_counter()
        await anyio.to_thread.run_sync(sum, range(2000))
        lat.append((time.perf_counter() - start) * 1000)
    stop.set()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu
    lat.sort()
    return {
        "busy_threads": busy,
        "switch_interval_ms": interval * 1000,
        "hop_p50_ms": round(lat[len(lat) // 2], 2),
        "hop_p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))], 2),
        "busy_work_per_cpu_s": round(sum(counts) / cpu) if cpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", default="2,6", help="comma-separated numbers of busy threads")
    parser.add_argument("--intervals-ms", default="5,1,0.5", help="comma-separated switch intervals")
    parser.add_argument("--hops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results = []
    for _ in range(args.rounds):
        for busy in (int(b) for b in args.busy.split(",")):
            for ms in (float(i) for i in args.intervals_ms.split(",")):
                r = asyncio.run(_measure(ms / 1000, busy, args.hops))
                print(f"[gil_hops] {r}", file=sys.stderr, flush=True)
                results.append(r)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
