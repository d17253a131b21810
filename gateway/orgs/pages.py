"""Administrator pages for organisations."""

from fastapi import APIRouter, Form, Request

from gateway.deps import AdminPrincipal, DbSession
from gateway.errors import InvalidInput
from gateway.orgs import service
from gateway.orgs.models import OrgKind
from gateway.web import Cursor, page_links, redirect, render, submit

router = APIRouter(prefix="/admin/orgs", include_in_schema=False)


def _page(request, db, principal, status_code=200, cursor: str | None = None, kept=None, **extra):
    page = service.list_orgs(db, cursor=cursor)
    return render(
        request,
        "admin_orgs.html",
        status_code=status_code,
        principal=principal,
        orgs=page.items,
        links=page_links(request, page.next_cursor),
        kinds=list(OrgKind),
        kept=kept or {},
        **extra,
    )


@router.get("")
def orgs(request: Request, db: DbSession, principal: AdminPrincipal, cursor: Cursor = None):
    return _page(request, db, principal, cursor=cursor)


@router.post("")
def create_org(
    request: Request,
    db: DbSession,
    principal: AdminPrincipal,
    name: str = Form(max_length=200),
    kind: str = Form(max_length=16),
):
    def run():
        if kind not in OrgKind.__members__:
            raise InvalidInput("Choose practice, vendor or operator.", code="invalid_kind")
        if len(name.strip()) < 2:
            raise InvalidInput("Name the organisation.", code="invalid_name")
        service.create_org(db, name, OrgKind(kind), principal.actor)

    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, kept={"name": name, "kind": kind}, **error),
        done=lambda _: redirect("/admin/orgs"),
    )
