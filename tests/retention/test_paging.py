"""Certificates and tombstones page with the shared cursor, scoped to the auditor's practice in SQL on every page."""

from __future__ import annotations

from gateway.audit.service import Actor
from gateway.paging import DEFAULT_LIMIT
from retention.runner import run
from tests.retention.seed import seed
from tests.support.paging import assert_refused, flat, html_walk, walk


def _destroy(components, fake_clock) -> str:
    """One retention run over what is due: one certificate per practice-vendor scope."""
    fake_clock.advance(seconds=5)
    report = run(components, Actor.system())
    [job] = report.jobs
    return job.certificate_id


def test_an_auditor_pages_only_their_practices_certificates_and_tombstones(
    components, party, seeded, factory, session_for, fake_clock
):
    other_practice, other_vendor = factory.org("practice"), factory.org("vendor")
    other_staff = factory.user("practice_staff", other_practice)
    mine, theirs, files = [], [], []
    for _ in range(3):
        files += seeded(2, ended_days_ago=31)
        mine.append(_destroy(components, fake_clock))
        seed(components, other_practice.id, other_vendor.id, other_staff.id, 1, ended_days_ago=31)
        theirs.append(_destroy(components, fake_clock))
    auditor = session_for(party.auditor)
    late: list[str] = []

    def destroy_between(_: int) -> None:
        seeded(1, ended_days_ago=31)
        late.append(_destroy(components, fake_clock))

    pages = walk(auditor.client, "/api/v1/certificates", 1, between=destroy_between)
    assert flat(pages) == mine[::-1]  # newest first; a certificate issued meanwhile waits for the next walk
    assert all(c["practice_id"] == party.practice.id for page in pages for c in page)
    assert not set(theirs) & set(flat(pages)) and not set(late) & set(flat(pages))

    tombs = walk(auditor.client, "/api/v1/retention/tombstones", 2)
    ids = flat(tombs, "transfer_id")
    assert set(files) <= set(ids) and len(ids) == len(set(flat(tombs, "file_id")))
    assert all(t["practice_id"] == party.practice.id for page in tombs for t in page)
    stamps = [t["destroyed_at"] for page in tombs for t in page]
    assert stamps == sorted(stamps, reverse=True)

    # An operator's auditor pages through every practice's.
    operator = session_for(factory.user("auditor", factory.org("operator")))
    every = flat(walk(operator.client, "/api/v1/certificates", 2))
    assert set(mine) | set(theirs) | set(late) == set(every) and len(every) == len(set(every))
    for path in ("/api/v1/certificates", "/api/v1/retention/tombstones"):
        genuine = auditor.client.get(path, params={"limit": 1}).headers["x-next-cursor"]
        assert_refused(auditor.client, path, genuine)


def test_the_certificates_page_pages_its_tombstones(components, party, seeded, session_for, fake_clock):
    seeded(DEFAULT_LIMIT + 2, ended_days_ago=31)
    cert = _destroy(components, fake_clock)
    auditor = session_for(party.auditor)
    pages = html_walk(auditor.client, "/certificates", r"<tr><td><code>([0-9a-f]{32})</code></td><td><code>")
    assert [len(p) for p in pages] == [DEFAULT_LIMIT, 2]
    every = [t for p in pages for t in p]
    assert len(set(every)) == DEFAULT_LIMIT + 2
    second = auditor.client.get("/certificates", params={"tombstones_cursor": "forged"})
    assert second.status_code == 422
    assert cert in auditor.client.get("/certificates").text


def test_retention_policies_and_legal_holds_page(components, factory, session_for, settings, fake_clock, party):
    from gateway.audit.service import Actor
    from retention.holds import place_hold
    from retention.policies import set_policy

    practices = [factory.org("practice") for _ in range(4)]
    with components.db.transaction() as db:
        made = [
            set_policy(db, settings, p.id, None, keep_days=40, max_access_days=None, actor=Actor.system()).id
            for p in practices
        ]
        made.append(
            set_policy(
                db, settings, practices[0].id, party.vendor.id, keep_days=50, max_access_days=None, actor=Actor.system()
            ).id
        )
    admin = session_for(party.admin)
    late: list[str] = []

    def set_between(_: int) -> None:
        with components.db.transaction() as db:
            late.append(
                set_policy(
                    db,
                    settings,
                    factory.org("practice").id,
                    None,
                    keep_days=45,
                    max_access_days=None,
                    actor=Actor.system(),
                ).id
            )

    seen = flat(walk(admin.client, "/api/v1/retention/policies", 2, between=set_between))
    assert [p for p in seen if p in made] == sorted(made, key=lambda i: (_practice_of(components, i), i))
    assert len(seen) == len(set(seen)) and set(made) <= set(seen)
    genuine = admin.client.get("/api/v1/retention/policies", params={"limit": 1}).headers["x-next-cursor"]
    assert_refused(admin.client, "/api/v1/retention/policies", genuine)

    references = []
    for i in range(DEFAULT_LIMIT + 1):
        fake_clock.advance(seconds=1)
        with components.db.transaction() as db:
            references.append(
                place_hold(db, "practice", practices[i % 4].id, f"MATTER-{i:03d}", Actor.system()).reference
            )
    pages = html_walk(admin.client, "/admin/retention", r"<td>(MATTER-\d{3})</td>")  # not the release question
    assert [len(p) for p in pages] == [DEFAULT_LIMIT, 1]
    assert [r for p in pages for r in p] == references[::-1]


def _practice_of(components, policy_id: str) -> str:
    from retention.models import RetentionPolicy

    with components.db.transaction() as db:
        return db.get(RetentionPolicy, policy_id).practice_id
