"""Administrator pages for organisations."""

from fastapi import APIRouter, Form, Request

from gateway.deps import AdminPrincipal, DbSession
from gateway.errors import InvalidInput
from gateway.orgs import hours, service
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
        zones=hours.zones(),
        default_zone=request.app.state.components.settings.timezone,
        default_hours=request.app.state.components.settings.audit_alert_allowed_hours,
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
    timezone: str = Form(default="", max_length=64),
    signin_hours: str = Form(default="", max_length=5),
):
    def run():
        if kind not in OrgKind.__members__:
            raise InvalidInput("Choose practice, vendor or operator.", code="invalid_kind")
        if len(name.strip()) < 2:
            raise InvalidInput("Name the organisation.", code="invalid_name")
        service.create_org(db, name, OrgKind(kind), principal.actor, timezone=timezone, signin_hours=signin_hours)

    kept = {"name": name, "kind": kind, "timezone": timezone, "signin_hours": signin_hours}
    return submit(
        db,
        run,
        form=lambda **error: _page(request, db, principal, kept=kept, **error),
        done=lambda _: redirect("/admin/orgs"),
    )


@router.post("/{org_id}/hours")
def set_hours(
    request: Request,
    org_id: str,
    db: DbSession,
    principal: AdminPrincipal,
    timezone: str = Form(default="", max_length=64),
    signin_hours: str = Form(default="", max_length=5),
):
    kept = {"org_id": org_id, "timezone": timezone, "signin_hours": signin_hours}
    return submit(
        db,
        lambda: service.set_hours(db, org_id, principal.actor, timezone=timezone, signin_hours=signin_hours),
        form=lambda **error: _page(request, db, principal, kept=kept, **error),
        done=lambda _: redirect("/admin/orgs"),
    )
