"""Consequential actions ask first, in a native <dialog> driven by static/forms.js (no inline script)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import csp_violations
from tests.browser.test_transfer_journey import new_page, sign_in

pytestmark = pytest.mark.browser


def test_reset_password_asks_in_a_dialog_and_cancel_does_nothing(server, browser, factory, components):
    admin = factory.user("admin")
    practice = factory.org("practice")
    staff = factory.user("practice_staff", practice)
    page = new_page(browser)
    sign_in(page, server, admin)
    page.goto(f"{server}/admin/users")
    reset = page.locator(f'form[action="/admin/users/{staff.id}/reset-password"] button')

    # Cancel: the dialog closes and nothing was sent.
    reset.click()
    dialog = page.locator("dialog#confirm-dialog")
    assert dialog.is_visible()
    assert staff.username in dialog.inner_text() and "sessions" in dialog.inner_text()
    dialog.locator("button", has_text="Cancel").click()
    assert not dialog.is_visible()
    assert page.url == f"{server}/admin/users" and page.locator("#one-time-password").count() == 0

    # Confirm: the form is sent once, with its confirmation; the answer's address is the page's own.
    reset.click()
    assert dialog.is_visible()
    with page.expect_navigation():
        page.locator("#confirm-dialog-ok").click()
    assert page.locator("#one-time-password").count() == 1
    assert page.locator("#confirm-form").count() == 0  # no second confirmation page
    assert page.url == f"{server}/admin/users"  # forms.js put the page's address back
    assert csp_violations(page) == []
