"""Administrator pages for organisations."""

from fastapi import APIRouter, Form, Request

from gateway.deps import AdminPrincipal, DbSession
from gateway.errors import InvalidInput
from gateway.orgs import service
from gateway.orgs.models import OrgKind
from gateway.web import redirect, render, submit

router = APIRouter(prefix="/admin/orgs", include_in_schema=False)


@router.get("")
def orgs(request: Request, db: DbSession, principal: AdminPrincipal):
    return render(
        request, "admin_orgs.html", principal=principal, orgs=service.list_orgs(db), kinds=list(OrgKind), kept={}
    )


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
        form=lambda **error: render(
            request,
            "admin_orgs.html",
            principal=principal,
            orgs=service.list_orgs(db),
            kinds=list(OrgKind),
            kept={"name": name, "kind": kind},
            **error,
        ),
        done=lambda _: redirect("/admin/orgs"),
    )
