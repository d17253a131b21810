"""Transfer benchmark: upload then download one file through the real gateway over HTTP.

    python bench/transfer.py [--quick] [--size-mib N] [--repeats R]

Starts `phigate serve` (uvicorn, loopback, local storage, local keyring, SQLite) in
a subprocess with its own data directory, creates a practice, a vendor, a BAA and
three users with API tokens, then streams a generated file (never held in memory)
up as a raw `application/octet-stream` body, approves it, and streams it back.

In the same run it measures a baseline: a bare FastAPI/uvicorn app that streams the
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

BASELINE_APP = textwrap.dedent('''
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
''')


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
        chunk = (head + block[len(head):n]) if first else block[:n]
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


def server_pid(proc: subprocess.Popen) -> int:
    """The uvicorn process: the child itself (phigate serve runs uvicorn in-process)."""
    return proc.pid


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
    code = textwrap.dedent('''
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
    ''')
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


def run_gateway(size: int, repeats: int, workdir: Path) -> dict:
    import pyotp

    port = free_port()
    env = {**os.environ, "PHIGATE_DATA_DIR": str(workdir / "var"), "PHIGATE_PORT": str(port),
           "PHIGATE_MAX_FILE_SIZE": str(max(size, 1) + MiB)}
    creds = seed(env)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve"], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/healthz", proc)
        pid = server_pid(proc)
        idle = rss_kib(pid, "VmRSS")
        ups, downs = [], []
        codes = FreshCodes(pyotp.TOTP(creds["approver"]["secret"]))
        with httpx.Client(timeout=None) as client:
            for i in range(repeats):
                auth = {"Authorization": "Bearer " + creds["staff"]["token"]}
                elapsed, r = timed_upload(client, f"{base}/api/v1/transfers", size, params={"partner_id": creds["vendor_id"]},
                                          headers={**auth, "Content-Type": "application/octet-stream",
                                                   "X-Purpose": f"BENCH-{i}",
                                                   "Content-Disposition": "attachment; filename=bench.pdf"})
                r.raise_for_status()
                tid = r.json()["id"]
                ups.append(elapsed)
                # Approve with a code of a TOTP step not used before (the gateway refuses replays).
                r = client.post(f"{base}/api/v1/transfers/{tid}/approve", json={"days": 1, "code": codes.fresh()},
                                headers={"Authorization": "Bearer " + creds["approver"]["token"]})
                r.raise_for_status()
                fid = r.json()["files"][0]["id"]
                elapsed, n = timed_download(client, f"{base}/api/v1/transfers/{tid}/files/{fid}/content",
                                               headers={"Authorization": "Bearer " + creds["biller"]["token"]})
                if n != size:
                    raise RuntimeError(f"downloaded {n} bytes, expected {size}")
                downs.append(elapsed)
        peak = rss_kib(pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(30)
    return {"upload_s": ups, "download_s": downs, "idle_rss_mb": idle / 1024, "peak_rss_mb": peak / 1024}


def run_baseline(size: int, repeats: int, workdir: Path) -> dict:
    port = free_port()
    (workdir / "baseline").mkdir()
    (workdir / "baseline_app.py").write_text(BASELINE_APP)
    env = {**os.environ, "BASELINE_DIR": str(workdir / "baseline"), "PYTHONPATH": str(workdir)}
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "baseline_app:app", "--host", "127.0.0.1", "--port",
                             str(port), "--log-level", "warning"], env=env, cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base + "/docs", proc)
        ups, downs = [], []
        with httpx.Client(timeout=None) as client:
            for _ in range(repeats):
                elapsed, r = timed_upload(client, f"{base}/upload", size,
                                          headers={"Content-Type": "application/octet-stream"})
                r.raise_for_status()
                ups.append(elapsed)
                elapsed, n = timed_download(client, f"{base}/download")
                downs.append(elapsed)
        peak = rss_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        proc.wait(30)
    return {"upload_s": ups, "download_s": downs, "peak_rss_mb": peak / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 MiB, one repeat (under a minute)")
    parser.add_argument("--size-mib", type=int, default=None, help="file size (default 1024)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side; the median is reported")
    args = parser.parse_args()
    size_mib = args.size_mib or (128 if args.quick else 1024)
    repeats = args.repeats or (1 if args.quick else 3)
    size = size_mib * MiB
    with tempfile.TemporaryDirectory(prefix="phigate-bench-") as tmp:
        work = Path(tmp)
        baseline = run_baseline(size, repeats, work)
        gateway = run_gateway(size, repeats, work)
    mb = size / 1e6

    def rate(times):
        return round(mb / statistics.median(times), 1)

    result = {
        "size_mib": size_mib, "repeats": repeats, "units": "MB = 1e6 bytes, medians of the repeats",
        "upload_mb_s": rate(gateway["upload_s"]), "download_mb_s": rate(gateway["download_s"]),
        "baseline_upload_mb_s": rate(baseline["upload_s"]), "baseline_download_mb_s": rate(baseline["download_s"]),
    }
    result["upload_ratio"] = round(result["upload_mb_s"] / result["baseline_upload_mb_s"], 3)
    result["download_ratio"] = round(result["download_mb_s"] / result["baseline_download_mb_s"], 3)
    result["server_idle_rss_mb"] = round(gateway["idle_rss_mb"], 1)
    result["server_peak_rss_mb"] = round(gateway["peak_rss_mb"], 1)
    result["server_peak_over_idle_mb"] = round(gateway["peak_rss_mb"] - gateway["idle_rss_mb"], 1)
    result["baseline_server_peak_rss_mb"] = round(baseline["peak_rss_mb"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
