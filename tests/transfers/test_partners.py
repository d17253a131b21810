"""GET /api/v1/partners through HTTP: whom each role may send to, and whom an upload may name."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import update

from tests.gateway.authkit import assert_error
from tests.transfers.conftest import record_baa

PARTNERS = "/api/v1/partners"


def _baa(components, practice, vendor, *, starts: int = -1, ends: int | None = 365) -> str:
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa as record

    now = clock.now()
    with components.db.transaction() as db:
        end = now + timedelta(days=ends) if ends is not None else None
        return record(db, practice, vendor, "BAA-TEST", now + timedelta(days=starts), end, Actor.system()).id


def _terminate(components, baa_id: str) -> None:
    from gateway.audit.service import Actor
    from gateway.baas.service import get_baa, terminate_baa

    with components.db.transaction() as db:
        terminate_baa(db, get_baa(db, baa_id), "contract ended", Actor.system())


def _disable(components, user_id: str) -> None:
    from gateway.audit.service import Actor
    from gateway.users.models import User
    from gateway.users.service import disable_user

    with components.db.transaction() as db:
        disable_user(db, db.get(User, user_id), Actor.system())


def _deactivate(components, org_id: str) -> None:
    from gateway.orgs.models import Organisation

    with components.db.transaction() as db:
        db.execute(update(Organisation).where(Organisation.id == org_id).values(active=False))


@pytest.fixture
def world(components, factory):
    """One practice and every kind of vendor relationship, beside another practice with vendors of its own."""
    practice, other_practice = factory.org("practice", "Main Practice"), factory.org("practice", "Other Practice")
    v = {name: factory.org("vendor", name) for name in ("Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta")}
    billers = {
        "alpha": factory.user("biller", v["Alpha"]),
        "alpha_disabled": factory.user("biller", v["Alpha"]),
        "eta": factory.user("biller", v["Eta"]),
        "gamma": factory.user("biller", v["Gamma"]),
        "other": factory.user("biller", v["Zeta"]),
    }
    _baa(components, practice, v["Alpha"])  # in force
    _baa(components, practice, v["Eta"], ends=None)  # in force, open-ended
    # Beta: no BAA at all.
    _terminate(components, _baa(components, practice, v["Gamma"]))
    _baa(components, practice, v["Delta"], starts=-30, ends=-1)  # expired
    _baa(components, practice, v["Epsilon"], starts=5)  # not yet in force
    _baa(components, other_practice, v["Zeta"])  # another practice's vendor
    inactive = factory.org("vendor", "Theta")
    factory.user("biller", inactive)
    _baa(components, practice, inactive)
    _deactivate(components, inactive.id)
    _disable(components, billers["alpha_disabled"].id)
    return practice, other_practice, v, billers


def _recipients(components, users, *keys):
    from gateway.users.models import User

    with components.db.snapshot() as db:
        return [{"id": users[k].id, "full_name": db.get(User, users[k].id).full_name} for k in keys]


@pytest.mark.parametrize("role", ["practice_staff", "practice_approver"])
def test_practice_senders_see_vendors_under_a_baa_in_force_with_their_active_billers(
    world, components, factory, session_for, role
):
    practice, _, v, billers = world
    s = session_for(factory.user(role, practice))
    r = s.client.get(PARTNERS)
    assert r.status_code == 200, r.text
    assert "x-next-cursor" not in r.headers and "link" not in r.headers
    assert r.json() == [
        {"id": v["Alpha"].id, "name": "Alpha", "kind": "vendor", "billers": _recipients(components, billers, "alpha")},
        {"id": v["Eta"].id, "name": "Eta", "kind": "vendor", "billers": _recipients(components, billers, "eta")},
    ]
    # What the list offers, an upload accepts; what it leaves out, an upload refuses.
    assert s.upload(v["Alpha"].id, billers=[billers["alpha"].id]).status_code == 201
    assert_error(s.upload(v["Alpha"].id, billers=[billers["alpha_disabled"].id]), 422, "invalid_recipients")
    assert_error(s.upload(v["Alpha"].id, billers=[billers["eta"].id]), 422, "invalid_recipients")
    for unlisted in ("Beta", "Gamma", "Delta", "Epsilon"):
        assert_error(s.upload(v[unlisted].id), 403, "baa_not_active")


def test_a_biller_sees_the_practices_its_vendor_serves_and_names_no_one(world, components, factory, session_for):
    practice, other_practice, v, billers = world
    _baa(components, other_practice, v["Alpha"], starts=3)  # not yet: not listed
    s = session_for(billers["alpha"])
    r = s.client.get(PARTNERS)
    assert r.status_code == 200, r.text
    assert r.json() == [{"id": practice.id, "name": "Main Practice", "kind": "practice", "billers": []}]
    # Files sent back name no one: the upload refuses any recipient, so the list offers none.
    assert s.upload(practice.id).status_code == 201
    assert_error(s.upload(practice.id, billers=[billers["alpha"].id]), 422, "invalid_recipients")
    # Another vendor's biller sees only its own vendor's practices.
    assert [p["id"] for p in session_for(billers["other"]).client.get(PARTNERS).json()] == [other_practice.id]
    # A vendor whose only BAA was terminated has no one to send to.
    assert session_for(billers["gamma"]).client.get(PARTNERS).json() == []


@pytest.mark.parametrize("role", ["auditor", "admin"])
def test_roles_that_never_send_are_refused(world, factory, session_for, role):
    s = session_for(factory.user(role))
    r = s.client.get(PARTNERS)
    assert_error(r, 403, "forbidden")
    assert "Alpha" not in r.text


def test_anonymous_and_half_signed_in_callers_are_refused(world, app, factory):
    from fastapi.testclient import TestClient

    from tests.gateway.authkit import password_stage

    _, _, _, billers = world
    with TestClient(app) as anon:
        r = anon.get(PARTNERS)
        assert_error(r, 401, "not_authenticated")
        password_stage(anon, billers["alpha"])
        r = anon.get(PARTNERS)
        assert_error(r, 401, "mfa_required")
        assert "Main Practice" not in r.text


def test_partners_page_by_cursor_stable_under_inserts(components, factory, session_for):
    practice = factory.org("practice", "Paging Practice")
    for name in ("Vendor B", "Vendor C", "Vendor D", "Vendor E", "Vendor F"):
        record_baa(components, practice, factory.org("vendor", name))
    s = session_for(factory.user("practice_staff", practice))
    first = s.client.get(PARTNERS, params={"limit": 2})
    assert [p["name"] for p in first.json()] == ["Vendor B", "Vendor C"]
    cursor = first.headers["x-next-cursor"]
    link = first.headers["link"]
    assert link.endswith('>; rel="next"')
    following = urlsplit(link[1:].split(">", 1)[0])
    assert following.path == PARTNERS and parse_qs(following.query) == {"limit": ["2"], "cursor": [cursor]}
    # New partners meanwhile: one sorting before the cursor (not repeated, not shifting the pages), one after.
    record_baa(components, practice, factory.org("vendor", "Vendor A"))
    record_baa(components, practice, factory.org("vendor", "Vendor G"))
    seen = [p["name"] for p in first.json()]
    url = f"{following.path}?{following.query}"
    while url:
        page = s.client.get(url)
        assert page.status_code == 200, page.text
        seen += [p["name"] for p in page.json()]
        url = page.headers["link"][1:].split(">", 1)[0] if "link" in page.headers else ""
    assert seen == ["Vendor B", "Vendor C", "Vendor D", "Vendor E", "Vendor F", "Vendor G"]
    everyone = [p["name"] for p in s.client.get(PARTNERS, params={"limit": 200}).json()]
    assert everyone == ["Vendor A", *seen]


def test_bad_paging_parameters_are_refused(components, factory, session_for):
    practice = factory.org("practice")
    record_baa(components, practice, factory.org("vendor"))
    s = session_for(factory.user("practice_staff", practice))
    assert_error(s.client.get(PARTNERS, params={"cursor": "not a cursor"}), 422, "invalid_cursor")
    assert_error(s.client.get(PARTNERS, params={"cursor": "bm8tc2VwYXJhdG9y"}), 422, "invalid_cursor")
    assert_error(s.client.get(PARTNERS, params={"limit": 0}), 422, "invalid_input")
    assert_error(s.client.get(PARTNERS, params={"limit": 201}), 422, "invalid_input")
