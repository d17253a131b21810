"""The auditors' event lists page with the shared cursor: scoped in SQL on every page, stable while events arrive."""

from __future__ import annotations

import pytest

from gateway.audit.actions import Action
from gateway.audit.sequencer import integrate
from gateway.audit.service import Actor, record_event
from gateway.paging import DEFAULT_LIMIT
from tests.support.paging import assert_refused, flat, html_walk, walk


@pytest.fixture
def two_practices(components, factory):
    a, b = factory.org("practice"), factory.org("practice")
    return {
        "a": a,
        "b": b,
        "auditor_a": factory.user("auditor", a),
        "auditor_op": factory.user("auditor", factory.org("operator")),
    }


def _record(components, org, n: int, target_id: str = "target-x", start: int = 0) -> list[int]:
    with components.db.transaction() as db:
        events = [
            record_event(
                db,
                Action.KEYS_ROTATED,
                actor=Actor(org_id=org.id),
                target_type="key",
                target_id=target_id,
                target_org_id=org.id,
                details={"i": start + i},
            )
            for i in range(n)
        ]
    # Numbered by the integrator: at the commit on SQLite, by the leader's job (here, at once) on PostgreSQL.
    moved = integrate(components.db) or {}
    return [moved[e.id] if e.seq is None else e.seq for e in events]


def _items(body) -> list:
    return body["items"]


def test_event_search_pages_newest_first_within_scope_while_events_arrive(client, login, components, two_practices):
    a, b = two_practices["a"], two_practices["b"]
    mine = []
    for i in range(4):
        mine += _record(components, a, 2, start=2 * i)
        _record(components, b, 1, start=100 + i)  # another practice's, interleaved
    login(client, two_practices["auditor_a"])
    arrived: list[int] = []

    def record_between(n: int) -> None:
        arrived.extend(_record(components, a, 1, start=200 + n) + _record(components, b, 1, start=300 + n))

    pages = walk(client, "/api/v1/audit/events", 3, {"action": "keys.rotated"}, items=_items, between=record_between)
    seen = flat(pages, "seq")
    assert seen == mine[::-1]  # newer events than the cursor wait for the next search: nothing shifts
    assert all(b.id not in (e["actor_org_id"], e["target_org_id"]) for page in pages for e in page)
    assert not set(arrived) & set(seen)

    # `next_before`, the list's first cursor, walks the same pages.
    by_before, before = [], None
    while True:
        params = {
            "action": "keys.rotated",
            "limit": 3,
            "target_id": "target-x",
            **({"before": before} if before else {}),
        }
        body = client.get("/api/v1/audit/events", params=params).json()
        by_before += [e["seq"] for e in body["items"]]
        before = body["next_before"]
        if before is None:
            break
    assert [s for s in by_before if s in mine] == mine[::-1]
    genuine = client.get("/api/v1/audit/events", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(client, "/api/v1/audit/events", genuine)


def test_a_timeline_pages_oldest_first_and_new_events_join_its_end(client, login, components, two_practices):
    a, b = two_practices["a"], two_practices["b"]
    old = _record(components, a, 5, target_id="transfer-t")
    _record(components, b, 3, target_id="transfer-t")  # the same id in another practice's events: not this auditor's
    login(client, two_practices["auditor_a"])
    arrived: list[int] = []

    def record_between(n: int) -> None:
        arrived.extend(_record(components, a, 1, target_id="transfer-t", start=10 + n))

    seen = flat(walk(client, "/api/v1/audit/timeline/transfer-t", 2, items=_items, between=record_between), "seq")
    # Oldest first: what arrives is newer than every cursor, so it joins the end, once, in order.
    assert seen[: len(old)] == old and seen == sorted(seen) and len(seen) == len(set(seen))
    assert set(seen) == set(old) | set(arrived)
    # A newest-first cursor is not a cursor of an oldest-first list.
    newest_first = client.get("/api/v1/audit/events", params={"limit": 1}).headers["x-next-cursor"]
    r = client.get("/api/v1/audit/timeline/transfer-t", params={"cursor": newest_first})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor"
    genuine = client.get("/api/v1/audit/timeline/transfer-t", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(client, "/api/v1/audit/timeline/transfer-t", genuine)


def test_a_users_day_pages_oldest_first(client, login, components, factory, two_practices):
    from gateway import clock

    a = two_practices["a"]
    staff = factory.user("practice_staff", a)
    with components.db.transaction() as db:
        events = [
            record_event(db, Action.KEYS_ROTATED, actor=Actor(user_id=staff.id, org_id=a.id), details={"i": i})
            for i in range(5)
        ]
    moved = integrate(components.db) or {}  # on PostgreSQL, what the leader's job does
    done = [moved[e.id] if e.seq is None else e.seq for e in events]
    login(client, two_practices["auditor_a"])
    params = {"user": staff.username, "day": clock.now().strftime("%Y-%m-%d")}
    pages = walk(client, "/api/v1/audit/activity", 2, params, items=_items)
    assert [e["seq"] for page in pages for e in page if e["seq"] in done] == done


def test_the_event_pages_link_to_every_page(client, login, components, two_practices):
    a = two_practices["a"]
    seqs = _record(components, a, DEFAULT_LIMIT + 2, target_id="transfer-html")
    login(client, two_practices["auditor_op"])
    pattern = r"<tr>\s*<td>(\d+)</td>"
    pages = html_walk(client, "/audit/events?action=keys.rotated&target_id=transfer-html", pattern)
    assert [int(s) for page in pages for s in page] == seqs[::-1] and len(pages) == 2
    pages = html_walk(client, "/audit/timeline?target_id=transfer-html", pattern)
    assert [int(s) for page in pages for s in page] == seqs
    r = client.get("/audit/events", params={"cursor": "forged"})
    assert r.status_code == 422 and "The cursor is not one this list gave out." in r.text


def test_a_practice_auditor_pages_their_alerts_even_behind_many_of_others(client, login, components, two_practices):
    from gateway import clock
    from gateway.audit.models import AuditAlert, Severity

    a, b = two_practices["a"], two_practices["b"]

    def alert(n: int, org_ids: list[str]) -> int:
        with components.db.transaction() as db:
            row = AuditAlert(
                rule="download_burst",
                subject=f"subject-{n}",
                window_key="w",
                severity=Severity.high,
                raised_at=clock.now(),
                summary="synthetic",
                count=1,
                first_seq=1,
                last_seq=1,
                org_ids=org_ids,
                details={},
            )
            db.add(row)
            db.flush()
            return row.id

    mine = [alert(0, [a.id]), alert(1, [b.id, a.id])]
    others = [alert(n, [b.id]) for n in range(2, 14)]  # newer, and many more than a page
    login(client, two_practices["auditor_a"])
    pages = walk(client, "/api/v1/audit/alerts", 1, items=_items)
    assert flat(pages) == mine[::-1]
    assert not set(others) & set(flat(pages))
    login(client, two_practices["auditor_op"])
    assert flat(walk(client, "/api/v1/audit/alerts", 5, items=_items)) == (mine + others)[::-1]
    genuine = client.get("/api/v1/audit/alerts", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(client, "/api/v1/audit/alerts", genuine)


def test_checkpoints_page_newest_first_while_new_ones_are_signed(client, login, components, two_practices):
    from gateway.audit.checkpoint import maybe_checkpoint

    def sign() -> int:
        _record(components, two_practices["a"], 1)  # the log grows, so the next checkpoint is a new one
        cp = maybe_checkpoint(components, force=True)
        assert cp is not None
        return cp.id

    signed = [sign() for _ in range(5)]
    login(client, two_practices["auditor_a"])
    late: list[int] = []
    pages = walk(client, "/api/v1/audit/checkpoints", 2, items=_items, between=lambda _: late.append(sign()))
    seen = flat(pages)
    assert seen == signed[::-1] and not set(late) & set(seen)  # one signed meanwhile waits for the next walk
    sizes = [c["tree_size"] for page in pages for c in page]
    assert sizes == sorted(sizes, reverse=True)
    genuine = client.get("/api/v1/audit/checkpoints", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(client, "/api/v1/audit/checkpoints", genuine)


def test_the_access_review_pages_only_the_vendors_a_practice_deals_with(
    client, login, components, factory, two_practices
):
    a, b = two_practices["a"], two_practices["b"]
    linked = [factory.org("vendor", name=f"Review vendor {c}") for c in "dbeac"]
    unlinked = [factory.org("vendor", name=f"Review vendor {c}x") for c in "ab"]
    with components.db.transaction() as db:
        for vendor in linked:
            record_event(db, Action.KEYS_ROTATED, actor=Actor(org_id=vendor.id), target_org_id=a.id)
        for vendor in unlinked:
            record_event(db, Action.KEYS_ROTATED, actor=Actor(org_id=vendor.id), target_org_id=b.id)
    login(client, two_practices["auditor_a"])
    pages = walk(client, "/api/v1/audit/access-review", 2, items=lambda body: body["vendors"])
    assert flat(pages, "name") == sorted(v.name for v in linked)
    assert client.get(f"/api/v1/audit/access-review/{unlinked[0].id}").status_code == 404
    genuine = client.get("/api/v1/audit/access-review", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(client, "/api/v1/audit/access-review", genuine)
