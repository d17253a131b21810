"""The page asked for before signing in (a notification's link) is where sign-in ends, and nowhere else.

Through HTTP as an attacker would send it: a crafted `next` that names another site, in any of
the spellings browsers accept, lands on /home instead.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.web import local_target
from tests.gateway.authkit import csrf_from

# Each leads off the gateway (or into a loop) when followed as a Location.
HOSTILE = [
    "//evil.example/transfers",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "https://evil.example/transfers",
    "http:evil.example",
    "javascript:alert(1)",
    "data:text/html,x",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\x00",
    " /transfers",
    "/transfers/\u2215\u2215evil.example",
    "/../evil.example",
    "/./transfers",
    "transfers",
    "evil.example",
    "/login?next=//evil.example",
    "/mfa",
    "/logout",
    "",
]
OVERLONG = "/" + "a" * 3000


def _next_of(location: str) -> str | None:
    return parse_qs(urlsplit(location).query).get("next", [None])[0]


def _sign_in(client, user, next_page: str | None, *, follow_login_page: bool = True):
    """Password then code through the forms; returns the answer to the code's POST."""
    login = client.get("/login", params={"next": next_page} if next_page is not None else None)
    data = {"username": user.username, "password": user.password, "csrf_token": csrf_from(login.text)}
    if next_page is not None:
        data["next"] = next_page
    r = client.post("/login", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    step = r.headers["location"]
    mfa = client.get(step)
    assert mfa.status_code == 200
    data = {"code": user.code(), "csrf_token": csrf_from(mfa.text)}
    if next_page is not None:
        data["next"] = next_page
    return step, login, client.post("/mfa", data=data, follow_redirects=False)


@pytest.mark.parametrize("value", ["/transfers/approvals", "/transfers?box=inbox", "/audit/user-day?user=a%20b"])
def test_a_page_of_the_gateway_is_kept(value):
    assert local_target(value) == value


@pytest.mark.parametrize("value", [*HOSTILE, OVERLONG])
def test_anything_else_falls_back_to_home(value):
    assert local_target(value) == "/home"


def test_the_page_asked_for_signed_out_is_where_sign_in_ends(client, factory):
    approver = factory.user("practice_approver")
    r = client.get("/transfers/approvals", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Ftransfers%2Fapprovals"
    login = client.get(r.headers["location"])
    assert '<input type="hidden" name="next" value="/transfers/approvals">' in login.text
    post = client.post(
        "/login",
        data={
            "username": approver.username,
            "password": approver.password,
            "csrf_token": csrf_from(login.text),
            "next": "/transfers/approvals",
        },
        follow_redirects=False,
    )
    assert post.headers["location"] == "/mfa?next=%2Ftransfers%2Fapprovals"
    mfa = client.get(post.headers["location"])
    assert mfa.text.count('<input type="hidden" name="next" value="/transfers/approvals">') == 1
    done = client.post(
        "/mfa",
        data={"code": approver.code(), "csrf_token": csrf_from(mfa.text), "next": "/transfers/approvals"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/transfers/approvals"
    assert client.get("/transfers/approvals").status_code == 200


def test_a_query_survives_and_a_wrong_password_keeps_the_page(client, factory):
    user = factory.user("practice_staff")
    r = client.get("/transfers?box=sent", follow_redirects=False)
    wanted = _next_of(r.headers["location"])
    assert wanted == "/transfers?box=sent"
    login = client.get(r.headers["location"])
    wrong = client.post(
        "/login",
        data={"username": user.username, "password": "not it", "csrf_token": csrf_from(login.text), "next": wanted},
    )
    assert wrong.status_code == 401
    assert '<input type="hidden" name="next" value="/transfers?box=sent">' in wrong.text
    _, _, done = _sign_in(client, user, wanted)
    assert done.headers["location"] == "/transfers?box=sent"


@pytest.mark.parametrize("value", HOSTILE)
def test_a_crafted_next_never_leads_off_the_gateway(client, factory, value):
    user = factory.user("practice_staff")
    step, login, done = _sign_in(client, user, value)
    # Neither the form nor any step carries it on; the end is the home page.
    assert 'name="next"' not in login.text
    assert step == "/mfa"
    assert done.status_code == 303 and done.headers["location"] == "/home"


def test_an_overlong_next_is_dropped_from_the_link_and_refused_in_a_form(client, factory):
    user = factory.user("practice_staff")
    login = client.get("/login", params={"next": OVERLONG})
    assert login.status_code == 200 and 'name="next"' not in login.text
    data = {"username": user.username, "password": user.password, "csrf_token": csrf_from(login.text)}
    r = client.post("/login", data={**data, "next": OVERLONG}, follow_redirects=False)
    assert r.status_code == 422 and "location" not in r.headers


def test_a_crafted_next_in_the_code_step_alone_is_refused_too(client, factory):
    user = factory.user("practice_staff")
    _, _, done = _sign_in(client, user, None)
    assert done.headers["location"] == "/home"
    client.cookies.clear()
    login = client.get("/login")
    client.post(
        "/login",
        data={"username": user.username, "password": user.password, "csrf_token": csrf_from(login.text)},
        follow_redirects=False,
    )
    mfa = client.get("/mfa")
    user.clock.advance(seconds=30)  # a fresh code: the last one was used
    r = client.post(
        "/mfa",
        data={"code": user.code(), "csrf_token": csrf_from(mfa.text), "next": "//evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/home"


def test_forced_steps_carry_the_page_to_the_end(client, factory):
    """A one-time password: code, then a new password, then the page from the link."""
    user = factory.user("practice_approver", must_change_password=True)
    _, _, done = _sign_in(client, user, "/transfers/approvals")
    assert done.headers["location"] == "/password?next=%2Ftransfers%2Fapprovals"
    form = client.get(done.headers["location"])
    assert '<input type="hidden" name="next" value="/transfers/approvals">' in form.text
    new = "a brand new passphrase 42"
    r = client.post(
        "/password",
        data={
            "current_password": user.password,
            "new_password": new,
            "confirm_password": new,
            "csrf_token": csrf_from(form.text),
            "next": "/transfers/approvals",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/transfers/approvals"


def test_a_half_signed_in_visitor_is_sent_to_the_code_with_the_page(client, factory):
    user = factory.user("biller")
    login = client.get("/login")
    client.post(
        "/login",
        data={"username": user.username, "password": user.password, "csrf_token": csrf_from(login.text)},
        follow_redirects=False,
    )
    r = client.get("/transfers", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/mfa?next=%2Ftransfers"


def test_markup_in_next_stays_text_in_the_form(client):
    """A path may hold quotes and angle brackets: the form carries them escaped, never as markup."""
    value = '/transfers?x="><script>alert(1)</script>'
    login = client.get("/login", params={"next": value})
    assert "<script>alert(1)</script>" not in login.text
    assert 'value="/transfers?x=&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in login.text
