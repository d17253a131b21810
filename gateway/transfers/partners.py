"""Discovery for senders: the organisations a caller may send files to right now, and whom they may name.

The same rules as an upload (gateway/transfers/upload.py `check_request`), asked before one:
practice staff and approvers send to vendors, billers send back to the practices their vendor
serves, only across a BAA in force, only to an active organisation. Files sent to a vendor may
name its active billers (`users.service.active_biller_clause`); files sent back to a practice name no one.
Filtered and paged in SQL, so a long partner list costs one page.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.auth.service import Principal
from gateway.baas.models import Baa, BaaStatus
from gateway.errors import Forbidden
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page
from gateway.transfers.service import PRACTICE_ROLES
from gateway.users.models import Role, User
from gateway.users.service import active_billers


@dataclass(frozen=True)
class Partner:
    org: Organisation
    billers: list[User]


# By name: stable when partners are added meanwhile.
ORDER = paging.Order("partners", (Organisation.name, Organisation.id))


def partners(
    db: Session, principal: Principal, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None
) -> Page[Partner]:
    """The caller's organisation's partners under a BAA in force, by name, with the billers each may be sent to."""
    user = principal.user
    now = clock.now()
    if user.role in PRACTICE_ROLES:
        mine, theirs, kind = Baa.practice_id, Baa.vendor_id, OrgKind.vendor
    elif user.role == Role.biller:
        mine, theirs, kind = Baa.vendor_id, Baa.practice_id, OrgKind.practice
    else:
        raise Forbidden("Your role does not send files.")
    # `Baa.in_force`, in SQL.
    in_force = select(theirs).where(
        mine == user.org_id,
        Baa.status == BaaStatus.active,
        Baa.effective_at <= now,
        Baa.expires_at.is_(None) | (Baa.expires_at > now),
    )
    query = select(Organisation).where(
        Organisation.id.in_(in_force), Organisation.kind == kind, Organisation.active.is_(True)
    )
    page = ORDER.page(db, query, limit=limit, cursor=cursor)
    orgs = page.items
    billers: dict[str, list[User]] = {org.id: [] for org in orgs}
    if kind == OrgKind.vendor:
        for biller in active_billers(db, list(billers)):
            billers[biller.org_id].append(biller)
    return Page([Partner(org, billers[org.id]) for org in orgs], page.next_cursor)


def all_partners(db: Session, principal: Principal) -> list[Partner]:
    """Every partner, page by page: for the send page's choice, which offers them all."""
    return list(paging.every(lambda cursor: partners(db, principal, limit=paging.MAX_LIMIT, cursor=cursor)))
