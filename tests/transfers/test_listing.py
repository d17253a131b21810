"""The API's transfer lists read as column rows (gateway/transfers/listing.py) answer exactly what the ORM path
(service.list_transfers + views.transfer_out) answers: same items, names, recipients, order and cursors, per role."""

from __future__ import annotations

from gateway.auth.service import Proof
from gateway.transfers import listing, service, views
from gateway.transfers.models import Transfer
from tests.transfers.test_rules import principal


def _orm_pages(db, keys, p, status=None, where=None) -> list:
    out, cursor = [], None
    while True:
        page = service.list_transfers(db, p, status=status, where=where, limit=2, cursor=cursor)
        out.append(([views.transfer_out(keys, p, t).model_dump() for t in page.items], page.next_cursor))
        if (cursor := page.next_cursor) is None:
            return out


def _row_pages(db, keys, p, status=None, where=None) -> list:
    out, cursor = [], None
    while True:
        page = listing.page(db, keys, p, status=status, where=where, limit=2, cursor=cursor)
        out.append(([t.model_dump() for t in page.items], page.next_cursor))
        if (cursor := page.next_cursor) is None:
            return out


def test_row_lists_answer_as_the_orm_lists_for_every_role(party, session_for, db, components, fake_clock):
    staff = session_for(party.staff)
    ids = [staff.upload(party.vendor.id, name=f"claim-{i}.pdf").json()["id"] for i in range(2)]
    ids.append(staff.upload(party.vendor.id, name="named.pdf", billers=[party.biller.id]).json()["id"])
    approver = principal(db, party.approver)
    for transfer_id in ids[1:]:
        service.approve(
            db,
            components.settings,
            components.keys,
            approver,
            db.get(Transfer, transfer_id),
            days=2,
            download_limit=None,
            recipient_ids=[],
            proof=Proof(code=party.approver.code()),
        )
        db.commit()
        fake_clock.advance(seconds=30)  # the next approval's code is of a step not used yet

    seen = {}
    for user in (party.staff, party.approver, party.auditor, party.admin, party.biller, party.biller2):
        p = principal(db, user)
        for status, where in ((None, None), service.inbox_filter(), service.approval_filter()):
            rows = _row_pages(db, components.keys, p, status, where)
            assert rows == _orm_pages(db, components.keys, p, status, where)
            seen[(user.role, user.id, status)] = [t for items, _ in rows for t in items]
        db.commit()

    everything = seen[(party.staff.role, party.staff.id, None)]
    assert sorted(t["id"] for t in everything) == sorted(ids)  # over two pages of two
    assert {t["id"]: t["recipient_ids"] for t in everything}[ids[2]] == [party.biller.id]
    assert {t["files"][0]["name"] for t in everything} == {"claim-0.pdf", "claim-1.pdf", "named.pdf"}
    assert all(t["files"][0]["name"] is None for t in seen[(party.auditor.role, party.auditor.id, None)])
    # The transfer that names one biller is in that biller's list, not in the other's.
    assert ids[2] in [t["id"] for t in seen[(party.biller.role, party.biller.id, None)]]
    assert ids[2] not in [t["id"] for t in seen[(party.biller2.role, party.biller2.id, None)]]
