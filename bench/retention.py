"""Retention benchmark: seed N small transfers for one vendor, then offboard it.

    python bench/retention.py [--quick] [--n N] [--backends file,s3_http]

Backends: ``file`` (local object store) and ``s3_http`` (a versioned bucket on moto's
S3 server, run in a separate process on 127.0.0.1:<free port>, the endpoint the
tests use).  The database is the embedded SQLite file, the keyring the local one.

Seeding uses the bulk path of tests/retention/seed.py: per file a fresh data key
from the key provider under the relationship KEK, `crypto.encrypt_stream`,
`store.put`, a sealed name; rows inserted in batches (no HTTP, no per-upload
events).  It is not timed.  Then `retention.offboarding.offboard` runs exactly as
`phigate offboard` does (BAA termination, users disabled, four audited steps per
object, key destruction, audit checkpoint, signed certificate), timed end to end.

Each backend runs in its own subprocess; ``peak_rss_mb`` is the highest RSS sampled
(every 50 ms) during the offboarding, ``rss_before_mb`` the RSS just before it.
The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
MiB = 1024 * 1024

SERVER_SCRIPT = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
"""


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MiB


def child(backend: str, n: int, endpoint: str | None) -> dict:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    )
    from datetime import timedelta

    from crypto import init_keyring
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa
    from gateway.components import Components
    from gateway.config import Settings
    from gateway.migrate import upgrade
    from gateway.orgs.models import OrgKind
    from gateway.orgs.service import create_org
    from gateway.users.models import Role
    from gateway.users.service import create_user
    from retention.offboarding import offboard
    from tests.retention.seed import seed

    tmp = tempfile.mkdtemp(prefix="phigate-bench-retention-")
    storage = f"file://{tmp}/objects"
    if backend == "s3_http":
        import boto3

        raw = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        bucket = f"bench-{os.getpid()}"
        raw.create_bucket(Bucket=bucket)
        raw.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        storage = f"s3://{bucket}?region=us-east-1&endpoint_url={endpoint}&endpoint_onshore=true"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_keyring(f"{tmp}/keys")
        db_url = f"sqlite:///{tmp}/phigate.db"
        upgrade(db_url)
        c = Components(
            Settings(
                _env_file=None,
                data_dir=tmp,
                database_url=db_url,
                storage_url=storage,
                key_provider_url=f"local://{tmp}/keys",
                instance_id="bench",
                audit_checkpoint_interval_seconds=0,
            )
        )
    actor = Actor.system()
    with c.db.transaction() as db:
        practice = create_org(db, "Bench Practice", OrgKind.practice, actor)
        vendor = create_org(db, "Bench Vendor", OrgKind.vendor, actor)
        staff, _ = create_user(
            db,
            practice,
            "bench-staff",
            "Bench Staff",
            "staff@example.invalid",
            Role.practice_staff,
            actor,
            password="bench password one two",
        )
        for i in range(3):
            create_user(
                db,
                vendor,
                f"bench-biller-{i}",
                "Bench Biller",
                f"b{i}@example.invalid",
                Role.biller,
                actor,
                password="bench password one two",
            )
        record_baa(db, practice, vendor, "BAA-BENCH", clock.now() - timedelta(days=1), None, actor)
        ids = (practice.id, vendor.id, staff.id)
    t0 = time.perf_counter()
    seed(c, *ids, n)
    seed_s = time.perf_counter() - t0
    import gc

    gc.collect()
    before = _rss_mb()
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max(peak[0], _rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    # Record the peak of the destruction phase alone, before the certificate is built.
    import retention.certificates as certificates

    real_issue, phase = certificates.issue, {}

    def issue(*a, **k):
        phase.setdefault("destroying", max(peak[0], _rss_mb()))
        return real_issue(*a, **k)

    certificates.issue = issue
    sampler.start()
    t0 = time.perf_counter()
    report = offboard(c, actor, ids[1], reason="benchmark", via="bench")
    elapsed = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_mb())
    destroyed = sum(j.destroyed for j in report.jobs)
    from retention.models import Certificate

    with c.db.sessions() as db:
        cert_bytes = len(db.get(Certificate, report.jobs[0].certificate_id).document)
    assert destroyed == n, (destroyed, n)
    return {
        "objects": n,
        "objects_destroyed": destroyed,
        "seconds": round(elapsed, 2),
        "objects_destroyed_per_s": round(destroyed / elapsed, 1),
        "peak_rss_mb": round(peak[0], 1),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb_destroying": round(phase["destroying"], 1),
        "certificate_bytes": cert_bytes,
        "seed_seconds": round(seed_s, 1),
        "batch_size": c.settings.retention_batch_size,
        "storage_workers": c.settings.retention_workers,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1,000 objects instead of 10,000")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--backends", default="file,s3_http")
    ap.add_argument(
        "--s3-n",
        type=int,
        default=None,
        help="objects for s3_http (default: same as file); moto's listings are O(bucket size)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = args.n or (1000 if args.quick else 10_000)
    if args.child:
        print(json.dumps(child(args.child, n, args.endpoint)))
        return
    results = {
        "n": n,
        "database": "sqlite (embedded)",
        "key_provider": "local keyring",
        "seeding": "bulk: real data keys, encrypt_stream and store.put per file; rows inserted in batches",
    }
    server = None
    try:
        for backend in args.backends.split(","):
            endpoint = None
            if backend == "s3_http":
                server = subprocess.Popen(
                    [sys.executable, "-c", SERVER_SCRIPT],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                endpoint = server.stdout.readline().strip()
            count = (args.s3_n or n) if backend == "s3_http" else n
            out = subprocess.run(
                [sys.executable, __file__, "--child", backend, "--n", str(count)]
                + (["--endpoint", endpoint] if endpoint else []),
                capture_output=True,
                text=True,
                cwd=REPO,
            )
            if out.returncode != 0:
                sys.stderr.write(out.stderr)
                raise SystemExit(f"{backend} failed")
            results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{backend}: {results[backend]}", file=sys.stderr)
            if server is not None:
                server.stdin.close()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()  # moto's server.stop() can hang on open keep-alive connections
                server = None
    finally:
        if server is not None:
            server.kill()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
