"""Sign-in hours per organisation, in its own IANA time zone (issue 15): the alert, and setting them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from gateway.audit.models import AuditAlert
from gateway.orgs import hours
from gateway.orgs.models import Organisation
from tests.gateway.authkit import csrf_from, last_event


def _set_zone(components, org_id: str, zone: str | None, signin_hours: str | None = None) -> None:
    with components.db.transaction() as db:
        org = db.get(Organisation, org_id)
        org.timezone, org.signin_hours = zone, signin_hours


def _outside_hours_flags(components) -> list[AuditAlert]:
    from gateway.auditor import alerts

    alerts.run(components)
    with components.db.sessions() as db:
        return list(db.scalars(select(AuditAlert).where(AuditAlert.rule == "login_outside_hours")))


def _sign_in_at(client, login, user, fake_clock, at: datetime) -> None:
    fake_clock.current = at
    login(client, user, fake_clock)
    client.cookies.clear()


def test_us_hours_in_new_york_raise_nothing_and_three_in_the_morning_does(
    components, factory, client, login, fake_clock
):
    components.settings.audit_alert_allowed_hours = "06-20"  # the operator's, in UTC by default
    vendor = factory.org("vendor")
    _set_zone(components, vendor.id, "America/New_York")
    biller = factory.user("biller", vendor)
    # 14:00 in New York (EDT, UTC-4) is 18:00 UTC ... and 19:00 UTC would be 15:00 local: both inside.
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 15, 18, 0, tzinfo=UTC))
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 15, 19, 0, tzinfo=UTC))
    # 22:00 UTC is outside 06-20 UTC, but 18:00 in New York: the UTC-only rule raised these.
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 15, 22, 0, tzinfo=UTC))
    assert _outside_hours_flags(components) == []
    # 03:00 in New York is 07:00 UTC: inside the UTC hours, outside the organisation's.
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 16, 7, 0, tzinfo=UTC))
    [flag] = _outside_hours_flags(components)
    assert flag.subject == biller.id and flag.org_ids == [vendor.id]
    assert "03:00 America/New_York" in flag.summary and "06:00-20:00" in flag.summary
    assert flag.details == {"hour": 3, "timezone": "America/New_York", "utc_hour": 7}


def test_the_same_utc_hour_is_judged_in_local_time_either_side_of_the_dst_change(
    components, factory, client, login, fake_clock
):
    """New York moves from UTC-5 to UTC-4 on 2027-03-14: 11:30 UTC is 06:30 before and 07:30 after."""
    vendor = factory.org("vendor")
    _set_zone(components, vendor.id, "America/New_York", "07-19")
    biller = factory.user("biller", vendor)
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 3, 13, 11, 30, tzinfo=UTC))
    [flag] = _outside_hours_flags(components)  # 06:30 EST
    assert "06:30 America/New_York" in flag.summary
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 3, 15, 11, 30, tzinfo=UTC))
    assert [f.id for f in _outside_hours_flags(components)] == [flag.id]  # 07:30 EDT: nothing new
    # The hour repeated when the clocks go back (2027-11-07) is inside "01-02" both times.
    assert hours.within(datetime(2027, 11, 7, 5, 30, tzinfo=UTC), "America/New_York", "01-02")[0]  # 01:30 EDT
    assert hours.within(datetime(2027, 11, 7, 6, 30, tzinfo=UTC), "America/New_York", "01-02")[0]  # 01:30 EST
    assert not hours.within(datetime(2027, 11, 7, 7, 30, tzinfo=UTC), "America/New_York", "01-02")[0]


def test_hours_that_span_midnight(components):
    night = "22-06"
    assert hours.within(datetime(2026, 1, 5, 23, 0, tzinfo=UTC), "UTC", night)[0]
    assert hours.within(datetime(2026, 1, 5, 5, 59, tzinfo=UTC), "UTC", night)[0]
    assert not hours.within(datetime(2026, 1, 5, 6, 0, tzinfo=UTC), "UTC", night)[0]
    assert not hours.within(datetime(2026, 1, 5, 12, 0, tzinfo=UTC), "UTC", night)[0]


def test_an_organisation_with_no_zone_uses_the_operators(components, factory, client, login, fake_clock):
    components.settings.timezone = "America/New_York"
    components.settings.audit_alert_allowed_hours = "06-20"
    vendor = factory.org("vendor")  # no zone, no hours of its own
    biller = factory.user("biller", vendor)
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 15, 19, 0, tzinfo=UTC))  # 15:00 local
    assert _outside_hours_flags(components) == []
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 16, 7, 0, tzinfo=UTC))  # 03:00 local
    [flag] = _outside_hours_flags(components)
    assert "03:00 America/New_York" in flag.summary
    # Its own hours, in the operator's zone, take over from the operator's hours.
    _set_zone(components, vendor.id, None, "02-04")
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 16, 7, 30, tzinfo=UTC))  # 03:30 local
    summaries = [f.summary for f in _outside_hours_flags(components)]
    assert not any("03:30" in s for s in summaries)
    assert any("15:00 America/New_York, outside 02:00-04:00" in s for s in summaries)  # the earlier one, now outside
    # A stored zone the zone database no longer holds counts as unset: the rules still run.
    _set_zone(components, vendor.id, "Nowhere/Retired", "02-04")
    _sign_in_at(client, login, biller, fake_clock, datetime(2027, 7, 16, 9, 0, tzinfo=UTC))  # 05:00 local
    assert any("05:00 America/New_York" in f.summary for f in _outside_hours_flags(components))


def test_the_operator_zone_setting_is_validated():
    import pytest
    from pydantic import ValidationError

    from gateway.config import Settings

    with pytest.raises(ValidationError, match="IANA time zone"):
        Settings(timezone="Eastern Standard Time")
    assert Settings(timezone="Europe/Paris").timezone == "Europe/Paris"


def test_administrators_set_a_zone_by_api_and_an_unknown_one_is_refused(components, factory, client, login):
    admin = factory.user("admin", factory.org("operator"))
    h = {"X-CSRF-Token": login(client, admin)}
    r = client.post(
        "/api/v1/orgs", json={"name": "Mars Billing", "kind": "vendor", "timezone": "Mars/Olympus"}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_timezone"
    assert "IANA" in r.json()["error"]["message"]
    with components.db.sessions() as db:
        assert db.scalar(select(Organisation).where(Organisation.name == "Mars Billing")) is None
    r = client.post(
        "/api/v1/orgs",
        json={"name": "Hudson Billing", "kind": "vendor", "timezone": "America/New_York", "signin_hours": "07-19"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    org = r.json()
    assert (org["timezone"], org["signin_hours"]) == ("America/New_York", "07-19")

    for body, code in (
        ({"timezone": "America/NewYork"}, "invalid_timezone"),
        ({"timezone": "UTC", "signin_hours": "7-19"}, "invalid_hours"),
        ({"timezone": "UTC", "signin_hours": "07-25"}, "invalid_hours"),
    ):
        r = client.patch(f"/api/v1/orgs/{org['id']}", json=body, headers=h)
        assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
    r = client.patch("/api/v1/orgs/" + "0" * 32, json={"timezone": "UTC"}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "org_not_found"
    listed = {o["id"]: o for o in client.get("/api/v1/orgs").json()}
    assert (listed[org["id"]]["timezone"], listed[org["id"]]["signin_hours"]) == ("America/New_York", "07-19")

    r = client.patch(f"/api/v1/orgs/{org['id']}", json={"timezone": "Asia/Kolkata", "signin_hours": "22-06"}, headers=h)
    assert r.status_code == 200 and r.json()["timezone"] == "Asia/Kolkata"
    event = last_event(components, "admin.org.updated")
    assert event.target_id == org["id"] and event.details == {"timezone": "Asia/Kolkata", "signin_hours": "22-06"}
    r = client.patch(f"/api/v1/orgs/{org['id']}", json={}, headers=h)
    assert (r.json()["timezone"], r.json()["signin_hours"]) == (None, None)  # back to the operator's


def test_the_admin_page_sets_a_zone_and_keeps_a_refused_one(components, factory, client, login):
    admin = factory.user("admin", factory.org("operator"))
    vendor = factory.org("vendor")
    login(client, admin)
    page = client.get("/admin/orgs")
    assert '<datalist id="zones">' in page.text and '<option value="America/New_York">' in page.text
    csrf = csrf_from(page.text)
    r = client.post(
        f"/admin/orgs/{vendor.id}/hours",
        data={"timezone": "America/Chicago", "signin_hours": "07-19", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    r = client.post(
        f"/admin/orgs/{vendor.id}/hours", data={"timezone": "Central Time", "signin_hours": "08-18", "csrf_token": csrf}
    )
    assert r.status_code == 422 and "Choose a time zone by its IANA name" in r.text
    assert 'value="Central Time"' in r.text and 'value="08-18"' in r.text  # what was typed stays
    with components.db.sessions() as db:
        org = db.get(Organisation, vendor.id)
        assert (org.timezone, org.signin_hours) == ("America/Chicago", "07-19")
    r = client.post(
        "/admin/orgs",
        data={"name": "Pune Billing", "kind": "vendor", "timezone": "Asia/Kolkata", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with components.db.sessions() as db:
        assert db.scalar(select(Organisation.timezone).where(Organisation.name == "Pune Billing")) == "Asia/Kolkata"
