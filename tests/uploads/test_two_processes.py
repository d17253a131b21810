"""Done when: an upload begun on one `phigate serve` process is finished on another (same database and
store), after the first was killed; the second re-derives the hash from what is stored, and it is exact."""

from __future__ import annotations

import base64
import hashlib
import os
import signal

import httpx

from tests.gateway.test_leader_processes import Replica
from tests.uploads.conftest import MiB, synthetic_pdf
from tests.uploads.test_flaky_link import bearer_for


def test_upload_begun_on_one_process_is_finished_on_another(party, components, lane, keyring_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHIGATE_")}
    env.update(
        {
            "PHIGATE_DATABASE_URL": lane[1],
            "PHIGATE_KEY_PROVIDER_URL": keyring_url,
            "PHIGATE_STORAGE_URL": f"file://{tmp_path / 'objects'}",
            "PHIGATE_INSTANCE_ID": "test",
            "PHIGATE_DB_POOL_SIZE": "3",
        }
    )
    headers = {**bearer_for(components, party.staff), "Tus-Resumable": "1.0.0"}
    data = synthetic_pdf(5 * MiB + 777, b"two-processes")
    first, second = Replica(0, env, tmp_path), Replica(1, env, tmp_path)
    try:
        first.wait_up()
        second.wait_up()
        one = httpx.Client(base_url=f"http://127.0.0.1:{first.port}", headers=headers, timeout=60)
        meta = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in {"filename": "records.pdf", "partner_id": party.vendor.id, "purpose": "APPEAL-4004"}.items()
        )
        r = one.post("/api/v1/uploads", headers={"Upload-Length": str(len(data)), "Upload-Metadata": meta})
        assert r.status_code == 201, r.text
        path = r.headers["Location"]
        r = one.patch(
            path,
            content=data[: 3 * MiB],
            headers={"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
        )
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(3 * MiB)
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(10)

        two = httpx.Client(base_url=f"http://127.0.0.1:{second.port}", headers=headers, timeout=60)
        offset = int(two.head(path).headers["Upload-Offset"])
        assert offset == 3 * MiB
        r = two.patch(
            path,
            content=data[offset:],
            headers={"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        )
        assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
        r = two.post("/api/v1/uploads/transfers", json={"upload_ids": [path.rsplit("/", 1)[1]]})
        assert r.status_code == 201, r.text
        (file,) = two.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"]
        assert (file["size"], file["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    finally:
        for r in (first, second):
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(10)
