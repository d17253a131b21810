"""The scale-out check (`make scale-check`): three replicas behind nginx TLS, one killed mid-run.

    python bench/scale.py [--clients 20] [--seconds 60] [--replicas 3]

Everything on loopback: moto's server as the S3 and KMS endpoint over HTTP, one
PostgreSQL database (created here, dropped at the end), migrations run once with
`phigate db upgrade`, `--replicas` `phigate serve` processes (PHIGATE_ENV=production,
S3 + KMS + PostgreSQL) and nginx terminating TLS with a throw-away certificate,
configured with the very snippets deploy/ ships (deploy/nginx/snippets/).

`--clients` threads then work through the proxy for `--seconds`: uploads of
1-20 MiB (a third of them exactly 1 MiB), approvals (a fresh TOTP step each),
downloads compared by SHA-256, audit event searches and transfer lists. Halfway
through, the replica leading the scheduler is killed with SIGKILL.

A failed request counts in `errors_on_killed_replica` only if nginx's log shows
it went to the killed replica and it started before the kill; any other failure
counts in `errors`. Every second the scheduler's leadership is sampled: the
distinct holders among the lease row in the database and every live replica
whose `/metrics` says it leads; `scheduler_leaders` is 1 when every sample had
exactly one. After the run: `phigate audit verify` and `phigate fsck`.

The last line of stdout is one JSON object; the exit status is 0 only if errors
and checksum mismatches are 0, the audit log verifies, no object is missing and
every leadership sample had exactly one leader. Exit 3 means this machine cannot
run the check (no nginx, no PostgreSQL), with the reason on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.transfer import MiB, free_port, wait_up
from tests.support.pgdb import create_database

REPO = Path(__file__).resolve().parent.parent
REGION, ACCOUNT, BUCKET = "us-east-1", "123456789012", "phigate-scale"
METRICS_TOKEN = secrets.token_hex(16)
LEASE_SECONDS = 6


def unavailable() -> str | None:
    """None when this machine can run the check, else why not (the test suite's `scale` lane)."""
    from tests.lanes import lane_unavailable

    return lane_unavailable("scale")


# -- the installation -----------------------------------------------------------


def nginx_binary() -> str:
    from tests.lanes import NGINX

    return shutil.which(NGINX) or "/usr/sbin/nginx"


def throwaway_certificate(directory: Path) -> Path:
    """A self-signed certificate for 127.0.0.1, made now and trusted by the clients alone."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phigate scale check")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "tls.key").chmod(0o600)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / "tls.crt"


def nginx_config(directory: Path, port: int, upstreams: list[int]) -> Path:
    """Our own nginx: own pid, logs and temp paths, loopback only; TLS and proxying from deploy/nginx/snippets."""
    snippets = REPO / "deploy" / "nginx" / "snippets"
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=10s;" for p in upstreams)
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    conf = f"""
{user}
worker_processes 2;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    server_tokens off;
    client_body_temp_path {directory}/client_temp;
    proxy_temp_path {directory}/proxy_temp;
    fastcgi_temp_path {directory}/fastcgi_temp;
    uwsgi_temp_path {directory}/uwsgi_temp;
    scgi_temp_path {directory}/scgi_temp;
    log_format scale escape=json '{{"request_id":"$request_id","status":$status,"upstream":"$upstream_addr",'
                                 '"upstream_status":"$upstream_status","tls":"$ssl_protocol","uri":"$uri"}}';
    access_log {directory}/access.log scale;
    upstream phigate {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {directory}/tls.crt;
        ssl_certificate_key {directory}/tls.key;
        include {snippets}/tls.conf;
        location / {{
            proxy_pass http://phigate;
            include {snippets}/proxy.conf;
        }}
    }}
}}
"""
    path = directory / "nginx.conf"
    path.write_text(conf)
    return path


@dataclass
class Replica:
    n: int
    port: int
    metrics_port: int
    proc: subprocess.Popen
    log: Path

    def leads(self) -> bool | None:
        """What this replica's /metrics says (None if it does not answer)."""
        try:
            text = httpx.get(
                f"http://127.0.0.1:{self.metrics_port}/metrics",
                headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                timeout=5,
            ).text
        except httpx.HTTPError:
            return None
        for line in text.splitlines():
            if line.startswith("phigate_scheduler_leader "):
                return float(line.split()[1]) == 1.0
        return None


class Installation:
    """moto, PostgreSQL database, migrated once, seeded, N replicas, nginx; torn down in reverse."""

    def __init__(self, work: Path, replicas: int):
        self.work, self.n = work, replicas
        self.procs: list[subprocess.Popen] = []
        self.drop_db = None
        self.replicas: list[Replica] = []

    def start(self) -> None:
        moto_port = free_port()
        self.moto = self._spawn(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)], self.work / "moto.log"
        )
        self.endpoint = f"http://127.0.0.1:{moto_port}"
        wait_up(f"{self.endpoint}/moto-api/", self.moto)
        os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION=REGION)
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})

        self.database_url, self.drop_db = create_database("phigate_scale")
        self.proxy_port = free_port()  # the address users reach: production binds passkeys to it
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
        self.env.update(
            {
                "PHIGATE_ENV": "production",
                "PHIGATE_DATABASE_URL": self.database_url,
                "PHIGATE_STORAGE_URL": f"s3://{BUCKET}?region={REGION}&endpoint_url={self.endpoint}&endpoint_onshore=true",
                "PHIGATE_KEY_PROVIDER_URL": f"awskms://arn:aws:kms:{REGION}:{ACCOUNT}:alias/phigate"
                f"?endpoint_url={self.endpoint}",
                "PHIGATE_INSTANCE_ID": "phigate-scale-check",
                "PHIGATE_TRUSTED_PROXIES": "127.0.0.1",
                "PHIGATE_PUBLIC_URL": f"https://localhost:{self.proxy_port}",
                "PHIGATE_METRICS_TOKEN": METRICS_TOKEN,
                "PHIGATE_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
                # Pool + overflow = worker threads: no thread waits for a connection (docs/operations.md).
                "PHIGATE_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "5",
                "PHIGATE_DB_POOL_SIZE": "6",
                "PHIGATE_DB_MAX_OVERFLOW": "10",
                "PHIGATE_WORKER_THREADS": "16",
                "PHIGATE_LOG_FORMAT": "json",
            }
        )
        # Migrations once, as the deployment's one-shot Job does; replicas refuse an outdated schema.
        subprocess.run(
            [sys.executable, "-m", "gateway.cli", "db", "upgrade"],
            env=self.env,
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=(self.work / "migrate.log").open("wb"),
        )
        self.creds = seed(self.env)

        for n in range(self.n):
            port, metrics_port = free_port(), free_port()
            log = self.work / f"replica-{n}.log"
            env = {
                **self.env,
                "PHIGATE_PORT": str(port),
                "PHIGATE_METRICS_PORT": str(metrics_port),
                "PHIGATE_DATA_DIR": str(self.work / f"data-{n}"),
            }
            proc = self._spawn([sys.executable, "-m", "gateway.cli", "serve"], log, env)
            self.replicas.append(Replica(n, port, metrics_port, proc, log))
        for r in self.replicas:
            wait_up(f"http://127.0.0.1:{r.port}/healthz", r.proc)

        nginx_dir = self.work / "nginx"
        nginx_dir.mkdir(mode=0o755)
        self.work.chmod(0o711)  # nginx's workers (nobody) reach their temp paths; nothing secret lives here
        self.ca = throwaway_certificate(nginx_dir)
        conf = nginx_config(nginx_dir, self.proxy_port, [r.port for r in self.replicas])
        self.nginx = self._spawn(
            [
                nginx_binary(),
                "-p",
                str(nginx_dir),
                "-e",
                str(nginx_dir / "error.log"),
                "-c",
                str(conf),
                "-g",
                "daemon off;",
            ],
            nginx_dir / "stderr.log",
        )
        self.nginx_log = nginx_dir / "access.log"
        self.base = f"https://127.0.0.1:{self.proxy_port}"
        for _ in range(100):
            try:
                if httpx.get(f"{self.base}/healthz", verify=self.tls_context(), timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise RuntimeError("nginx did not start: " + (nginx_dir / "error.log").read_text()[-2000:])

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def _spawn(self, cmd, log: Path, env=None) -> subprocess.Popen:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env or getattr(self, "env", None), stdout=subprocess.DEVNULL, stderr=log.open("wb")
        )
        self.procs.append(proc)
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.drop_db is not None:
            self.drop_db()


def seed(env: dict) -> dict:
    """A practice, a vendor, a BAA; staff, biller and auditor tokens; one approver (TOTP) per client."""
    code = r"""
import json, sys, warnings
from datetime import timedelta
warnings.simplefilter("ignore")
from gateway import clock
from gateway.audit.service import Actor
from gateway.auth import service as auth, totp
from gateway.baas.service import record_baa
from gateway.components import Components
from gateway.config import Settings
from gateway.keys import GATEWAY_SECRETS_KEY, seal_totp_secret
from gateway.orgs.models import OrgKind
from gateway.orgs.service import create_org
from gateway.users.models import Role
from gateway.users.service import create_user

approvers = int(sys.argv[1])
settings = Settings()
c = Components(settings)
c.keys.ensure_key(GATEWAY_SECRETS_KEY)
a = Actor.system()
out = {"approvers": []}
with c.db.transaction() as db:
    practice = create_org(db, "Scale Practice", OrgKind.practice, a)
    vendor = create_org(db, "Scale Vendor", OrgKind.vendor, a)
    record_baa(db, practice, vendor, "SCALE", clock.now() - timedelta(days=1), None, a)
    out["vendor_id"] = vendor.id
    people = [("staff", Role.practice_staff, practice), ("biller", Role.biller, vendor),
              ("auditor", Role.auditor, practice)]
    people += [(f"approver-{i}", Role.practice_approver, practice) for i in range(approvers)]
    for name, role, org in people:
        user, _ = create_user(db, org, "scale-" + name, name, name + "@example.invalid", role, a,
                              password="scale check password " + name)
        secret = totp.new_secret()
        user.totp_secret_sealed = seal_totp_secret(c.keys, user.id, secret)
        user.totp_enrolled_at = clock.now()
        db.flush()
        _, raw = auth.create_api_token(db, settings, user, "scale", 1, a)
        entry = {"token": raw, "secret": secret}
        if name.startswith("approver-"):
            out["approvers"].append(entry)
        else:
            out[name] = entry
print(json.dumps(out))
"""
    clients = env.get("SCALE_CLIENTS", "20")
    done = subprocess.run(
        [sys.executable, "-c", code, clients], env=env, capture_output=True, text=True, cwd=REPO, timeout=600
    )
    if done.returncode:
        raise RuntimeError("seeding failed: " + done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the load -------------------------------------------------------------------


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    ok: bool
    request_id: str | None = None
    detail: str = ""
    nbytes: int = 0


class Codes:
    """An approver's TOTP codes: each of a step later than the last one used, never waiting."""

    def __init__(self, secret: str):
        import pyotp

        self.totp, self.last = pyotp.TOTP(secret), None

    def next(self) -> str | None:
        now = int(time.time()) // 30
        step = now if self.last is None or self.last < now else self.last + 1
        if step > now + 1:  # the server accepts one step of drift, no more
            return None
        self.last = step
        return self.totp.at(step * 30)


@dataclass
class Shared:
    """What the clients share: transfers approved for download (id, file id, sha256, size)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    approved: list[tuple[str, str, str, int]] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    mismatches: int = 0


class Client(threading.Thread):
    WEIGHTS = (("upload", 25), ("approve", 15), ("download", 25), ("search", 15), ("list", 20))

    def __init__(self, n: int, inst: Installation, shared: Shared, deadline: float):
        super().__init__(name=f"scale-client-{n}", daemon=True)
        self.n, self.inst, self.shared, self.deadline = n, inst, shared, deadline
        self.rng = random.Random(n)
        self.creds = inst.creds
        self.approver = inst.creds["approvers"][n]
        self.codes = Codes(self.approver["secret"])
        self.pending: list[tuple[str, str, int]] = []  # uploaded, waiting for approval: (id, sha256, size)
        self.block = os.urandom(20 * MiB)
        self.seq = 0

    def _auth(self, who: dict) -> dict:
        return {"Authorization": f"Bearer {who['token']}"}

    def run(self) -> None:
        with httpx.Client(base_url=self.inst.base, verify=self.inst.tls_context(), timeout=300) as http:
            while time.monotonic() < self.deadline:
                kind = self.rng.choices([k for k, _ in self.WEIGHTS], [w for _, w in self.WEIGHTS])[0]
                if kind == "approve" and not self.pending:
                    kind = "upload"
                if kind == "download" and not self.shared.approved:
                    kind = "list"
                started = time.monotonic()
                outcome = Outcome(kind, started, started, False)
                try:
                    getattr(self, kind)(http, outcome)
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    outcome.ok, outcome.detail = False, f"{type(exc).__name__}: {str(exc)[:200]}"
                outcome.ended = time.monotonic()
                if outcome.kind != "skip":
                    with self.shared.lock:
                        self.shared.outcomes.append(outcome)

    def _answer(self, outcome: Outcome, r: httpx.Response, expected: int) -> bool:
        outcome.request_id = r.headers.get("x-request-id")
        outcome.ok = r.status_code == expected
        if not outcome.ok:
            outcome.detail = f"HTTP {r.status_code}: {r.text[:200]}"
        return outcome.ok

    def upload(self, http: httpx.Client, outcome: Outcome) -> None:
        size = MiB if self.rng.random() < 1 / 3 else self.rng.randint(1 * MiB, 20 * MiB)
        self.seq += 1
        head = f"%PDF-1.7\n% scale check client {self.n} file {self.seq}\n".encode()
        data = head + self.block[: size - len(head)]
        outcome.kind = "upload_1mib" if size == MiB else "upload"
        outcome.nbytes = size
        r = http.post(
            "/api/v1/transfers",
            params={"partner_id": self.creds["vendor_id"]},
            content=data,
            headers={
                **self._auth(self.creds["staff"]),
                "Content-Type": "application/octet-stream",
                "X-Purpose": f"SCALE-{self.n}-{self.seq}",
                "Content-Disposition": f"attachment; filename=scale-{self.n}-{self.seq}.pdf",
            },
        )
        if self._answer(outcome, r, 201):
            self.pending.append((r.json()["id"], hashlib.sha256(data).hexdigest(), size))

    def approve(self, http: httpx.Client, outcome: Outcome) -> None:
        code = self.codes.next()
        if code is None:
            outcome.kind = "skip"  # this approver has used every step the server accepts right now
            return
        tid, sha, size = self.pending.pop(0)
        r = http.post(
            f"/api/v1/transfers/{tid}/approve", json={"days": 1, "code": code}, headers=self._auth(self.approver)
        )
        if self._answer(outcome, r, 200):
            fid = r.json()["files"][0]["id"]
            with self.shared.lock:
                self.shared.approved.append((tid, fid, sha, size))

    def download(self, http: httpx.Client, outcome: Outcome) -> None:
        with self.shared.lock:
            tid, fid, sha, size = self.rng.choice(self.shared.approved)
        digest, n = hashlib.sha256(), 0
        with http.stream(
            "GET", f"/api/v1/transfers/{tid}/files/{fid}/content", headers=self._auth(self.creds["biller"])
        ) as r:
            outcome.request_id = r.headers.get("x-request-id")
            if r.status_code != 200:
                r.read()
                self._answer(outcome, r, 200)
                return
            for chunk in r.iter_raw(MiB):
                digest.update(chunk)
                n += len(chunk)
        outcome.nbytes = n
        outcome.ok = True
        if n != size or digest.hexdigest() != sha:
            with self.shared.lock:
                self.shared.mismatches += 1

    def search(self, http: httpx.Client, outcome: Outcome) -> None:
        r = http.get("/api/v1/audit/events", params={"limit": 50}, headers=self._auth(self.creds["auditor"]))
        self._answer(outcome, r, 200)

    def list(self, http: httpx.Client, outcome: Outcome) -> None:
        r = http.get("/api/v1/transfers", headers=self._auth(self.creds["staff"]))
        self._answer(outcome, r, 200)


# -- leadership -------------------------------------------------------------------


class LeaderSampler(threading.Thread):
    """Once a second: the distinct leaders among the lease row and the live replicas that say they lead."""

    def __init__(self, inst: Installation, stop: threading.Event):
        super().__init__(name="scale-leader-sampler", daemon=True)
        self.inst, self.stop = inst, stop
        self.samples: list[int] = []
        self.terms: set[int] = set()
        self.handover_at: float | None = None
        self.killed_at: float | None = None
        self.killed_pid: int | None = None

    def row(self):
        import psycopg

        with psycopg.connect(self.inst.database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            return conn.execute("SELECT owner, term FROM leader_leases WHERE name = 'scheduler'").fetchone()

    def sample(self) -> int:
        # Gauges first, then the row: a replica that says it leads committed the row before it said so.
        claims = {r.proc.pid for r in self.inst.replicas if r.proc.poll() is None and r.leads()}
        row = self.row()
        holders = set(claims)
        if row is not None:
            holders.add(int(row[0].split("|")[1]))
            self.terms.add(row[1])
        if self.killed_at is not None and self.handover_at is None and claims - {self.killed_pid}:
            self.handover_at = time.monotonic()
        return len(holders)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self.samples.append(self.sample())

    def leader(self) -> Replica:
        for _ in range(120):
            for r in self.inst.replicas:
                if r.leads():
                    return r
            time.sleep(0.5)
        raise RuntimeError("no replica became the scheduler's leader")


# -- the run ------------------------------------------------------------------------


def killed_replica_errors(failures: list[Outcome], nginx_log: Path, killed_port: int, killed_at: float):
    """Split failures: in flight on the killed replica (nginx's log names it; started before the kill) or not."""
    upstream = {}
    for line in nginx_log.read_text().splitlines():
        entry = json.loads(line)
        upstream[entry["request_id"]] = entry["upstream"]
    on_killed, other = [], []
    for f in failures:
        went = upstream.get(f.request_id or "", "")
        if f"127.0.0.1:{killed_port}" in went and f.started <= killed_at:
            on_killed.append(f)
        else:
            other.append(f)
    return on_killed, other


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) and print its path")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        print(f"scale check cannot run here: {reason}", file=sys.stderr)
        return 3
    os.environ["SCALE_CLIENTS"] = str(args.clients)
    work = Path(tempfile.mkdtemp(prefix="phigate-scale-"))
    inst = Installation(work, args.replicas)
    try:
        inst.start()
        shared, stop = Shared(), threading.Event()
        sampler = LeaderSampler(inst, stop)
        victim = sampler.leader()
        sampler.start()
        begin = time.monotonic()
        deadline = begin + args.seconds
        clients = [Client(n, inst, shared, deadline) for n in range(args.clients)]
        for c in clients:
            c.start()
        time.sleep(max(0.0, begin + args.seconds / 2 - time.monotonic()))
        sampler.killed_pid = victim.proc.pid
        killed_at = time.monotonic()
        victim.proc.send_signal(signal.SIGKILL)
        sampler.killed_at = killed_at
        victim.proc.wait(10)
        for c in clients:
            c.join(args.seconds + 600)
        elapsed = time.monotonic() - begin
        stop.set()
        sampler.join(10)
        samples = [*sampler.samples, sampler.sample()]

        for r in inst.replicas:
            if r.proc.poll() is None:
                r.proc.terminate()
        for r in inst.replicas:
            r.proc.wait(60)
        verify = inst.cli("audit", "verify")
        fsck = inst.cli("fsck", "--grace-minutes", "0")
        fsck_report = json.loads(fsck.stdout) if fsck.stdout.strip().startswith("{") else {}

        outcomes = shared.outcomes
        failures = [o for o in outcomes if not o.ok]
        on_killed, other = killed_replica_errors(failures, inst.nginx_log, victim.port, killed_at)
        tls = {json.loads(line)["tls"] for line in inst.nginx_log.read_text().splitlines()}
        moved = sum(o.nbytes for o in outcomes if o.ok and o.kind in ("upload", "upload_1mib", "download"))
        by_kind: dict[str, int] = {}
        for o in outcomes:
            by_kind[o.kind] = by_kind.get(o.kind, 0) + 1
        list_times = [o.ended - o.started for o in outcomes if o.ok and o.kind == "list"]
        up_times = [o.ended - o.started for o in outcomes if o.ok and o.kind == "upload_1mib"]
        leaders = sorted(set(samples))
        result = {
            "replicas": args.replicas,
            "tls": bool(tls) and tls <= {"TLSv1.2", "TLSv1.3"},
            "tls_protocols": sorted(tls),
            "clients": args.clients,
            "seconds": round(elapsed, 1),
            "operations": len(outcomes),
            "operations_by_kind": dict(sorted(by_kind.items())),
            "errors": len(other),
            "errors_on_killed_replica": len(on_killed),
            "checksum_mismatches": shared.mismatches,
            "p50_ms": {"list": percentile(list_times, 0.5), "upload_1mib": percentile(up_times, 0.5)},
            "p99_ms": {"list": percentile(list_times, 0.99), "upload_1mib": percentile(up_times, 0.99)},
            "mb_s": round(moved / elapsed / 1e6, 1),
            "audit_verify": "ok" if verify.returncode == 0 else "failed",
            "fsck": {k: len(v) for k, v in fsck_report.items()} if fsck_report else "failed",
            "scheduler_leaders": leaders[0] if len(leaders) == 1 else leaders,
            "scheduler_samples": len(samples),
            "scheduler_terms": sorted(sampler.terms),
            "killed": "scheduler leader",
            "scheduler_handover_s": round(sampler.handover_at - killed_at, 1) if sampler.handover_at else None,
        }
        for f in other[:10]:
            print(f"error: {f.kind} request {f.request_id}: {f.detail}", file=sys.stderr)
        if verify.returncode:
            print(verify.stdout[-2000:] + verify.stderr[-2000:], file=sys.stderr)
        ok = (
            result["errors"] == 0
            and result["checksum_mismatches"] == 0
            and result["audit_verify"] == "ok"
            and result["scheduler_leaders"] == 1
            and isinstance(result["fsck"], dict)
            and result["fsck"]["missing"] == 0
        )
        print(json.dumps(result))
        return 0 if ok else 1
    finally:
        inst.stop()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
