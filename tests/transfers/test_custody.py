"""Key rotation and re-wrapping on real data: every DEK and sealed value moves, objects stay untouched."""

from __future__ import annotations

from sqlalchemy import select

from crypto import WrappedKey, sealed_key_info
from gateway.audit.service import Actor
from gateway.custody import key_inventory, rewrap_all, rotate
from gateway.keys import GATEWAY_SECRETS_KEY
from gateway.transfers.models import Transfer, TransferFile
from gateway.users.models import User
from tests.transfers.conftest import PDF, events, sealed_of


def test_rotate_then_rewrap_moves_everything_to_the_new_version(party, session_for, components, db, settings):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    tid = staff.upload(party.vendor.id, name="claim.pdf").json()["id"]
    r = staff.client.post(
        "/api/v1/transfers",
        params={"partner_id": party.vendor.id},
        content=PDF,
        headers={
            "Content-Type": "application/octet-stream",
            "X-Purpose": "APPEAL-2",
            "X-Note": "second%20packet",
            "Content-Disposition": "attachment; filename=b.pdf",
        },
    )
    assert r.status_code == 201
    transfer = db.get(Transfer, tid)
    file = db.scalars(select(TransferFile).where(TransferFile.transfer_id == tid)).one()
    db.commit()
    obj = sealed_of(db, file.id)
    object_before = b"".join(components.store.get(obj.object_key))
    # The keyring is shared by the whole test session: compare with the versions found now.
    rel_v, own_v = (
        components.keys.current_version(transfer.key_id),
        components.keys.current_version(GATEWAY_SECRETS_KEY),
    )
    assert WrappedKey.from_bytes(obj.wrapped_dek).key_version == obj.key_version == rel_v

    assert rotate(components, transfer.key_id, Actor.system()) == rel_v + 1
    assert rotate(components, GATEWAY_SECRETS_KEY, Actor.system()) == own_v + 1
    inventory = {row["key_id"]: row["version"] for row in key_inventory(components)}
    assert inventory[transfer.key_id] == rel_v + 1 and inventory[GATEWAY_SECRETS_KEY] == own_v + 1

    report = rewrap_all(components, Actor.system())
    assert report.rewrapped == 2 + 2 + 1 + 6  # two DEKs, two names, one note, six users' TOTP secrets
    db.expire_all()
    for f in db.scalars(select(TransferFile)):
        assert WrappedKey.from_bytes(sealed_of(db, f.id).wrapped_dek).key_version == rel_v + 1
        assert sealed_key_info(f.name_sealed).key_version == rel_v + 1
    for u in db.scalars(select(User)):
        assert sealed_key_info(u.totp_secret_sealed).key_version == own_v + 1
    db.commit()
    # Object data untouched; everything still opens: names, download, sign-in with TOTP.
    assert b"".join(components.store.get(obj.object_key)) == object_before
    r = approver.approve(tid)
    assert r.status_code == 200 and r.json()["files"][0]["name"] == "claim.pdf"
    assert biller.download(tid, file.id).content == PDF
    assert rewrap_all(components, Actor.system()).rewrapped == 0
    assert [e.action for e in events(db, "keys.rotated")] == ["keys.rotated"] * 2
    assert events(db, "keys.rewrapped")[0].details["rewrapped"] == report.rewrapped
