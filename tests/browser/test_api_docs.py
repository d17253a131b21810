"""The /api/docs page in Chromium: Swagger UI from the gateway's own files renders the operations, under the
strict CSP with no violation and no console error, and only after sign-in."""

from __future__ import annotations

import pytest

from tests.browser.conftest import csp_violations
from tests.browser.test_transfer_journey import new_page, sign_in

pytestmark = pytest.mark.browser


def _watch_requests(page) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    return seen


def test_signed_in_user_sees_the_operations(server, browser, factory):
    user = factory.user("practice_staff")
    page = new_page(browser)
    requested = _watch_requests(page)
    failed: list[str] = []
    page.on("pageerror", lambda error: failed.append(str(error)))
    missing: list[str] = []
    page.on("response", lambda response: missing.append(response.url) if response.status >= 400 else None)
    sign_in(page, server, user)
    # Only the docs page's own messages count (the sign-in pages' are the login tests' business).
    page.console_messages_seen.clear()
    requested.clear()
    page.goto(f"{server}/api/docs")
    page.wait_for_selector(".opblock-tag", timeout=30000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/api/v1/transfers" in paths and "/api/v1/partners" in paths, paths
    assert page.locator(".opblock-tag").count() > 3
    assert csp_violations(page) == []
    assert [text for kind, text in page.console_messages_seen if kind == "error"] == [], missing
    assert failed == []
    # Everything came from the gateway itself.
    assert requested and all(url.startswith(server) for url in requested), requested


def test_anonymous_visitor_is_sent_to_sign_in_and_sees_no_schema(server, browser):
    page = new_page(browser)
    requested = _watch_requests(page)
    page.goto(f"{server}/api/docs")
    assert page.url == f"{server}/login?next=%2Fapi%2Fdocs"
    assert page.locator(".opblock-tag").count() == 0
    assert not any("openapi.json" in url or "swagger" in url for url in requested), requested
    answer = page.request.get(f"{server}/api/openapi.json")
    assert answer.status == 401 and answer.json() == {
        "error": {"code": "not_authenticated", "message": answer.json()["error"]["message"]}
    }
    assert csp_violations(page) == []
