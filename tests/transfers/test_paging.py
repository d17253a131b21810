"""Transfer lists page with a cursor, filtered in SQL, stable while new transfers arrive."""

from __future__ import annotations

from gateway.paging import DEFAULT_LIMIT
from tests.support.paging import assert_refused, flat, html_links, html_next_link, walk
from tests.transfers.conftest import record_baa


def _ids(pages) -> list[str]:
    return [t["id"] for page in pages for t in page]


def _walk(client, path: str, limit: int) -> list[list[dict]]:
    pages, params = [], {"limit": limit}
    for _ in range(50):  # bounded: a list of this size has a handful of pages
        r = client.get(path, params=params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        cursor = r.headers.get("x-next-cursor")
        if cursor is None:
            assert "link" not in r.headers
            return pages
        assert r.headers["link"].endswith('>; rel="next"') and f"cursor={cursor}" in r.headers["link"]
        params = {"limit": limit, "cursor": cursor}
    raise AssertionError("paging did not end")


def test_pages_cover_every_transfer_once_newest_first(party, session_for, fake_clock):
    staff = session_for(party.staff)
    sent = []
    for i in range(7):
        fake_clock.advance(seconds=1)
        r = staff.upload(party.vendor.id, purpose=f"PAGE-{i}")
        assert r.status_code == 201, r.text
        sent.append(r.json()["id"])
    pages = _walk(staff.client, "/api/v1/transfers", limit=3)
    assert [len(p) for p in pages] == [3, 3, 1]
    assert _ids(pages) == sent[::-1]


def test_a_new_transfer_does_not_shift_the_pages_being_read(party, session_for, fake_clock):
    staff = session_for(party.staff)
    for i in range(4):
        fake_clock.advance(seconds=1)
        assert staff.upload(party.vendor.id, purpose=f"PAGE-{i}").status_code == 201
    first = staff.client.get("/api/v1/transfers", params={"limit": 2})
    fake_clock.advance(seconds=1)
    newest = staff.upload(party.vendor.id, purpose="PAGE-NEW").json()["id"]
    rest = staff.client.get("/api/v1/transfers", params={"limit": 2, "cursor": first.headers["x-next-cursor"]})
    seen = [t["id"] for t in first.json() + rest.json()]
    assert newest not in seen and len(set(seen)) == 4


def test_a_biller_pages_only_through_what_is_addressed_to_them(party, session_for, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    mine = []
    for i in range(6):
        fake_clock.advance(seconds=1)
        # Every other transfer names the other biller only: hidden from this one, in SQL, before the limit.
        billers = [party.biller2.id] if i % 2 else [party.biller.id]
        tid = staff.upload(party.vendor.id, purpose=f"PAGE-{i}", billers=billers).json()["id"]
        assert approver.approve(tid, days=1).status_code == 200
        if not i % 2:
            mine.append(tid)
    biller = session_for(party.biller)
    for path in ("/api/v1/transfers", "/api/v1/transfers/inbox"):
        pages = _walk(biller.client, path, limit=2)
        assert [len(p) for p in pages] == [2, 1], path
        assert sorted(_ids(pages)) == sorted(mine), path


def test_a_forged_cursor_is_refused(party, session_for):
    staff = session_for(party.staff)
    for cursor in ("not-base64!", "bm90aGluZw", "MjAyNi0xMi0wMVQwMDowMDowMHw"):
        r = staff.client.get("/api/v1/transfers", params={"cursor": cursor})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", (cursor, r.text)


def test_the_approval_queue_pages_every_waiting_transfer_once_while_uploads_arrive(party, session_for, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    waiting = []
    for i in range(5):
        fake_clock.advance(seconds=1)
        waiting.append(staff.upload(party.vendor.id, purpose=f"QUEUE-{i}").json()["id"])
    arrived = []

    def upload_between(_):
        fake_clock.advance(seconds=1)
        arrived.append(staff.upload(party.vendor.id, purpose="QUEUE-NEW").json()["id"])

    pages = walk(approver.client, "/api/v1/transfers/approvals", limit=2, between=upload_between)
    # Newest first: what arrives while paging is newer than the cursor, so never shifts what is left to read.
    assert flat(pages) == waiting[::-1]
    assert not set(arrived) & set(flat(pages))
    assert_refused(approver.client, "/api/v1/transfers/approvals", genuine=_first_cursor(approver.client, "approvals"))


def _first_cursor(client, which: str) -> str:
    r = client.get(f"/api/v1/transfers/{which}" if which else "/api/v1/transfers", params={"limit": 1})
    assert r.status_code == 200 and r.headers.get("x-next-cursor"), r.text
    return r.headers["x-next-cursor"]


def test_another_vendor_never_sees_a_transfer_on_any_page(party, session_for, factory, fake_clock, components):
    staff, approver = session_for(party.staff), session_for(party.approver)
    other_vendor = factory.org("vendor")
    record_baa(components, party.practice, other_vendor)
    other_biller = session_for(factory.user("biller", other_vendor))
    mine, theirs = [], []
    for i in range(6):
        fake_clock.advance(seconds=1)
        to = other_vendor if i % 3 == 0 else party.vendor
        tid = staff.upload(to.id, purpose=f"SCOPE-{i}").json()["id"]
        assert approver.approve(tid, days=1).status_code == 200
        (theirs if to is other_vendor else mine).append(tid)
    biller = session_for(party.biller)
    for path in ("/api/v1/transfers", "/api/v1/transfers/inbox"):
        assert flat(walk(biller.client, path, limit=1)) == mine[::-1], path
        assert flat(walk(other_biller.client, path, limit=1)) == theirs[::-1], path
    assert_refused(biller.client, "/api/v1/transfers/inbox", genuine=_first_cursor(biller.client, "inbox"))


def test_the_transfer_pages_link_to_their_next_pages(party, session_for, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    sent = []
    for i in range(DEFAULT_LIMIT + 2):
        fake_clock.advance(seconds=1)
        sent.append(staff.upload(party.vendor.id, purpose=f"HTML-{i}").json()["id"])
    for client, path in ((staff.client, "/transfers"), (approver.client, "/transfers/approvals")):
        first = client.get(path)
        assert first.status_code == 200
        assert sent[-1] in first.text and sent[1] not in first.text, path
        second = client.get(html_next_link(first.text))
        assert second.status_code == 200 and 'rel="next"' not in second.text, path
        assert sent[0] in second.text and sent[1] in second.text and sent[-1] not in second.text, path
        # Plain links, no inline script: the only scripts are the gateway's own static files.
        assert 'rel="first"' in second.text and "<script>" not in second.text
    assert staff.client.get("/transfers", params={"cursor": "forged"}).status_code == 422


def test_a_biller_pages_the_inbox_and_the_list_on_one_page_apart(party, session_for, fake_clock):
    staff, approver = session_for(party.staff), session_for(party.approver)
    for i in range(DEFAULT_LIMIT + 1):
        fake_clock.advance(seconds=1)
        tid = staff.upload(party.vendor.id, purpose=f"INBOX-{i}").json()["id"]
        assert approver.approve(tid, days=1).status_code == 200
    biller = session_for(party.biller)
    first = biller.client.get("/transfers")
    links = html_links(first.text)
    assert len(links["next"]) == 2  # the inbox's (`inbox_cursor`) and the list's (`cursor`), each its own
    inbox_next = next(u for u in links["next"] if "inbox_cursor=" in u)
    list_next = next(u for u in links["next"] if "inbox_cursor=" not in u)
    assert "cursor=" in list_next
    for url in (inbox_next, list_next):
        assert biller.client.get(url).status_code == 200
