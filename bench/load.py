"""Load benchmark: N concurrent clients with the mixed workload, on SQLite and on PostgreSQL in turn.

    python bench/load.py [--quick] [--clients N] [--seconds S] [--databases sqlite,postgresql] [--asyncio-debug]
                         [--client-processes P] [--set PHIGATE_NAME=VALUE ...]

Per database: `phigate serve` on loopback, seeded with one user and API token per client, a few approved
transfers and a full first page of the practice's list; then the idle list latency (same rows as under
load, 200 lists one after another from this process); then N clients (default 20) for S seconds (default
120), spread over P client processes (default 4, each its own event loop, every role spread evenly over
them): staff upload 1-20 MiB (every fourth a timed 1 MiB one) and list, approvers
approve with fresh TOTP codes, billers download and check every SHA-256, auditors search the audit log.

Why: the gateway must stay correct and responsive under concurrency on both databases. Blocking the event
loop (synchronous database work in async code) or waiting on SQLite's write lock stalls every client at
once: errors (timeouts, 5xx, any 4xx, requests unanswered GRACE s after the deadline), "database is
locked" in the server's log (counted in lines), and with --asyncio-debug slow callbacks. `list` is GET
/api/v1/transfers by any role; `download` covers every size; MB = 1e6 bytes. Last stdout line: JSON.

Measuring the server, not the client: a latency timed by a client includes the time its own event loop
takes to resume it, and with all twenty clients on one loop (as up to this version) a list's timing also
waited on the other clients' HTTP and hashing. So the clients run in several processes and hash uploads
and downloads in threads (hashlib lets go of the interpreter), and each process reports how late its loop
woke a 10 ms sleeper (`load_generator_loop_lag_ms`) and its CPU (`load_generator_cpu_s`, all processes).
Beside the clients' timings, `server_list` / `server_idle_list` are the server's own times for the same
lists (its access log's `duration_ms`: from the request reaching the app to the end of the response, so
not the socket or HTTP parsing before it). The workload (clients, roles, mix, sizes, no think time) is
unchanged; `--client-processes 1` runs every client in this process as before. Server CPU and memory
count the server's worker processes too (PHIGATE_WORKERS > 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import re
import secrets
import subprocess
import sys
import tempfile
import textwrap
import time
import zlib
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pyotp

# Tests load this file by path, so bench/ may not be on sys.path yet.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from transfer import REPO, FreshCodes, MiB, free_port, rss_kib, wait_up

sys.path.insert(0, str(REPO))
from tests.support.pgdb import create_database

MIX = (("practice_staff", 8), ("practice_approver", 3), ("biller", 6), ("auditor", 3))  # per 20 clients
SEEDERS = 3  # extra approvers that only release the pre-load transfers (two TOTP steps each)
IDLE_LISTS = 200
LAG_TICK = 0.01  # s between the client loop-lag probe's wake-ups
CLIENT_PROCESSES = 4  # the clients' processes under load (each its own event loop)
PAGE = 50  # the default page size of the transfer lists
TIMEOUT = 60.0  # per request
GRACE = 10.0  # in-flight requests get this long after the deadline; a healthy one needs a few seconds
STOP_WAIT = 10  # a server whose loop is blocked handles SIGTERM late: wait, so that its last log lines land
SLOW = re.compile(r"Executing (.*) took ([\d.]+) seconds")
SHORT = re.compile(r"\S*/(site-packages|python3\.\d+)/")  # library paths, shortened to the package's

SEED = textwrap.dedent("""
    import json, secrets, sys
    from datetime import timedelta
    from argon2 import PasswordHasher
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.auth import passwords, service as auth, totp
    from gateway.baas.service import record_baa
    from gateway.cli import initialise
    from gateway.components import Components
    from gateway.config import Settings
    from gateway.keys import seal_totp_secret
    from gateway.orgs.models import OrgKind
    from gateway.orgs.service import create_org
    from gateway.users.models import Role
    from gateway.users.service import create_user

    # Clients use API tokens and never sign in: cheap hashes save seconds of argon2id per run.
    passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    settings = Settings()
    initialise(settings)
    c = Components(settings)
    with c.db.transaction() as db:
        a = Actor.system()
        practice = create_org(db, "Load Practice", OrgKind.practice, a)
        vendor = create_org(db, "Load Vendor", OrgKind.vendor, a)
        record_baa(db, practice, vendor, "LOAD", clock.now() - timedelta(days=1), None, a)
        out = {"vendor_id": vendor.id, "users": []}
        for i, role in enumerate(json.loads(sys.argv[1])):
            user, _ = create_user(db, vendor if role == "biller" else practice, f"load-{i:03d}", f"load {i}",
                                  f"load{i}@example.invalid", Role(role), a, password=secrets.token_urlsafe(18))
            secret = totp.new_secret()
            user.totp_secret_sealed, user.totp_enrolled_at = seal_totp_secret(c.keys, user.id, secret), clock.now()
            db.flush()
            _, raw = auth.create_api_token(db, settings, user, "load", 1, a)
            out["users"].append({"id": user.id, "role": role, "token": raw, "secret": secret})
    print(json.dumps(out))
""")

# The stdlib loop in debug mode (uvloop does not report slow callbacks), and the root logger on
# stderr, where asyncio writes "Executing <Task ...> took 0.2 seconds".
DEBUG_LAUNCHER = textwrap.dedent("""
    import asyncio, linecache, logging, uvicorn
    # Debug mode records a source traceback at every Future, and linecache stats each of its files:
    # that instrumentation's own file I/O on the loop is not the gateway's, so it is switched off.
    linecache.checkcache = lambda filename=None: None

    from gateway.app import create_app
    from gateway.config import Settings
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port, loop="asyncio",
                            proxy_headers=False, server_header=False, log_level="info", ws="none")
    config.load()  # its imports before the loop starts, as `phigate serve` does them before serving
    server = uvicorn.Server(config)
    async def main():
        loop = asyncio.get_running_loop()
        # Starting (the lifespan's first thread, anyio's imports) happens once, before any client: a stall
        # there is still reported from 1 s; from the moment the server accepts requests, anything of 0.1 s.
        loop.slow_callback_duration = 1.0
        serving = loop.create_task(server.serve())
        while not (server.started or serving.done()):
            await asyncio.sleep(0.01)
        loop.slow_callback_duration = 0.1
        await serving
    asyncio.run(main(), debug=True)
""")


def log(message: str) -> None:
    print(f"[load] {message}", file=sys.stderr, flush=True)


def role_mix(clients: int) -> list[str]:
    """The 8/3/6/3 mix scaled to `clients`, at least one of each role; staff absorb the rounding."""
    if clients < 4:
        raise ValueError("at least 4 clients, one per role")
    counts = {role: max(1, round(clients * weight / 20)) for role, weight in MIX}
    counts["practice_staff"] += clients - sum(counts.values())
    return [role for role, _ in MIX for _ in range(counts[role])]


def cpu_seconds(pid: int) -> float:
    """The server's CPU time so far (user + system, all threads): the cost of its work, whatever else runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(ms: list[float]) -> dict:
    s = sorted(ms)  # nearest-rank percentiles
    return {
        "count": len(s),
        **{f"p{q}_ms": round(s[max(0, math.ceil(q * len(s) / 100) - 1)], 1) if s else None for q in (50, 95, 99)},
    }


class Bodies:
    """Upload contents cut from one pre-made random buffer (no os.urandom per upload), each file unique by
    its header; the SHA-256 is computed as the chunks are sent, in the same pass."""

    def __init__(self):
        self.data, self.run, self.n = os.urandom(20 * MiB), secrets.token_hex(6), 0

    def make(self, mib: int):
        """(chunks, the hash of what they yielded, size, name) of a new file of `mib` MiB."""
        self.n += 1
        name, h = f"load-{self.run}-{self.n}", hashlib.sha256()
        head = f"%PDF-1.7\n%{name}\n".encode()  # the content sniff wants a PDF header

        async def chunks():
            for off in range(0, mib * MiB, MiB):
                chunk = head + self.data[len(head) : MiB] if off == 0 else self.data[off : off + MiB]
                # In a thread (hashlib lets go of the interpreter for large buffers): a MiB hashed on the
                # loop would delay every other client's timing in this process by a millisecond or more.
                await asyncio.to_thread(h.update, chunk)
                yield chunk

        return chunks(), h, mib * MiB, name


class Hasher:
    """SHA-256 of a streamed download, hashed in a thread a MiB at a time (not on the client's event loop)."""

    def __init__(self):
        self.h, self.parts, self.pending, self.received = hashlib.sha256(), [], 0, 0

    async def add(self, chunk: bytes) -> None:
        self.parts.append(chunk)
        self.pending += len(chunk)
        self.received += len(chunk)
        if self.pending >= MiB:
            await self._flush()

    async def _flush(self) -> None:
        data, self.parts, self.pending = b"".join(self.parts), [], 0
        await asyncio.to_thread(self.h.update, data)

    async def hexdigest(self) -> str:
        await self._flush()
        return self.h.hexdigest()


class Load:
    """One run's shared state: the HTTP client, counters, timings, errors and the expected checksums."""

    def __init__(self, http: httpx.AsyncClient, bodies: Bodies, vendor_id: str, deadline: float = math.inf):
        self.http, self.bodies, self.vendor_id, self.deadline = http, bodies, vendor_id, deadline
        self.counts, self.errors, self.times, self.samples = Counter(), Counter(), defaultdict(list), []
        self.mismatches = self.locked = self.bytes = 0
        self.expected: dict[str, str] = {}  # transfer id -> SHA-256 its uploader sent (one file each)
        self.uploaded: dict[str, str] = {}  # the same, for this process's uploads under load
        self.unchecked: list[tuple[str, str]] = []  # (transfer id, SHA-256 downloaded) of others' uploads
        self.lag: list[float] = []  # ms the loop woke a sleeper late (probe_lag)

    def live(self) -> bool:
        return time.monotonic() < self.deadline

    def error(self, op: str, kind: str, message: str) -> None:
        self.errors[kind] += 1
        self.locked += "database is locked" in message
        self.sample(op, kind, message)

    def sample(self, op: str, kind: str, message: str) -> None:
        if len(self.samples) < 10 and not any(s["op"] == op and s["kind"] == kind for s in self.samples):
            self.samples.append({"op": op, "kind": kind, "message": message[:300]})

    async def fetch(
        self,
        op: str,
        method: str,
        path: str,
        token: str,
        *,
        timed: str | None = None,
        sink=None,
        headers: dict | None = None,
        **kwargs,
    ) -> httpx.Response | None:
        """One request; None (with the error recorded) unless it succeeded. `sink` (async) takes a streamed body."""
        start = time.perf_counter()
        try:
            async with self.http.stream(
                method, path, headers={"Authorization": "Bearer " + token, **(headers or {})}, **kwargs
            ) as r:
                if r.status_code >= 400:  # no 4xx is expected in this workload
                    await r.aread()
                    err = r.json().get("error", {}) if "json" in r.headers.get("content-type", "") else {}
                    self.error(op, f"{r.status_code} {err.get('code', '')}".strip(), err.get("message", r.text))
                    return None
                if sink is None:
                    await r.aread()
                else:
                    async for chunk in r.aiter_bytes():
                        await sink(chunk)
        except httpx.HTTPError as exc:
            self.error(op, type(exc).__name__, str(exc) or repr(exc))
            return None
        except asyncio.CancelledError:
            self.error(
                op,
                "unfinished",
                f"no answer {time.perf_counter() - start:.1f} s after the request started "
                f"(cut off {GRACE:.0f} s after the deadline)",
            )
            raise
        self.counts[op] += 1
        self.times[timed or op].append((time.perf_counter() - start) * 1000)
        return r

    async def list(self, token: str) -> None:
        await self.fetch("list", "GET", "/api/v1/transfers", token)

    async def upload(self, token: str, mib: int, timed: str = "upload") -> str | None:
        chunks, h, size, name = self.bodies.make(mib)
        r = await self.fetch(
            "upload",
            "POST",
            "/api/v1/transfers",
            token,
            timed=timed,
            content=chunks,
            params={"partner_id": self.vendor_id},
            headers={
                "Content-Type": "application/octet-stream",
                "X-Purpose": name,
                "Content-Disposition": f"attachment; filename={name}.pdf",
            },
        )
        if r is None:
            return None
        self.expected[r.json()["id"]] = self.uploaded[r.json()["id"]] = h.hexdigest()
        self.bytes += size
        return r.json()["id"]

    async def approve(self, token: str, transfer_id: str, code: str) -> None:
        await self.fetch(
            "approve", "POST", f"/api/v1/transfers/{transfer_id}/approve", token, json={"days": 1, "code": code}
        )

    async def download(self, token: str, transfer: dict) -> None:
        f, h = transfer["files"][0], Hasher()
        r = await self.fetch(
            "download", "GET", f"/api/v1/transfers/{transfer['id']}/files/{f['id']}/content", token, sink=h.add
        )
        if r is None:
            return
        self.bytes += h.received
        got = await h.hexdigest()
        self.check(transfer["id"], got, {"listing": f["sha256"], "header": r.headers.get("x-content-sha256", got)})

    def check(self, transfer_id: str, got: str, claims: dict[str, str]) -> None:
        """Count a mismatch if the downloaded SHA-256 differs from any claim or from what its uploader sent; an
        upload of another client process is checked by the parent (`unchecked`)."""
        if transfer_id in self.expected:
            claims["uploader"] = self.expected[transfer_id]
        else:
            self.unchecked.append((transfer_id, got))
        if wrong := sorted(k for k, v in claims.items() if v != got):
            self.mismatches += 1
            self.sample("download", "checksum_mismatch", f"transfer {transfer_id}: differs from {wrong}")

    async def probe_lag(self) -> None:
        """How late this process's event loop wakes a sleeper: time every client's request measurement shares."""
        while self.live():
            start = time.perf_counter()
            await asyncio.sleep(LAG_TICK)
            self.lag.append((time.perf_counter() - start - LAG_TICK) * 1000)


# The clients, one coroutine per user: (load, user, index among its role, how many share the role).


async def staff(load: Load, user: dict, i: int, peers: int) -> None:
    cycle = ("upload", "list", "upload", "upload_1mib")
    while load.live():
        step, i = cycle[i % len(cycle)], i + 1
        if step == "list":
            await load.list(user["token"])
        else:
            await load.upload(user["token"], 1 if step == "upload_1mib" else random.randint(1, 20), timed=step)


async def approver(load: Load, user: dict, i: int, peers: int) -> None:
    codes = FreshCodes(pyotp.TOTP(user["secret"]))
    while load.live():
        # The replay guard takes one code per 30-s step, up to the next step: past that, fresh() would
        # sleep, so list instead.
        if codes.last is not None and codes.last > time.time() // 30:
            await load.list(user["token"])
            continue
        r = await load.fetch("approval_queue", "GET", "/api/v1/transfers/approvals", user["token"])
        # Each approver owns a share of the queue, so that two never race for one transfer.
        mine = [t["id"] for t in (r.json() if r else []) if zlib.crc32(t["id"].encode()) % peers == i]
        if mine:
            await load.approve(user["token"], mine[-1], codes.fresh())
        else:
            await load.list(user["token"])


async def biller(load: Load, user: dict, i: int, peers: int) -> None:
    while load.live():
        i += 1
        r = None if i % 3 == 0 else await load.fetch("inbox", "GET", "/api/v1/transfers/inbox", user["token"])
        if r is not None and r.json():
            await load.download(user["token"], random.choice(r.json()))
        else:
            await load.list(user["token"])


async def auditor(load: Load, user: dict, i: int, peers: int) -> None:
    today = datetime.now(UTC).date().isoformat()
    searches = (
        {"action": "transfer.*"},
        {"action": "transfer.download.completed"},
        {"outcome": "denied"},
        {"org": load.vendor_id},
        {"since": today, "until": today, "target_type": "transfer"},
        {"limit": 200},
    )
    while load.live():
        i += 1
        if i % 3 == 0:
            await load.list(user["token"])
        else:
            await load.fetch("search", "GET", "/api/v1/audit/events", user["token"], params=searches[i % len(searches)])


CLIENTS = {"practice_staff": staff, "practice_approver": approver, "biller": biller, "auditor": auditor}


def tree(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's worker processes with PHIGATE_WORKERS > 1)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_seconds(p)
    return total


def tree_rss_kib(pid: int, field: str) -> int:
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError, KeyError):
            total += rss_kib(p, field)
    return total


def server_list_ms(log_path: Path, start: int, end: int) -> list[float]:
    """The server's own time for GET /api/v1/transfers (its access log's `duration_ms`, from the first byte of the
    request in the app to the end of the response) in a byte range of its log; empty without JSON logs."""
    out = []
    with open(log_path, "rb") as f:
        f.seek(start)
        for line in f.read(end - start).splitlines():
            if b'"/api/v1/transfers"' not in line:
                continue
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("route") == "/api/v1/transfers" and rec.get("method") == "GET":
                    out.append(float(rec["duration_ms"]))
    return out


def assign(users: list[dict], processes: int) -> list[list[dict]]:
    """The clients (each with its role, its index among its role and how many share it) dealt round-robin, role
    after role, to `processes` groups: each role spread as evenly as its count allows."""
    by_role = {role: [u for u in users if u["role"] == role] for role, _ in MIX}
    dealt = [
        {"user": user, "role": role, "i": i, "peers": len(peers)}
        for role, peers in by_role.items()
        for i, user in enumerate(peers)
    ]
    return [g for g in (dealt[k::processes] for k in range(processes)) if g]


async def run_clients(
    base: str, vendor_id: str, clients: list[dict], deadline: float, expected: dict[str, str], bodies: Bodies
) -> dict:
    """Run `clients` until the wall-clock `deadline` (time.time()) in this process's loop; its share of the result."""
    limits = httpx.Limits(max_connections=len(clients) + 2, max_keepalive_connections=len(clients) + 2)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT, limits=limits) as http:
        load = Load(http, bodies, vendor_id, time.monotonic() + deadline - time.time())
        load.expected.update(expected)
        cpu, started = time.process_time(), time.monotonic()
        probe = asyncio.create_task(load.probe_lag())
        tasks = [asyncio.create_task(CLIENTS[c["role"]](load, c["user"], c["i"], c["peers"])) for c in clients]
        _, pending = await asyncio.wait(tasks, timeout=load.deadline - time.monotonic() + GRACE)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        probe.cancel()
        elapsed = time.monotonic() - started
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                load.error("client", type(task.exception()).__name__, str(task.exception()))
    return {
        "counts": dict(load.counts),
        "errors": dict(load.errors),
        "times": dict(load.times),
        "samples": load.samples,
        "mismatches": load.mismatches,
        "locked": load.locked,
        "bytes": load.bytes,
        "uploaded": load.uploaded,
        "unchecked": load.unchecked,
        "lag": load.lag,
        "cpu_s": time.process_time() - cpu,
        "elapsed": elapsed,
    }


def client_worker() -> None:
    """One client process (`--client-worker`): its job on stdin (JSON), `ready` once set up, then the start
    time on stdin; its share of the result on stdout (JSON)."""
    job = json.loads(sys.stdin.readline())
    bodies = Bodies()
    print("ready", flush=True)
    deadline = time.time() + float(sys.stdin.readline())
    share = asyncio.run(run_clients(job["base"], job["vendor_id"], job["clients"], deadline, job["expected"], bodies))
    print(json.dumps(share), flush=True)


async def spread(base: str, vendor_id: str, groups: list[list[dict]], seconds: float, expected: dict) -> list[dict]:
    """Run each group of clients in a process of its own, all starting together; their shares of the result."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client-worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,
        )
        for _ in groups
    ]
    try:
        for proc, group in zip(procs, groups, strict=True):
            job = {"base": base, "vendor_id": vendor_id, "clients": group, "expected": expected}
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            await proc.stdin.drain()
        for proc in procs:
            if (await proc.stdout.readline()).strip() != b"ready":
                raise RuntimeError("a client process did not start")
        for proc in procs:
            proc.stdin.write(f"{seconds}\n".encode())
            await proc.stdin.drain()
        shares = [json.loads(await proc.stdout.readline()) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
    return shares


async def drive(
    base: str, creds: dict, seconds: float, pid: int, bodies: Bodies, processes: int, log_path: Path
) -> dict:
    users, seeders = creds["users"][:-SEEDERS], creds["users"][-SEEDERS:]
    uploader = next(u for u in users if u["role"] == "practice_staff")["token"]
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT) as http:
        # Approved files for the billers from the first second, then the idle list latency.
        setup = Load(http, bodies, creds["vendor_id"])
        for seeder in seeders:
            codes = FreshCodes(pyotp.TOTP(seeder["secret"]))
            for _ in range(2):
                if tid := await setup.upload(uploader, 1):
                    await setup.approve(seeder["token"], tid, codes.fresh())
        # A full first page (lists answer at most PAGE items) before the idle measurement, so that idle
        # and loaded lists return as many rows and the comparison is of load, not of list length.
        for _ in range(PAGE - 2 * SEEDERS):
            await setup.upload(uploader, 1)
        idle_cpu, idle_log = tree_cpu_seconds(pid), log_path.stat().st_size
        for _ in range(IDLE_LISTS):
            await setup.list(uploader)
        idle_cpu = tree_cpu_seconds(pid) - idle_cpu
    if setup.errors:
        raise RuntimeError(f"setup failed: {json.dumps(setup.samples)}")
    rss_start, server_cpu = tree_rss_kib(pid, "VmRSS"), tree_cpu_seconds(pid)
    load_log = log_path.stat().st_size

    groups = assign(users, processes)
    log(f"load: {len(users)} clients in {len(groups)} process(es) for {seconds:g} s")
    if len(groups) == 1:
        shares = [await run_clients(base, creds["vendor_id"], groups[0], time.time() + seconds, setup.expected, bodies)]
    else:
        shares = await spread(base, creds["vendor_id"], groups, seconds, setup.expected)
    rss_end, rss_peak = tree_rss_kib(pid, "VmRSS"), tree_rss_kib(pid, "VmHWM")
    server_cpu = tree_cpu_seconds(pid) - server_cpu
    end_log = log_path.stat().st_size

    counts: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    times: defaultdict[str, list[float]] = defaultdict(list)
    samples: list[dict] = []
    mismatches = locked = moved = 0
    uploaded = dict(setup.expected)
    for share in shares:
        counts.update(share["counts"])
        errors.update(share["errors"])
        for op, ms in share["times"].items():
            times[op] += ms
        samples += [s for s in share["samples"] if len(samples) < 10]
        mismatches, locked, moved = mismatches + share["mismatches"], locked + share["locked"], moved + share["bytes"]
        uploaded.update(share["uploaded"])
    for share in shares:
        for transfer_id, got in share["unchecked"]:
            if uploaded.get(transfer_id, got) != got:
                mismatches += 1
                if len(samples) < 10:
                    samples.append(
                        {"op": "download", "kind": "checksum_mismatch", "message": f"transfer {transfer_id}"}
                    )
    elapsed = max(share["elapsed"] for share in shares)
    operations = sum(counts.values())
    lag = [ms for share in shares for ms in share["lag"]]
    idle_p99, lists = summary(setup.times["list"])["p99_ms"], summary(times["list"])
    served_idle, served = (
        summary(server_list_ms(log_path, idle_log, load_log)),
        summary(server_list_ms(log_path, load_log, end_log)),
    )
    return {
        "operations": operations,
        "errors": sum(errors.values()),
        "checksum_mismatches": mismatches,
        "database_locked": locked,
        "uploads": counts["upload"],
        "approvals": counts["approve"],
        "downloads": counts["download"],
        "searches": counts["search"],
        "counts": dict(counts),
        "list": lists,
        "upload_1mib": summary(times["upload_1mib"]),
        "download": summary(times["download"]),
        "mb_s": round(moved / 1e6 / elapsed, 1),
        "seconds_measured": round(elapsed, 1),
        "rss_start_mb": round(rss_start / 1024, 1),
        "rss_end_mb": round(rss_end / 1024, 1),
        "rss_peak_mb": round(rss_peak / 1024, 1),
        "rss_growth_mb": round((rss_end - rss_start) / 1024, 1),
        "idle_list_p99_ms": idle_p99,
        "idle_list_server_cpu_ms": round(idle_cpu * 1000 / IDLE_LISTS, 2),
        "server_cpu_per_operation_ms": round(server_cpu * 1000 / max(1, operations), 1),
        "list_p99_over_idle": round(lists["p99_ms"] / idle_p99, 2) if lists["p99_ms"] and idle_p99 else None,
        "server_idle_list": served_idle,
        "server_list": served,
        "server_list_p99_over_idle": (
            round(served["p99_ms"] / served_idle["p99_ms"], 2) if served["p99_ms"] and served_idle["p99_ms"] else None
        ),
        "client_processes": len(shares),
        "load_generator_cpu_s": round(sum(share["cpu_s"] for share in shares), 1),
        "load_generator_loop_lag_ms": {**summary(lag), "max_ms": round(max(lag, default=0.0), 1)},
        "error_kinds": dict(errors),
        "error_samples": samples,
    }


def seed(env: dict, roles: list[str]) -> dict:
    """Organisations, a BAA, and per role a user with TOTP and an API token, written through the services."""
    done = subprocess.run(
        [sys.executable, "-c", SEED, json.dumps(roles)], env=env, capture_output=True, text=True, cwd=REPO, timeout=300
    )
    if done.returncode:
        raise RuntimeError(f"seeding failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_one(
    database: str,
    clients: int,
    seconds: float,
    asyncio_debug: bool,
    bodies: Bodies,
    server_env: dict[str, str],
    processes: int = CLIENT_PROCESSES,
) -> dict:
    with tempfile.TemporaryDirectory(prefix="phigate-load-") as tmp:
        work, port = Path(tmp), free_port()
        # This run's settings only: nothing inherited may point the server elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
        env.update(server_env)
        env.update(PHIGATE_DATA_DIR=str(work / "var"), PHIGATE_HOST="127.0.0.1", PHIGATE_PORT=str(port))
        drop = None
        if database == "postgresql":
            env["PHIGATE_DATABASE_URL"], drop = create_database("phigate_load")
        try:
            log(f"{database}: seeding")
            creds = seed(env, role_mix(clients) + ["practice_approver"] * SEEDERS)
            cmd = [sys.executable, "-m", "gateway.cli", "serve"]
            if asyncio_debug:
                cmd, env = [sys.executable, "-c", DEBUG_LAUNCHER], {**env, "PYTHONASYNCIODEBUG": "1"}
            with open(work / "server.log", "wb") as stderr:
                proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                wait_up(f"http://127.0.0.1:{port}/healthz", proc)
                result = asyncio.run(
                    drive(f"http://127.0.0.1:{port}", creds, seconds, proc.pid, bodies, processes, work / "server.log")
                )
            finally:
                proc.terminate()
                try:
                    proc.wait(STOP_WAIT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            lines = (work / "server.log").read_text(errors="replace").splitlines()
        finally:
            if drop:
                drop()
    slow = [m for m in map(SLOW.search, lines) if m]
    result["database_locked"] += sum("database is locked" in line for line in lines)
    result["server_log_errors"] = sum(" ERROR " in line or line.startswith("ERROR:") for line in lines)
    result["slow_callbacks"] = len(slow) if asyncio_debug else None
    result["slow_callback_max_s"] = max((float(m[2]) for m in slow), default=0.0) if asyncio_debug else None
    result["slow_callback_samples"] = (
        [f"{SHORT.sub('', m[1]).replace(f'{REPO}/', '')[:260]} took {m[2]} s" for m in slow[:5]]
        if asyncio_debug
        else None
    )
    log(
        f"{database}: {result['operations']} operations, {result['errors']} errors, "
        f"{result['database_locked']} locked, {result['slow_callbacks']} slow callbacks"
    )
    return result


def run(
    databases=("sqlite", "postgresql"),
    clients: int = 20,
    seconds: float = 120,
    asyncio_debug: bool = False,
    quick: bool = False,
    server_env: dict[str, str] | None = None,
    client_processes: int = CLIENT_PROCESSES,
) -> dict:
    if unknown := set(databases) - {"sqlite", "postgresql"}:
        raise ValueError(f"unknown databases: {sorted(unknown)}")
    bodies = Bodies()
    server_env = dict(server_env or {})
    if unknown := [k for k in server_env if not k.startswith("PHIGATE_")]:
        raise ValueError(f"only PHIGATE_* settings may be set: {unknown}")
    per_db = {
        db: run_one(db, clients, seconds, asyncio_debug, bodies, server_env, client_processes) for db in databases
    }
    ratio = (
        round(per_db["sqlite"]["operations"] / max(1, per_db["postgresql"]["operations"]), 3)
        if {"sqlite", "postgresql"} <= per_db.keys()
        else None
    )
    rs = per_db.values()
    return {
        "clients": clients,
        "seconds": seconds,
        "quick": quick,
        "asyncio_debug": asyncio_debug,
        "server_settings": server_env,
        "client_processes": client_processes,
        **per_db,
        "sqlite_ops_over_postgresql": ratio,
        "targets_met": {
            "no_errors_mismatches_or_locks": all(
                r["errors"] == r["checksum_mismatches"] == r["database_locked"] == 0 for r in rs
            ),
            "sqlite_ops_at_least_0.7x_postgresql": None if ratio is None else ratio >= 0.7,
            "list_p99_within_5x_idle": all((r["list_p99_over_idle"] or math.inf) <= 5 for r in rs),
            "rss_growth_within_150mb": all(r["rss_growth_mb"] <= 150 for r in rs),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 s per database (under a minute in all)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--seconds", type=float, default=None, help="load per database (default 120)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--asyncio-debug",
        action="store_true",
        help="serve on the asyncio loop in debug mode and count callbacks of 0.1 s or more",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PHIGATE_NAME=VALUE",
        help="a server setting for this run (repeatable), to compare sizes",
    )
    parser.add_argument(
        "--client-processes",
        type=int,
        default=CLIENT_PROCESSES,
        help=f"processes the clients are spread over under load (default {CLIENT_PROCESSES}; 1: all in this one)",
    )
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client_worker:
        client_worker()
        return
    if bad := [s for s in args.set if "=" not in s]:
        parser.error(f"--set takes NAME=VALUE: {bad}")
    databases = tuple(d.strip() for d in args.databases.split(",") if d.strip())
    print(
        json.dumps(
            run(
                databases,
                args.clients,
                args.seconds or (12 if args.quick else 120),
                args.asyncio_debug,
                args.quick,
                dict(s.split("=", 1) for s in args.set),
                args.client_processes,
            )
        )
    )


if __name__ == "__main__":
    main()
