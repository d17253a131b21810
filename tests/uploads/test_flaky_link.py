"""Done when: a stock tus client (tuspy) sends 200 MiB over a link cut three times; the transfer appears once,
exact, the biller's download is identical, and no plaintext byte lies under the data directory."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import httpx
from tusclient import client as tus

from tests.support.cutting_proxy import CuttingProxy
from tests.uploads.conftest import MiB, synthetic_pdf


def bearer_for(components, user) -> dict[str, str]:
    from gateway.audit.service import Actor
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    with components.db.transaction() as db:
        _, raw = create_api_token(db, components.settings, db.get(User, user.id), "tus test", 1, Actor.system())
    return {"Authorization": f"Bearer {raw}"}


def files_holding(root: Path, marker: bytes) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            with path.open("rb") as f:
                tail = b""
                while block := f.read(8 * MiB):
                    if marker in tail + block:
                        found.append(path)
                        break
                    tail = block[-len(marker) :]
    return found


def test_tuspy_200_mib_over_a_link_cut_three_times(party, components, live_server, session_for, settings, tmp_path):
    marker = b"MARKER-" + os.urandom(12).hex().encode()
    data = synthetic_pdf(200 * MiB, marker)
    headers = bearer_for(components, party.staff)
    port = int(live_server.rsplit(":", 1)[1])
    proxy = CuttingProxy(port, cuts=[37 * MiB, 101 * MiB + 12345, 163 * MiB])
    try:
        client = tus.TusClient(proxy.url + "/api/v1/uploads", headers=headers)
        uploader = client.uploader(
            file_stream=io.BytesIO(data),
            chunk_size=8 * MiB,
            retries=10,
            retry_delay=0,
            metadata={"filename": "scans batch 7.pdf", "partner_id": party.vendor.id, "purpose": "APPEAL-3003"},
        )
        uploader.upload()
    finally:
        proxy.close()
    assert proxy.cut == 3
    upload_id = uploader.url.rsplit("/", 1)[1]
    api = httpx.Client(base_url=live_server, headers=headers, timeout=120)
    r = api.post("/api/v1/uploads/transfers", json={"upload_ids": [upload_id]})
    assert r.status_code == 201, r.text
    listed = api.get("/api/v1/transfers").json()
    assert [t["id"] for t in listed] == [r.json()["id"]]
    (file,) = api.get(f"/api/v1/transfers/{r.json()['id']}").json()["files"]
    assert (file["size"], file["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
    assert session_for(party.approver).approve(r.json()["id"]).status_code == 200
    got = hashlib.sha256(session_for(party.biller).download(r.json()["id"], file["id"]).content).hexdigest()
    assert got == hashlib.sha256(data).hexdigest()
    # Data directory, object store and database file: the marker is nowhere.
    assert files_holding(tmp_path, marker) == []
