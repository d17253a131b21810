"""Administrator forms: a refused form comes back as it was typed, consequential ones wait for a
confirmation, offboarding's answer names the vendor and never offers it again preselected."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from gateway.baas.models import Baa, BaaStatus
from retention.models import DestructionJob
from tests.retention.conftest import events


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def form_html(html: str, form_id: str) -> str:
    return re.search(rf'<form [^>]*id="{form_id}".*?</form>', html, re.S).group(0)


def value_of(html: str, name: str) -> str | None:
    found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html)
    return found.group(1) if found else None


def selected(html: str, name: str) -> list[str]:
    select_ = re.search(rf'<select name="{name}".*?</select>', html, re.S).group(0)
    return re.findall(r'<option value="([^"]*)" ?selected>', select_)


def test_a_refused_new_user_keeps_every_field(party, session_for):
    admin = session_for(party.admin)
    token = csrf_of(admin.client.get("/admin/users").text)
    typed = {
        "csrf_token": token,
        "org_id": party.vendor.id,
        "username": "kept.biller",
        "full_name": "Kept Biller",
        "email": "no-at-sign",
        "role": "biller",
    }
    r = admin.client.post("/admin/users", data=typed)
    assert r.status_code == 422 and "e-mail" in r.text
    form = form_html(r.text, "create-user")
    assert value_of(form, "username") == "kept.biller" and value_of(form, "full_name") == "Kept Biller"
    assert value_of(form, "email") == "no-at-sign"
    assert selected(form, "org_id") == [party.vendor.id] and selected(form, "role") == ["biller"]
    assert '<link rel="canonical" href="/admin/users">' in r.text


def test_reset_password_and_disable_wait_for_a_confirmation(party, session_for, db):
    admin = session_for(party.admin)
    page = admin.client.get("/admin/users").text
    token = csrf_of(page)
    assert re.search(rf'action="/admin/users/{party.staff.id}/reset-password"[^>]*data-confirm="[^"]*sessions', page)
    r = admin.client.post(f"/admin/users/{party.staff.id}/reset-password", data={"csrf_token": token})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and party.staff.username in r.text
    assert "one-time-password" not in r.text and not events(db, "admin.user.password_reset")
    r = admin.client.post(f"/admin/users/{party.staff.id}/disable", data={"csrf_token": token})
    assert r.status_code == 200 and 'id="confirm-form"' in r.text and not events(db, "admin.user.disabled")
    # Confirmed: done.
    r = admin.client.post(
        f"/admin/users/{party.staff.id}/reset-password", data={"csrf_token": token, "confirmed": "yes"}
    )
    assert r.status_code == 200 and 'id="one-time-password"' in r.text
    assert len(events(db, "admin.user.password_reset")) == 1


def test_a_refused_baa_keeps_every_field(party, session_for, factory):
    admin = session_for(party.admin)
    vendor = factory.org("vendor")
    token = csrf_of(admin.client.get("/admin/baas").text)
    r = admin.client.post(
        "/admin/baas",
        data={
            "csrf_token": token,
            "practice_id": party.practice.id,
            "vendor_id": vendor.id,
            "reference": "BAA-KEPT-1",
            "effective": "2026-01-01",
            "expires": "31/12/2027",
        },
    )
    assert r.status_code == 422 and "YYYY-MM-DD" in r.text
    form = form_html(r.text, "record-baa")
    assert value_of(form, "reference") == "BAA-KEPT-1" and value_of(form, "effective") == "2026-01-01"
    assert value_of(form, "expires") == "31/12/2027" and selected(form, "vendor_id") == [vendor.id]


def test_retention_numbers_are_refused_not_dropped(party, session_for, db):
    admin = session_for(party.admin)
    token = csrf_of(admin.client.get("/admin/retention").text)
    body = {
        "csrf_token": token,
        "practice_id": party.practice.id,
        "vendor_id": party.vendor.id,
        "keep_days": "45",
        "max_access_days": "2wks",
    }
    r = admin.client.post("/admin/retention/policies", data=body)
    # Before, "2wks" silently became "no maximum".
    assert r.status_code == 422 and "whole number of days" in r.text
    form = form_html(r.text, "policy-form")
    assert value_of(form, "keep_days") == "45" and value_of(form, "max_access_days") == "2wks"
    assert selected(form, "vendor_id") == [party.vendor.id]
    assert not events(db, "retention.policy.updated")
    r = admin.client.post(
        "/admin/retention/holds",
        data={"csrf_token": token, "scope": "vendor", "target_id": "nope", "reference": "CASE-9"},
    )
    assert r.status_code >= 400
    form = form_html(r.text, "hold-form")
    assert value_of(form, "reference") == "CASE-9" and value_of(form, "target_id") == "nope"
    assert selected(form, "scope") == ["vendor"]


def test_a_refused_organisation_keeps_its_name(party, session_for):
    admin = session_for(party.admin)
    token = csrf_of(admin.client.get("/admin/orgs").text)
    r = admin.client.post("/admin/orgs", data={"csrf_token": token, "name": "X", "kind": "vendor"})
    assert r.status_code == 422
    form = form_html(r.text, "create-org")
    assert value_of(form, "name") == "X" and selected(form, "kind") == ["vendor"]


def test_offboarding_keeps_the_form_on_a_wrong_code_and_names_the_vendor_when_done(party, seeded, session_for, db):
    seeded(1)
    admin = session_for(party.admin)
    page = admin.client.get("/admin/offboarding").text
    token = csrf_of(page)
    assert 'data-confirm="' in form_html(page, "offboarding-form")
    body = {
        "csrf_token": token,
        "vendor_id": party.vendor.id,
        "reason": "contract ended",
        "confirm_name": party.vendor.name,
        "include_returned": "true",
        "code": "000000",
    }
    r = admin.client.post("/admin/offboarding", data=body)
    assert r.status_code == 422 and "The authenticator code is not correct." in r.text
    form = form_html(r.text, "offboarding-form")
    assert selected(form, "vendor_id") == [party.vendor.id] and value_of(form, "reason") == "contract ended"
    assert value_of(form, "confirm_name") == party.vendor.name and "checked" in form
    assert value_of(form, "code") is None  # a code is never given back
    db.expire_all()
    assert db.get(Baa, party.baa_id).status == BaaStatus.active
    assert db.scalar(select(func.count()).select_from(DestructionJob)) == 0
    db.commit()

    r = admin.client.post("/admin/offboarding", data={**body, "code": admin.fresh_code()})
    assert r.status_code == 200 and f"Done: {party.vendor.name} offboarded" in r.text
    form = form_html(r.text, "offboarding-form")
    assert selected(form, "vendor_id") == [] and value_of(form, "confirm_name") == ""
    assert '<link rel="canonical" href="/admin/offboarding">' in r.text
