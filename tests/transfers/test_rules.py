"""The transfer rules as services, without HTTP: scoping, the approval gate, four-eyes, the download gate."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway import clock
from gateway.audit.service import Actor
from gateway.auth.service import Principal, Proof
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.transfers import service
from gateway.transfers.models import Transfer
from gateway.users.models import User
from tests.transfers.conftest import events


def principal(db, test_user) -> Principal:
    user = db.get(User, test_user.id)
    return Principal(user, None, None, Actor(user.id, user.org_id, "127.0.0.1", "rules-test"))


@pytest.fixture
def pending(party, session_for):
    r = session_for(party.staff).upload(party.vendor.id)
    assert r.status_code == 201
    return r.json()["id"]


def test_scoping_per_role(party, pending, db, factory):
    stranger = factory.user("practice_staff")  # made first: the factory writes through its own session
    for user in (party.staff, party.approver, party.auditor, party.admin):
        assert service.find_transfer(db, principal(db, user), pending).id == pending
    for user in (party.biller, stranger):  # a biller before approval, another practice always
        with pytest.raises(NotFound):
            service.find_transfer(db, principal(db, user), pending)
    db.commit()


def test_four_eyes_and_window_limits(party, pending, db, components):
    p = principal(db, party.approver)
    t = service.find_transfer(db, p, pending)
    with pytest.raises(InvalidInput):
        service.approve(
            db,
            components.settings,
            components.keys,
            p,
            t,
            days=components.settings.max_access_days + 1,
            download_limit=None,
            recipient_ids=[],
            proof=Proof(code=party.approver.code()),
        )
    t.created_by = party.approver.id  # as if the approver had uploaded it
    with pytest.raises(Forbidden) as err:
        service.approve(
            db,
            components.settings,
            components.keys,
            p,
            t,
            days=1,
            download_limit=None,
            recipient_ids=[],
            proof=Proof(code=party.approver.code()),
        )
    assert err.value.code == "four_eyes"
    assert events(db, "transfer.approve.denied")[-1].details["reason"] == "four_eyes"


def test_approval_then_download_gate_reasons(party, pending, db, components, fake_clock):
    p = principal(db, party.approver)
    t = service.find_transfer(db, p, pending)
    service.approve(
        db,
        components.settings,
        components.keys,
        p,
        t,
        days=1,
        download_limit=1,
        recipient_ids=[party.biller.id],
        proof=Proof(code=party.approver.code()),
    )
    db.commit()
    file = t.files[0]
    biller, other = principal(db, party.biller), principal(db, party.biller2)
    assert service.download_denial(db, biller, t, file, resuming=False) is None
    assert service.download_denial(db, other, t, file, resuming=False) == "not_recipient"
    assert service.download_denial(db, principal(db, party.staff), t, file, resuming=False) == "not_recipient"
    fake_clock.advance(days=1)
    assert service.download_denial(db, biller, t, file, resuming=False) == "window_ended"
    fake_clock.advance(days=-1)
    with pytest.raises(Conflict):
        service.approve(
            db,
            components.settings,
            components.keys,
            p,
            t,
            days=1,
            download_limit=None,
            recipient_ids=[],
            proof=Proof(code=party.approver.code()),
        )
    service.revoke(db, p, t, "wrong vendor")
    assert service.download_denial(db, biller, t, file, resuming=False) == "revoked"
    db.rollback()


def test_baa_gate_at_the_moment_of_download(party, pending, db, components):
    from gateway.baas.models import Baa

    p = principal(db, party.approver)
    t = service.find_transfer(db, p, pending)
    service.approve(
        db,
        components.settings,
        components.keys,
        p,
        t,
        days=3,
        download_limit=None,
        recipient_ids=[],
        proof=Proof(code=party.approver.code()),
    )
    db.commit()
    baa = db.get(Baa, party.baa_id)
    baa.expires_at = clock.now() - timedelta(seconds=1)
    db.flush()
    assert service.download_denial(db, principal(db, party.biller), t, t.files[0], resuming=False) == "baa_not_active"
    db.rollback()


def test_queue_and_inbox(party, pending, db, components):
    p = principal(db, party.approver)
    assert [t.id for t in service.approval_queue(db, p).items] == [pending]
    t = db.get(Transfer, pending)
    service.approve(
        db,
        components.settings,
        components.keys,
        p,
        t,
        days=2,
        download_limit=None,
        recipient_ids=[],
        proof=Proof(code=party.approver.code()),
    )
    db.commit()
    assert service.approval_queue(db, p).items == []
    assert [x.id for x in service.inbox(db, principal(db, party.biller)).items] == [pending]
    db.commit()
