"""Transfer lists page with a cursor, filtered in SQL, stable while new transfers arrive."""

from __future__ import annotations


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
