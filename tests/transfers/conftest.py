"""Fixtures for transfer tests: a practice and a vendor under an active BAA, one user per role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TestUser, api_login

PDF = b"%PDF-1.7\n" + b"synthetic appeal attachment, no real patient data\n" * 200 + b"%%EOF\n"


@dataclass
class Party:
    practice: object
    vendor: object
    staff: TestUser
    approver: TestUser
    biller: TestUser
    biller2: TestUser
    auditor: TestUser
    admin: TestUser
    baa_id: str


def record_baa(components, practice, vendor, *, days: int = 365):
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa as record

    with components.db.transaction() as db:
        baa = record(
            db,
            practice,
            vendor,
            "BAA-TEST-1",
            clock.now() - timedelta(days=1),
            clock.now() + timedelta(days=days),
            Actor.system(),
        )
        return baa.id


@pytest.fixture
def party(components, factory) -> Party:
    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    return Party(
        practice=practice,
        vendor=vendor,
        staff=factory.user("practice_staff", practice),
        approver=factory.user("practice_approver", practice),
        biller=factory.user("biller", vendor),
        biller2=factory.user("biller", vendor),
        auditor=factory.user("auditor", practice),
        admin=factory.user("admin", operator),
        baa_id=record_baa(components, practice, vendor),
    )


class Session:
    """A signed-in TestClient for one user, with its CSRF header applied to every call."""

    def __init__(self, app, user: TestUser, clock):
        self.client = TestClient(app)
        self.user = user
        self.clock = clock
        self.csrf = api_login(self.client, user, clock)  # moves the clock on: every code is fresh
        self.client.headers["X-CSRF-Token"] = self.csrf

    def fresh_code(self) -> str:
        """A code of a step nobody has used yet; the clock moves on so the next one is fresh too."""
        code = self.user.code()
        self.clock.advance(seconds=30)
        return code

    def upload(
        self,
        partner_id: str,
        data: bytes = PDF,
        name: str = "appeal.pdf",
        purpose: str = "APPEAL-1001",
        billers: list[str] | None = None,
        **headers,
    ):
        params = {"partner_id": partner_id}
        if billers:
            params["biller_id"] = billers
        return self.client.post(
            "/api/v1/transfers",
            params=params,
            content=data,
            headers={
                "Content-Type": "application/octet-stream",
                "X-Purpose": purpose,
                "Content-Disposition": f"attachment; filename*=UTF-8''{__import__('urllib.parse').parse.quote(name)}",
                **headers,
            },
        )

    def approve(self, transfer_id: str, **body):
        if "code" not in body:
            body["code"] = self.fresh_code()
        return self.client.post(f"/api/v1/transfers/{transfer_id}/approve", json=body)

    def download(self, transfer_id: str, file_id: str, **headers):
        return self.client.get(f"/api/v1/transfers/{transfer_id}/files/{file_id}/content", headers=headers)


@pytest.fixture
def session_for(app, fake_clock):
    opened = []

    def make(user: TestUser) -> Session:
        s = Session(app, user, fake_clock)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.client.close()


def events(db, action: str | None = None, **where):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from gateway.audit.models import AuditEvent
    from gateway.audit.sequencer import integrate_in
    from gateway.audit.service import lock_appends

    if db.get_bind().dialect.name == "postgresql":
        # Queued events first, as a reader of the log does (there the leader integrates them; SQLite's
        # commits did already), in a write transaction of its own: `db` may be a read session. What `db`
        # itself recorded is committed first (this helper always ended its transaction).
        db.commit()
        with Session(db.get_bind().execution_options(phigate_read=False)) as writer, writer.begin():
            lock_appends(writer)
            integrate_in(writer)
    db.expire_all()
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if action:
        query = query.where(AuditEvent.action == action)
    for key, value in where.items():
        query = query.where(getattr(AuditEvent, key) == value)
    found = list(db.scalars(query))
    db.commit()  # end the read: on SQLite an open transaction would hold the write lock
    return found


def sealed_of(db, owner_id: str, kind: str = "transfer_file"):
    """The newest registry row of the object `owner_id` holds (a file id, a BAA id)."""
    from sqlalchemy import select

    from gateway.sealed.models import SealedKind, SealedObject

    row = db.scalars(
        select(SealedObject)
        .where(SealedObject.kind == SealedKind(kind), SealedObject.owner_id == owner_id)
        .order_by(SealedObject.created_at.desc())
        .execution_options(populate_existing=True)
    ).first()
    db.commit()
    return row


def live_sealed(db) -> list:
    """Registry rows not destroyed (pending, stored or destroying): what still holds an object."""
    from sqlalchemy import select

    from gateway.sealed.models import SealedObject, SealedState

    rows = list(
        db.scalars(
            select(SealedObject)
            .where(SealedObject.state != SealedState.destroyed)
            .execution_options(populate_existing=True)
        )
    )
    db.commit()
    return rows
