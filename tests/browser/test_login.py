"""Signing in with a real browser: password and TOTP, and a new user's enrolment."""

from __future__ import annotations

import re

import pyotp
import pytest

from tests.browser.conftest import csp_violations

pytestmark = pytest.mark.browser


def _full_name(components, user_id):
    from gateway.users.models import User

    with components.db.sessions() as s:
        name = s.get(User, user_id).full_name
        s.rollback()
        return name


def test_user_signs_in_with_password_and_totp(server, page, factory, components):
    user = factory.user("practice_approver")
    page.goto(f"{server}/home")
    assert page.url == f"{server}/login"  # not signed in: sent to the sign-in form
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/mfa")
    page.fill("input[name=code]", pyotp.TOTP(user.totp_secret).now())
    page.click("form.card button[type=submit]")
    page.wait_for_url(f"{server}/home")
    assert page.locator("h1").inner_text() == f"Welcome, {_full_name(components, user.id)}"
    # The session cookie is invisible to scripts.
    assert page.evaluate("document.cookie") == ""
    cookie = next(c for c in page.context.cookies() if c["name"] == "phigate_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert csp_violations(page) == []


def test_wrong_code_in_the_browser_shows_an_error(server, page, factory):
    user = factory.user("biller")
    page.goto(f"{server}/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/mfa")
    good = pyotp.TOTP(user.totp_secret).now()
    page.fill("input[name=code]", f"{(int(good) + 3) % 1_000_000:06d}")
    page.click("form.card button[type=submit]")
    assert "not correct" in page.locator("p.error").inner_text()
    assert page.url == f"{server}/mfa"
    assert csp_violations(page) == []


def test_new_user_enrols_then_changes_password(server, page, factory, components):
    user = factory.user("practice_staff", enrolled=False, must_change_password=True)
    page.goto(f"{server}/login")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/mfa/enrol")
    assert page.locator("img.qr").get_attribute("src").startswith("data:image/svg+xml")
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    page.fill("input[name=code]", pyotp.TOTP(secret).now())
    page.click("form[action='/mfa/enrol'] button[type=submit]")
    codes = page.locator("#recovery-codes li")
    assert codes.count() == 10
    page.click("a.button")
    page.wait_for_url(f"{server}/password")
    new = "a long and private passphrase"
    page.fill("input[name=current_password]", user.password)
    page.fill("input[name=new_password]", new)
    page.fill("input[name=confirm_password]", new)
    page.click("form[action='/password'] button[type=submit]")
    page.wait_for_url(f"{server}/home")
    assert page.locator("h1").inner_text() == f"Welcome, {_full_name(components, user.id)}"
    assert csp_violations(page) == []
