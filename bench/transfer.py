"""Transfer benchmark: upload then download one file through the real gateway over HTTP.

    python bench/transfer.py [--quick] [--size-mib N] [--repeats R]

Starts `phigate serve` (uvicorn, loopback, local storage, local keyring, SQLite) in
a subprocess with its own data directory, creates a practice, a vendor, a BAA and
three users with API tokens, then streams a generated file (never held in memory)
up as a raw `application/octet-stream` body, approves it, and streams it back.

Each round also sends the same file as a resumable (tus) upload in 8 MiB PATCHes (each
streamed with its Content-Length, as a client slicing a file sends it) and makes a transfer
of it, right before the direct upload in even rounds and right after it in odd ones:
`resumable_over_direct` is the median of the rounds' ratios of the two rates, and
`resumable_cpu_over_direct` the same for the gateway's CPU seconds (all threads, from
/proc), which other load on the machine disturbs less.  One small upload each way warms
the server up first, unmeasured.

In the same run, alternating with it round by round, a baseline: a bare FastAPI/uvicorn app that streams the
same request body to a file (fsynced, as the gateway's store does) and back with
FileResponse, no encryption, no database.

Server memory is read from /proc: idle RSS before the first upload, and the
high-water mark (VmHWM) after the run. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
CHUNK = MiB
RESUMABLE_CHUNK = 8 * MiB  # PATCH size of the resumable (tus) upload

BASELINE_APP = textwrap.dedent("""
    import os
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse

    app = FastAPI()
    DIR = os.environ["BASELINE_DIR"]

    @app.post("/upload")
    async def upload(request: Request):
        path = os.path.join(DIR, "blob")
        with open(path, "wb") as fh:
            async for chunk in request.stream():
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return {"size": os.path.getsize(path)}

    @app.get("/download")
    def download():
        return FileResponse(os.path.join(DIR, "blob"), media_type="application/octet-stream")
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def body(size: int):
    """The benchmark file: a PDF header, then pseudo-random 1 MiB blocks; generated as it is sent."""
    block = os.urandom(CHUNK)
    head = b"%PDF-1.7\n"
    sent = 0
    first = True
    while sent < size:
        n = min(CHUNK, size - sent)
        chunk = (head + block[len(head) : n]) if first else block[:n]
        first = False
        sent += n
        yield chunk


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads): steadier than wall time on a busy machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_upload(client: httpx.Client, url: str, size: int, **kwargs) -> tuple[float, httpx.Response]:
    start = time.perf_counter()
    r = client.post(url, content=body(size), **kwargs)
    return time.perf_counter() - start, r


def timed_download(client: httpx.Client, url: str, **kwargs) -> tuple[float, int]:
    n = 0
    start = time.perf_counter()
    with client.stream("GET", url, **kwargs) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(CHUNK):
            n += len(chunk)
    return time.perf_counter() - start, n


def seed(env: dict) -> dict:
    """Organisations, a BAA, users and API tokens, written straight to the gateway's database."""
    code = textwrap.dedent("""
        import json, warnings
        from datetime import timedelta
        warnings.simplefilter("ignore")
        from gateway import clock
        from gateway.audit.service import Actor
        from gateway.auth import service as auth, totp
        from gateway.baas.service import record_baa
        from gateway.cli import initialise
        from gateway.components import Components
        from gateway.config import Settings
        from gateway.keys import seal_totp_secret
        from gateway.orgs.models import OrgKind
        from gateway.orgs.service import create_org
        from gateway.users.models import Role
        from gateway.users.service import create_user

        settings = Settings()
        initialise(settings)
        c = Components(settings)
        out = {}
        with c.db.transaction() as db:
            a = Actor.system()
            practice = create_org(db, "Bench Practice", OrgKind.practice, a)
            vendor = create_org(db, "Bench Vendor", OrgKind.vendor, a)
            record_baa(db, practice, vendor, "BENCH", clock.now() - timedelta(days=1), None, a)
            out["vendor_id"] = vendor.id
            for name, role, org in (("staff", Role.practice_staff, practice), ("approver", Role.practice_approver, practice),
                                    ("biller", Role.biller, vendor)):
                user, _ = create_user(db, org, "bench-" + name, name, name + "@example.invalid", role, a,
                                      password="bench password " + name)
                secret = totp.new_secret()
                user.totp_secret_sealed = seal_totp_secret(c.keys, user.id, secret)
                user.totp_enrolled_at = clock.now()
                db.flush()
                _, raw = auth.create_api_token(db, settings, user, "bench", 1, a)
                out[name] = {"token": raw, "secret": secret}
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


class FreshCodes:
    """TOTP codes, each of a step later than the last one used (one step of drift is accepted)."""

    def __init__(self, totp):
        self.totp, self.last = totp, None

    def fresh(self) -> str:
        now = int(time.time()) // 30
        step = now if self.last is None or self.last < now else self.last + 1
        if step > now + 1:
            time.sleep((step - 1) * 30 - time.time() + 0.5)
        self.last = step
        return self.totp.at(step * 30)


class Gateway:
    """`phigate serve` in its own data directory, seeded, with the three users' tokens."""

    def __init__(self, size: int, workdir: Path):
        import pyotp

        self.size = size
        port = free_port()
        env = {
            **os.environ,
            "PHIGATE_DATA_DIR": str(workdir / "var"),
            "PHIGATE_PORT": str(port),
            "PHIGATE_MAX_FILE_SIZE": str(max(size, 1) + MiB),
        }
        self.creds = seed(env)
        self.codes = FreshCodes(pyotp.TOTP(self.creds["approver"]["secret"]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{port}"
        wait_up(self.base + "/healthz", self.proc)
        self.idle_kib = rss_kib(self.proc.pid, "VmRSS")
        self.n = 0

    def _auth(self, who: str) -> dict:
        return {"Authorization": "Bearer " + self.creds[who]["token"]}

    def direct(self, client: httpx.Client, size: int) -> tuple[float, httpx.Response]:
        self.n += 1
        return timed_upload(
            client,
            f"{self.base}/api/v1/transfers",
            size,
            params={"partner_id": self.creds["vendor_id"]},
            headers={
                **self._auth("staff"),
                "Content-Type": "application/octet-stream",
                "X-Purpose": f"BENCH-{self.n}",
                "Content-Disposition": "attachment; filename=bench.pdf",
            },
        )

    def warm(self, client: httpx.Client) -> None:
        """One small upload each way, unmeasured: the first request of a kind pays for imports and caches."""
        self.direct(client, RESUMABLE_CHUNK)[1].raise_for_status()
        self.resumable(client, 2 * RESUMABLE_CHUNK)

    def round(self, client: httpx.Client) -> tuple[float, float, float]:
        """Upload, approve (a fresh TOTP step), download; returns the two transfer times and the upload's server CPU."""
        cpu = cpu_seconds(self.proc.pid)
        up, r = self.direct(client, self.size)
        r.raise_for_status()
        cpu = cpu_seconds(self.proc.pid) - cpu
        tid = r.json()["id"]
        r = client.post(
            f"{self.base}/api/v1/transfers/{tid}/approve",
            json={"days": 1, "code": self.codes.fresh()},
            headers=self._auth("approver"),
        )
        r.raise_for_status()
        fid = r.json()["files"][0]["id"]
        down, n = timed_download(
            client, f"{self.base}/api/v1/transfers/{tid}/files/{fid}/content", headers=self._auth("biller")
        )
        if n != self.size:
            raise RuntimeError(f"downloaded {n} bytes, expected {self.size}")
        return up, down, cpu

    def resumable(self, client: httpx.Client, size: int | None = None) -> tuple[float, float]:
        """The same file as a tus upload in 8 MiB PATCHes, then a transfer made of it; returns the time and server CPU."""
        import base64

        size = self.size if size is None else size
        self.n += 1
        meta = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in (
                ("filename", "bench.pdf"),
                ("partner_id", self.creds["vendor_id"]),
                ("purpose", f"BENCH-{self.n}"),
            )
        )
        tus = {**self._auth("staff"), "Tus-Resumable": "1.0.0"}
        cpu = cpu_seconds(self.proc.pid)
        start = time.perf_counter()
        r = client.post(
            f"{self.base}/api/v1/uploads", headers={**tus, "Upload-Length": str(size), "Upload-Metadata": meta}
        )
        r.raise_for_status()
        url, offset, chunks = self.base + r.headers["Location"], 0, body(size)
        while offset < size:
            # One PATCH: the next 8 MiB of the same generated stream, sent as it is produced (a declared
            # Content-Length, no chunked encoding), as a client slicing a file does; never joined into one buffer.
            length = min(RESUMABLE_CHUNK, size - offset)
            pieces = [next(chunks) for _ in range(-(-length // CHUNK))]
            r = client.patch(
                url,
                content=iter(pieces),
                headers={
                    **tus,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(sum(len(p) for p in pieces)),
                },
            )
            r.raise_for_status()
            if int(r.headers["Upload-Offset"]) != offset + length:
                raise RuntimeError("the gateway kept less than a whole PATCH on a quiet loopback link")
            offset += length
        r = client.post(
            f"{self.base}/api/v1/uploads/transfers",
            json={"upload_ids": [url.rsplit("/", 1)[1]]},
            headers=self._auth("staff"),
        )
        r.raise_for_status()
        return time.perf_counter() - start, cpu_seconds(self.proc.pid) - cpu

    def stop(self) -> float:
        peak = rss_kib(self.proc.pid, "VmHWM")
        self.proc.terminate()
        self.proc.wait(30)
        return peak


class Baseline:
    """A bare FastAPI/uvicorn app: body to an fsynced file and back with FileResponse."""

    def __init__(self, size: int, workdir: Path):
        self.size = size
        port = free_port()
        (workdir / "baseline").mkdir()
        (workdir / "baseline_app.py").write_text(BASELINE_APP)
        env = {**os.environ, "BASELINE_DIR": str(workdir / "baseline"), "PYTHONPATH": str(workdir)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "baseline_app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.base = f"http://127.0.0.1:{port}"
        wait_up(self.base + "/docs", self.proc)

    def round(self, client: httpx.Client) -> tuple[float, float, float]:
        """Upload and download; returns the two times and the upload's server CPU."""
        cpu = cpu_seconds(self.proc.pid)
        up, r = timed_upload(
            client, f"{self.base}/upload", self.size, headers={"Content-Type": "application/octet-stream"}
        )
        r.raise_for_status()
        cpu = cpu_seconds(self.proc.pid) - cpu
        down, n = timed_download(client, f"{self.base}/download")
        if n != self.size:
            raise RuntimeError(f"baseline downloaded {n} bytes, expected {self.size}")
        return up, down, cpu

    def stop(self) -> float:
        peak = rss_kib(self.proc.pid, "VmHWM")
        self.proc.terminate()
        self.proc.wait(30)
        return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 MiB, two rounds (under a minute)")
    parser.add_argument("--size-mib", type=int, default=None, help="file size (default 1024)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side; the median is reported")
    args = parser.parse_args()
    size_mib = args.size_mib or (128 if args.quick else 1024)
    repeats = args.repeats or (2 if args.quick else 5)
    size = size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="phigate-bench-") as tmp:
        work = Path(tmp)
        baseline, gateway = Baseline(size, work), Gateway(size, work)
        try:
            # Alternate the two, so that whatever else the machine does hits both alike.
            base_up, base_down, gw_up, gw_down, gw_tus, cpu_up, cpu_tus, cpu_base = [], [], [], [], [], [], [], []
            with httpx.Client(timeout=None) as client:
                gateway.warm(client)
                for i in range(repeats):
                    up, down, base_cpu = baseline.round(client)
                    base_up.append(up)
                    base_down.append(down)
                    cpu_base.append(base_cpu)
                    # The resumable upload right before the direct one in even rounds, right after it in odd ones.
                    if i % 2 == 0:
                        tus, tus_cpu = gateway.resumable(client)
                    up, down, up_cpu = gateway.round(client)
                    if i % 2 == 1:
                        tus, tus_cpu = gateway.resumable(client)
                    gw_up.append(up)
                    gw_down.append(down)
                    gw_tus.append(tus)
                    cpu_up.append(up_cpu)
                    cpu_tus.append(tus_cpu)
        finally:
            baseline_peak = baseline.stop()
            gateway_peak = gateway.stop()
    mb = size / 1e6

    def rate(times):
        return round(mb / statistics.median(times), 1)

    result = {
        "size_mib": size_mib,
        "repeats": repeats,
        "units": "MB = 1e6 bytes; rates are medians; ratios are medians of the per-round ratios",
        "upload_mb_s": rate(gw_up),
        "download_mb_s": rate(gw_down),
        "baseline_upload_mb_s": rate(base_up),
        "baseline_download_mb_s": rate(base_down),
        "upload_ratio": round(statistics.median(b / g for b, g in zip(base_up, gw_up, strict=False)), 3),
        "download_ratio": round(statistics.median(b / g for b, g in zip(base_down, gw_down, strict=False)), 3),
        "upload_ratio_per_round": [round(b / g, 3) for b, g in zip(base_up, gw_up, strict=False)],
        # tus, 8 MiB PATCHes, including the transfer made of the upload; against the direct upload of the same round.
        "resumable_upload_mb_s": rate(gw_tus),
        "resumable_over_direct": round(statistics.median(d / t for d, t in zip(gw_up, gw_tus, strict=False)), 3),
        "resumable_over_direct_per_round": [round(d / t, 3) for d, t in zip(gw_up, gw_tus, strict=False)],
        # The gateway's CPU seconds for each upload (all threads): what the resumable path costs beyond the
        # direct one, less at the mercy of other load than the rates are.
        "direct_upload_server_cpu_s": round(statistics.median(cpu_up), 2),
        "resumable_upload_server_cpu_s": round(statistics.median(cpu_tus), 2),
        "resumable_cpu_over_direct": round(statistics.median(t / d for d, t in zip(cpu_up, cpu_tus, strict=False)), 3),
        # Each round's server CPU seconds for the direct upload and for the baseline's: a round that is slow for
        # lack of CPU (other load) and one where the server itself did more work read differently here.
        "direct_upload_server_cpu_s_per_round": [round(c, 2) for c in cpu_up],
        "baseline_upload_server_cpu_s_per_round": [round(c, 2) for c in cpu_base],
        "server_idle_rss_mb": round(gateway.idle_kib / 1024, 1),
        "server_peak_rss_mb": round(gateway_peak / 1024, 1),
        "server_peak_over_idle_mb": round((gateway_peak - gateway.idle_kib) / 1024, 1),
        "baseline_server_peak_rss_mb": round(baseline_peak / 1024, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
