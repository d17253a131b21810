"""The auditor's pages in names, through HTTP: people, organisations and transfers by name with their ids only
on hover, details as labelled fields, the organisation chosen from those in scope, and the user-day report
saying what it leaves out.  No file name, purpose or note reaches any auditor page."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from sqlalchemy import event, select

from gateway.audit.actions import Action
from gateway.audit.models import AuditEvent
from gateway.audit.sequencer import catch_up
from gateway.audit.service import Actor, record_event
from gateway.users.models import User
from tests.transfers.conftest import Party, party, session_for  # noqa: F401

# Synthetic stand-ins for PHI: they must never appear on an auditor's page.
FILE_NAME = "Zebediah-Quill-appeal.pdf"
PURPOSE = "CLAIM-QUILL-4242"
NOTE = "synthetic note about Zebediah Quill"
PHI = (FILE_NAME, "Zebediah", PURPOSE, "QUILL", NOTE)


@pytest.fixture
def day(party, session_for, components, factory):
    """A working day: staff send, the approver approves, the biller signs in and downloads; another practice
    and vendor have events of their own.  Returns the transfer id and the date."""
    staff, approver = session_for(party.staff), session_for(party.approver)
    r = staff.upload(party.vendor.id, name=FILE_NAME, purpose=PURPOSE, **{"X-Note": quote(NOTE)})
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    fid = approver.approve(tid).json()["files"][0]["id"]
    biller = session_for(party.biller)  # the biller's own sign-in: events of the vendor, outside the practice
    assert biller.download(tid, fid).status_code == 200
    other, other_vendor = factory.org("practice", "Elsewhere Clinic"), factory.org("vendor", "Other Billing Co")
    with components.db.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor(org_id=other.id), target_org_id=other_vendor.id)
    return tid, staff.clock.current.date().isoformat()


def _full_name(components, user_id: str) -> str:
    with components.db.sessions() as db:
        return db.get(User, user_id).full_name


def _text_without_attributes(html: str) -> str:
    """The page as a reader sees it: attribute values (title, href, value) removed."""
    return re.sub(r'\s[\w-]+="[^"]*"', "", html)


def test_events_name_people_organisations_and_transfers_with_ids_only_on_hover(party, day, session_for, components):
    tid, _ = day
    auditor = session_for(party.auditor)
    page = auditor.client.get("/audit/events", params={"target_id": tid})
    assert page.status_code == 200
    html = page.text
    staff_name, biller_name = _full_name(components, party.staff.id), _full_name(components, party.biller.id)
    assert f'title="{party.staff.username} · id {party.staff.id}">{staff_name}</span>' in html
    assert f'title="{party.biller.username} · id {party.biller.id}">{biller_name}</span>' in html
    assert f'title="id {party.practice.id}">{party.practice.name}</span>' in html
    assert f'title="transfer id {tid}">transfer {tid[:8]}: {party.practice.name} → {party.vendor.name}</span>' in html
    visible = _text_without_attributes(html)
    for raw in (party.staff.id, party.biller.id, party.practice.id, party.vendor.id, tid):
        assert raw not in visible
    # Details are labelled fields, ids in them named too; no raw key=value text.
    assert f'<dt>Vendor</dt><dd title="id {party.vendor.id}">{party.vendor.name}</dd>' in html
    assert "<dt>Download limit</dt>" in html
    with components.db.sessions() as db:
        stored = db.scalars(select(AuditEvent).where(AuditEvent.action == "transfer.file.stored")).one()
    digest = stored.details["sha256"]
    assert f'<dt>SHA-256</dt><dd title="{digest}">{digest[:12]}…</dd>' in html
    assert "vendor_id=" not in html and "<dt>vendor_id</dt>" not in html


def test_names_are_read_in_one_query_whatever_the_number_of_events(party, session_for, components):
    auditor = session_for(party.auditor)

    def queries_for_a_page_of(n: int) -> int:
        with components.db.transaction() as db:
            for i in range(n):
                record_event(
                    db,
                    Action.KEYS_ROTATED,
                    actor=Actor(user_id=f"user-{n}-{i}", org_id=party.practice.id),
                    target_type="transfer",
                    target_id=f"transfer-{n}-{i}",
                    target_org_id=party.practice.id,
                    details={"vendor_id": f"org-{n}-{i}", "recipients": [f"r-{n}-{i}"]},
                )
        seen = []
        listener = lambda *args: seen.append(args[2])  # noqa: E731 - the statement of each execution
        event.listen(components.db.engine, "before_cursor_execute", listener)
        try:
            page = auditor.client.get("/audit/events", params={"action": "keys.rotated"})
        finally:
            event.remove(components.db.engine, "before_cursor_execute", listener)
        assert page.status_code == 200 and page.text.count("<td>keys.rotated</td>") >= n
        return len(seen)

    queries_for_a_page_of(0)  # the session's first page does its own one-off reads
    assert queries_for_a_page_of(2) == queries_for_a_page_of(20)


def test_the_organisation_filter_lists_only_organisations_in_scope(party, day, session_for, factory):
    def options(client) -> set[str]:
        html = client.get("/audit/events").text
        select_html = re.search(r'<select name="org">(.*?)</select>', html, re.S).group(1)
        return set(re.findall(r'<option value="([^"]*)"', select_html)) - {""}

    practice_auditor = session_for(party.auditor)
    assert options(practice_auditor.client) == {party.practice.id, party.vendor.id}
    operator_auditor = session_for(factory.user("auditor", factory.org("operator")))
    every = options(operator_auditor.client)
    assert {party.practice.id, party.vendor.id} < every and len(every) >= 5
    # Dates are pickers; choosing an organisation filters by it.
    html = practice_auditor.client.get("/audit/events", params={"org": party.vendor.id}).text
    assert '<input type="date" name="since"' in html and '<input type="date" name="until"' in html
    assert f'<option value="{party.vendor.id}" title="id {party.vendor.id}" selected>' in html


def _day_events(components, user_id: str, practice_id: str, date: str) -> tuple[int, int]:
    """(shown, left out) for a practice's auditor, counted in Python from the whole log."""
    catch_up(components.db)
    with components.db.sessions() as db:
        every = db.scalars(select(AuditEvent).where(AuditEvent.actor_user_id == user_id))
        mine = [e for e in every if e.occurred_at.date().isoformat() == date]
    inside = [e for e in mine if practice_id in (e.actor_org_id, e.target_org_id)]
    return len(inside), len(mine) - len(inside)


def test_the_user_day_report_states_its_scope_and_what_it_leaves_out(party, day, session_for, components, factory):
    _, date = day
    shown, hidden = _day_events(components, party.biller.id, party.practice.id, date)
    assert shown >= 2 and hidden >= 2  # the download on one side, the biller's own sign-in on the other

    practice_auditor = session_for(party.auditor)
    page = practice_auditor.client.get("/audit/activity", params={"user": party.biller.username, "day": date})
    assert page.status_code == 200
    html = page.text
    assert '<input type="date" name="day" required' in html
    scope = re.search(r'<p id="report-scope" class="notice">(.*?)</p>', html, re.S).group(1)
    assert _full_name(components, party.biller.id) in scope and party.practice.name in scope
    assert f'<strong id="hidden-count">{hidden}</strong> events of this user on this day are outside it' in scope
    assert html.count("<tr>\n<td>") == shown
    assert "auth.login.succeeded" not in _text_without_attributes(html)  # counted, never shown

    operator_auditor = session_for(factory.user("auditor", factory.org("operator")))
    html = operator_auditor.client.get("/audit/activity", params={"user": party.biller.id, "day": date}).text
    scope = re.search(r'<p id="report-scope" class="notice">(.*?)</p>', html, re.S).group(1)
    assert "Showing all events" in scope and "hidden-count" not in html
    assert html.count("<tr>\n<td>") == shown + hidden
    assert "<td>auth.login.succeeded</td>" in html


def test_the_report_tells_nothing_of_a_user_outside_the_scope(party, day, session_for, components, factory):
    _, date = day
    stranger = factory.user("practice_staff", factory.org("practice", "Unrelated Practice"))
    with components.db.transaction() as db:
        record_event(db, Action.KEYS_ROTATED, actor=Actor(user_id=stranger.id, org_id=stranger.org_id))
    html = session_for(party.auditor).client.get("/audit/activity", params={"user": stranger.id, "day": date}).text
    scope = re.search(r'<p id="report-scope" class="notice">(.*?)</p>', html, re.S).group(1)
    assert "events outside it are not shown" in scope and "hidden-count" not in html
    assert _full_name(components, stranger.id) not in html and "Unrelated Practice" not in html


def test_no_phi_on_any_auditor_page(party, day, session_for, factory):
    tid, date = day
    for auditor in (party.auditor, factory.user("auditor", factory.org("operator"))):
        client = session_for(auditor).client
        urls = [
            "/audit",
            "/audit/events",
            f"/audit/events?target_id={tid}",
            f"/audit/activity?user={party.staff.id}&day={date}",
            f"/audit/activity?user={party.biller.id}&day={date}",
            f"/audit/timeline?target_id={tid}",
            f"/audit/access-review?vendor_id={party.vendor.id}",
        ]
        for url in urls:
            page = client.get(url)
            assert page.status_code == 200, url
            for phi in PHI:
                assert phi.lower() not in page.text.lower(), (url, phi)
        assert tid[:8] in client.get(f"/audit/timeline?target_id={tid}").text
