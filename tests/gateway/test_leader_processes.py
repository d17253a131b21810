"""Three real `phigate serve` processes on one database: exactly one leads; SIGKILL it and another takes over.

Leadership is read where an operator reads it: each process's `/metrics`
(`phigate_scheduler_leader`), checked against the lease row in the database.
Every wait is a bounded loop that polls; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.leader import current_leader

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.alone  # lease timing under SIGKILL: runs by itself (scripts/run_tests.py)

LEASE_SECONDS = 4  # short, so the test is quick; long enough that a busy machine's stalls do not lose it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    def __init__(self, n: int, env: dict, workdir: Path):
        self.port, self.metrics_port = free_port(), free_port()
        self.log = workdir / f"replica-{n}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("wb"),
            env={
                **env,
                "PHIGATE_PORT": str(self.port),
                "PHIGATE_METRICS_PORT": str(self.metrics_port),
                "PHIGATE_DATA_DIR": str(workdir / f"data-{n}"),
            },
        )

    def leads(self) -> bool:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        values = [line.split()[-1] for line in text.splitlines() if line.startswith("phigate_scheduler_leader ")]
        assert len(values) == 1, text
        return float(values[0]) == 1.0

    def wait_up(self) -> None:
        for _ in range(300):  # bounded: about a minute on a busy machine
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    self.leads()
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        pytest.fail("replica did not start")

    def json_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


def sample(replicas: list[Replica], components) -> Replica | None:
    """The one live replica that leads (or None), checked against the lease row; never two."""
    leading = [r for r in replicas if r.proc.poll() is None and r.leads()]
    assert len(leading) <= 1, f"{len(leading)} replicas lead at once"
    if leading:
        # Read after the gauges: a replica that claimed leadership had committed the row before.
        row = current_leader(components.db)
        assert row is not None and row.owner.split("|")[1] == str(leading[0].proc.pid)
    return leading[0] if leading else None


def wait_for_leader(replicas, components) -> Replica:
    for _ in range(300):
        leader = sample(replicas, components)
        if leader is not None:
            return leader
        time.sleep(0.2)
    pytest.fail("no replica became leader")


def test_three_replicas_one_leader_sigkill_moves_it(components, lane, keyring_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
    env.update(
        {
            "PHIGATE_DATABASE_URL": lane[1],
            "PHIGATE_KEY_PROVIDER_URL": keyring_url,
            "PHIGATE_STORAGE_URL": f"file://{tmp_path / 'objects'}",
            "PHIGATE_INSTANCE_ID": "test",
            "PHIGATE_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
            "PHIGATE_AUDIT_CHECKPOINT_INTERVAL_SECONDS": "1",
            "PHIGATE_DB_POOL_SIZE": "3",
        }
    )
    replicas = [Replica(n, env, tmp_path) for n in range(3)]
    try:
        for r in replicas:
            r.wait_up()
        first = wait_for_leader(replicas, components)
        for _ in range(6):  # over several renewals, the same single leader
            assert sample(replicas, components) is first
            time.sleep(LEASE_SECONDS / 4)
        term = current_leader(components.db).term

        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)
        survivors = [r for r in replicas if r is not first]
        second = wait_for_leader(survivors, components)
        row = current_leader(components.db)
        assert row.term > term and row.owner.split("|")[1] == str(second.proc.pid)
        for _ in range(5):
            assert sample(survivors, components) is second
            time.sleep(LEASE_SECONDS / 4)

        # A clean stop resigns: the row goes at once, nobody waits for the lease.
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
        lines = second.json_lines()  # every line the process logged is one JSON object
        assert any(line["message"] == "Application shutdown complete." for line in lines)
        row = current_leader(components.db)
        assert row is None or row.owner.split("|")[1] != str(second.proc.pid)
        assert any(line["logger"] == "phigate.leader" and "this process" in line["message"] for line in lines)
    finally:
        for r in replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(10)
