"""Administrators' lists (users, organisations, BAAs) page with the shared cursor, in SQL, stable under inserts."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from gateway.paging import DEFAULT_LIMIT
from tests.support.paging import assert_refused, flat, html_walk, walk


@pytest.fixture
def admin(client, factory, login):
    csrf = login(client, factory.user("admin"))
    client.headers["X-CSRF-Token"] = csrf
    return client


def _record_baa(components, practice, vendor, reference: str) -> str:
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa

    with components.db.transaction() as db:
        return record_baa(db, practice, vendor, reference, clock.now() - timedelta(days=1), None, Actor.system()).id


def test_users_of_one_organisation_page_by_username_and_never_show_another(admin, factory):
    practice, other = factory.org("practice"), factory.org("practice")
    mine = {factory.user("practice_staff", practice, username=f"page-{c}").username for c in "kcgaie"}
    theirs = {factory.user("practice_staff", other, username=f"page-{c}x").username for c in "bdfhj"}
    created = []

    def create_between(n: int) -> None:
        # One user sorts before everything already read, one after it: neither shifts what is left.
        for name in (f"page-a{n}", f"page-z{n}"):
            created.append(factory.user("practice_staff", practice, username=name).username)

    pages = walk(admin, "/api/v1/users", limit=2, params={"org_id": practice.id}, between=create_between)
    seen = flat(pages, "username")
    assert all(u["org_id"] == practice.id for page in pages for u in page)
    assert not set(seen) & theirs
    assert [u for u in seen if u in mine] == sorted(mine)
    assert len(seen) == len(set(seen))
    # What sorts after the cursor turns up in its place; what sorts before it is left for the next walk.
    assert {u for u in created if u.startswith("page-z")} <= set(seen)
    assert not {u for u in created if u.startswith("page-a")} & set(seen)
    assert_refused(admin, "/api/v1/users", genuine=_cursor(admin, "/api/v1/users"))


def test_users_page_stays_whole_while_another_client_creates_users(admin, factory):
    practice = factory.org("practice")
    before = sorted(factory.user("practice_staff", practice, username=f"steady-{i:02d}").username for i in range(12))
    stop = threading.Event()
    made: list[str] = []

    def keep_creating() -> None:
        # A concurrent writer: users land everywhere in the order while the walk reads it.
        for i in range(40):
            if stop.is_set():
                return
            made.append(factory.user("practice_staff", practice, username=f"steady-{i % 13:02d}-{i}").username)

    writer = threading.Thread(target=keep_creating)
    writer.start()
    try:
        seen = flat(walk(admin, "/api/v1/users", limit=2, params={"org_id": practice.id}), "username")
    finally:
        stop.set()
        writer.join()
    assert [u for u in seen if u in before] == before
    assert len(seen) == len(set(seen)) and set(seen) <= set(before) | set(made)
    assert seen == sorted(seen)


def test_organisations_page_by_name_while_new_ones_arrive(admin, factory):
    names = [f"Paging org {c}" for c in "fbdhj"]
    for i, name in enumerate(names):
        factory.org("vendor" if i % 2 else "practice", name=name)
    every = flat(walk(admin, "/api/v1/orgs", limit=200), "name")
    assert every == sorted(every) and set(names) <= set(every)

    pages = walk(admin, "/api/v1/orgs", limit=2, between=lambda n: factory.org("practice", name=f"Paging org a{n}"))
    seen = flat(pages, "name")
    assert [n for n in seen if n in every] == every
    assert len(seen) == len(set(seen)) and not any(n.startswith("Paging org a") for n in seen)
    assert_refused(admin, "/api/v1/orgs", genuine=_cursor(admin, "/api/v1/orgs"))


def test_names_of_any_script_and_length_make_working_cursors(admin, factory):
    names = ["Zürich Abrechnung", "Ωmega Billing 🧾", "Ärzte " + "ß" * 180, "東京 医療事務", 'Quote " and | pipe']
    for name in names:
        factory.org("vendor", name=name)
    seen = flat(walk(admin, "/api/v1/orgs", 1), "name")
    assert [n for n in seen if n in names] == sorted(names) and len(seen) == len(set(seen))


def test_baas_page_newest_first_while_new_ones_are_recorded(admin, factory, components, fake_clock):
    practice = factory.org("practice")
    vendors = [factory.org("vendor") for _ in range(5)]
    recorded = []
    for i, vendor in enumerate(vendors):
        fake_clock.advance(seconds=1)
        recorded.append(_record_baa(components, practice, vendor, f"BAA-PAGE-{i}"))
    late = []

    def record_between(n: int) -> None:
        fake_clock.advance(seconds=1)
        late.append(_record_baa(components, practice, vendors[n], f"BAA-LATE-{n}"))

    seen = flat(walk(admin, "/api/v1/baas", limit=2, between=record_between))
    assert seen == recorded[::-1] and not set(late) & set(seen)
    assert_refused(admin, "/api/v1/baas", genuine=_cursor(admin, "/api/v1/baas"))


def test_a_cursor_of_one_list_is_refused_by_another(admin, factory):
    for _ in range(2):
        factory.org("practice")
    orgs_cursor = _cursor(admin, "/api/v1/orgs")
    for path in ("/api/v1/users", "/api/v1/baas", "/api/v1/certificates"):
        r = admin.get(path, params={"cursor": orgs_cursor})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", path


def test_administration_pages_link_to_every_page(admin, factory, components, fake_clock):
    practice = factory.org("practice")
    for i in range(DEFAULT_LIMIT + 3):
        factory.user("practice_staff", practice, username=f"html-{i:03d}")
    users = [u for page in html_walk(admin, "/admin/users", r"<td>(html-\d{3})</td>") for u in page]
    assert users == sorted(f"html-{i:03d}" for i in range(DEFAULT_LIMIT + 3))

    vendor_names = [f"Html vendor {i:03d}" for i in range(DEFAULT_LIMIT + 1)]
    vendors = [factory.org("vendor", name=name) for name in vendor_names]
    orgs = [o for page in html_walk(admin, "/admin/orgs", r"<td>(Html vendor \d{3})</td>") for o in page]
    assert orgs == vendor_names

    for i, vendor in enumerate(vendors):
        fake_clock.advance(seconds=1)
        _record_baa(components, practice, vendor, f"HTML-BAA-{i:03d}")
    baas = [b for page in html_walk(admin, "/admin/baas", r"<td>(HTML-BAA-\d{3})</td>") for b in page]
    assert baas == [f"HTML-BAA-{i:03d}" for i in range(len(vendors))][::-1]
    r = admin.get("/admin/users", params={"cursor": "forged"})
    assert r.status_code == 422 and "The cursor is not one this list gave out." in r.text


def _cursor(client, path: str) -> str:
    r = client.get(path, params={"limit": 1})
    assert r.status_code == 200 and r.headers.get("x-next-cursor"), r.text
    return r.headers["x-next-cursor"]


def test_a_user_pages_only_their_own_tokens_and_passkeys(client, factory, login, components, settings, fake_clock):
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.auth.models import Passkey
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    me, other = factory.user("practice_staff"), factory.user("practice_staff")

    def make(user, n: int, tag: str) -> tuple[list[str], list[str]]:
        tokens, keys = [], []
        for i in range(n):
            fake_clock.advance(seconds=1)
            with components.db.transaction() as db:
                owner = db.get(User, user.id)
                tokens.append(create_api_token(db, settings, owner, f"{tag}-{i}", 30, Actor.system())[0].id)
                key = Passkey(
                    user_id=user.id,
                    credential_id=f"{tag}-credential-{i}",
                    name=f"{tag}-{i}",
                    public_key=b"synthetic",
                    aaguid="00000000-0000-0000-0000-000000000000",
                    attestation_format="none",
                    created_at=clock.now(),
                )
                db.add(key)
                db.flush()
                keys.append(key.id)
        return tokens, keys

    my_tokens, my_keys = make(me, 5, "mine")
    their_tokens, their_keys = make(other, 3, "theirs")
    client.headers["X-CSRF-Token"] = login(client, me)
    late: list[str] = []

    def make_between(_: int) -> None:
        late.extend(make(me, 1, f"late{len(late)}")[0])

    tokens = flat(walk(client, "/api/v1/auth/tokens", 2, between=make_between))
    assert tokens == my_tokens[::-1]  # newest first: a token made meanwhile waits for the next walk
    assert not set(tokens) & (set(their_tokens) | set(late))
    keys = flat(walk(client, "/api/v1/auth/passkeys", 2))
    assert keys[: len(my_keys)] == my_keys and not set(keys) & set(their_keys)  # oldest first, then the late ones
    for path in ("/api/v1/auth/tokens", "/api/v1/auth/passkeys"):
        assert_refused(client, path, genuine=_cursor(client, path))


def test_the_account_page_pages_the_tokens(client, factory, login, components, settings, fake_clock):
    from gateway.audit.service import Actor
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    me = factory.user("practice_staff")
    names = []
    for i in range(DEFAULT_LIMIT + 1):
        fake_clock.advance(seconds=1)
        with components.db.transaction() as db:
            names.append(
                create_api_token(db, settings, db.get(User, me.id), f"page-token-{i:03d}", 30, Actor.system())[0].name
            )
    login(client, me)
    pages = html_walk(client, "/account", r"<tr><td>(page-token-\d{3})</td><td><code>")
    assert [len(p) for p in pages] == [DEFAULT_LIMIT, 1]
    assert [n for p in pages for n in p] == names[::-1]


def test_passkey_policies_page(admin, factory, components):
    from gateway.audit.service import Actor
    from gateway.auth.passkey_policy import require

    orgs = [factory.org("practice") for _ in range(3)]
    with components.db.transaction() as db:
        require(db, "role", "biller", Actor.system())
        require(db, "role", "auditor", Actor.system())
        for org in orgs:
            require(db, "org", org.id, Actor.system())
    pages = walk(admin, "/api/v1/auth/passkey-policies", 2)
    seen = [(p["scope"], p["value"]) for page in pages for p in page]
    assert seen == sorted([("role", "biller"), ("role", "auditor")] + [("org", o.id) for o in orgs])
    assert_refused(admin, "/api/v1/auth/passkey-policies", genuine=_cursor(admin, "/api/v1/auth/passkey-policies"))
