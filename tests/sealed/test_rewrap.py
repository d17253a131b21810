"""`phigate keys rotate` + `phigate keys rewrap` cover every kind of object; `keys list` says what each version wraps.

Finding 2 of issue 11: rewrap reported 0 rewrapped for a BAA copy, which stayed
under the old KEK version.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from crypto import WrappedKey
from gateway.sealed.keys import practice_key, relationship_key
from gateway.sealed.models import SealedObject
from tests.sealed.test_fsck import SIGNED, put_copy
from tests.transfers.conftest import PDF, sealed_of


def under_old_versions(components, db) -> dict[str, int]:
    """Objects per kind whose wrapped data key is not under its key's newest version (read from the blobs)."""
    out: dict[str, int] = {}
    rows = db.execute(
        select(SealedObject.kind, SealedObject.key_version, SealedObject.wrapped_dek).where(
            SealedObject.wrapped_dek.is_not(None)
        )
    ).all()
    db.commit()
    for kind, version, blob in rows:
        wrapped = WrappedKey.from_bytes(blob)
        assert wrapped.key_version == version  # the column the counts use says what the blob says
        if wrapped.key_version < components.keys.current_version(wrapped.key_id):
            out[kind.value] = out.get(kind.value, 0) + 1
    return out


def listed(phigate) -> dict[str, tuple[int, dict[int, int]]]:
    r = phigate("keys", "list")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        key_id, version, wraps = re.fullmatch(r"(\S+)\s+v(\d+)\s+objects wrapped by version: (.*)", line).groups()
        counts = {} if wraps == "none" else {int(v): int(n) for v, n in re.findall(r"v(\d+)=(\d+)", wraps)}
        out[key_id] = (int(version), counts)
    return out


def test_rotate_and_rewrap_leave_no_object_under_an_old_version(party, session_for, components, db, phigate):
    admin, staff, approver = session_for(party.admin), session_for(party.staff), session_for(party.approver)
    biller = session_for(party.biller)
    assert put_copy(admin, party.baa_id, SIGNED).status_code == 200  # under the practice's key
    tid = staff.upload(party.vendor.id).json()["id"]  # under the relationship key
    fid = approver.approve(tid).json()["files"][0]["id"]
    back = biller.upload(party.practice.id).json()["id"]  # under the practice's key
    rel, own = relationship_key(party.practice.id, party.vendor.id), practice_key(party.practice.id)

    before = listed(phigate)
    rel_v, own_v = before[rel][0], before[own][0]
    assert before[rel][1] == {rel_v: 1} and before[own][1] == {own_v: 2}
    for key_id in (rel, own):
        r = phigate("keys", "rotate", key_id)
        assert r.returncode == 0, r.stderr
    assert under_old_versions(components, db) == {"transfer_file": 2, "baa_copy": 1}
    rotated = listed(phigate)
    assert rotated[rel] == (rel_v + 1, {rel_v: 1}) and rotated[own] == (own_v + 1, {own_v: 2})

    r = phigate("keys", "rewrap")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["objects_by_kind"] == {"transfer_file": 2, "baa_copy": 1} and report["objects_pending"] == 0
    assert under_old_versions(components, db) == {}
    after = listed(phigate)
    assert after[rel] == (rel_v + 1, {rel_v + 1: 1}) and after[own] == (own_v + 1, {own_v + 1: 2})
    # Object data untouched: everything opens with the re-wrapped keys.
    assert admin.client.get(f"/api/v1/baas/{party.baa_id}/signed-copy").content == SIGNED
    assert biller.download(tid, fid).content == PDF
    back_file = sealed_of(db, staff.client.get(f"/api/v1/transfers/{back}").json()["files"][0]["id"])
    assert back_file.key_version == own_v + 1
    assert json.loads(phigate("keys", "rewrap").stdout)["objects_by_kind"] == {}
