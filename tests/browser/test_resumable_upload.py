"""The send page over a link that drops: tus-js-client resumes by itself and says so; a reload offers to resume.

The browser reaches the gateway through the cutting proxy (tests/support/cutting_proxy.py);
the page is served on the proxy's port, so the link it uploads over is the one that is cut.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import select

from tests.browser.conftest import csp_violations
from tests.browser.test_transfer_journey import new_page, sign_in
from tests.support.cutting_proxy import CuttingProxy
from tests.transfers.conftest import record_baa
from tests.uploads.conftest import MiB, synthetic_pdf

pytestmark = pytest.mark.browser

# Reports every text the page's status line shows, across navigations (the page redirects when done).
WATCH_STATUS = """
document.addEventListener("DOMContentLoaded", () => {
  const line = document.getElementById("upload-status");
  if (line) new MutationObserver(() => window.statusSeen(line.textContent)).observe(line, {childList: true});
});
"""


def staff_and_file(factory, components, tmp_path, size: int):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    staff = factory.user("practice_staff", practice)
    record_baa(components, practice, vendor)
    marker = b"BROWSER-MARKER-" + os.urandom(8).hex().encode()
    data = synthetic_pdf(size, marker)
    source = tmp_path / "upload-source" / "scan batch.pdf"
    source.parent.mkdir()
    source.write_bytes(data)
    return staff, vendor, source, data, marker


def transfer_file(components, transfer_id: str):
    from gateway.transfers.models import TransferFile

    with components.db.snapshot() as db:
        return db.scalars(select(TransferFile).where(TransferFile.transfer_id == transfer_id)).one()


def no_marker_under(root, marker: bytes, skip) -> bool:
    return not any(p.is_file() and skip not in p.parents and marker in p.read_bytes() for p in root.rglob("*"))


def test_send_page_resumes_a_dropped_link_by_itself(server, browser, factory, components, tmp_path):
    staff, vendor, source, data, marker = staff_and_file(factory, components, tmp_path, 24 * MiB)
    proxy = CuttingProxy(int(server.rsplit(":", 1)[1]), cuts=[7 * MiB, 13 * MiB, 19 * MiB], outage_seconds=3)
    page = new_page(browser)
    seen: list[str] = []
    page.expose_function("statusSeen", lambda text: seen.append(text))
    page.add_init_script(WATCH_STATUS)
    try:
        sign_in(page, proxy.url, staff)
        page.goto(f"{proxy.url}/transfers/new")
        page.select_option("#partner", vendor.id)
        page.fill("#purpose", "APPEAL-FLAKY-1")
        page.set_input_files("#files", str(source))
        page.click("#send")
        page.wait_for_url(lambda url: "/transfers/" in url and not url.endswith("/transfers/new"), timeout=120000)
    finally:
        proxy.close()
    assert proxy.cut == 3, (proxy.sent, seen)
    assert any(text.startswith("The connection dropped. Resuming by itself") for text in seen), seen
    assert page.locator("#status").inner_text() == "waiting for approval"
    f = transfer_file(components, page.url.rsplit("/", 1)[1])
    assert (f.size, f.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert no_marker_under(tmp_path, marker, source.parent)
    assert csp_violations(page) == []


def test_a_reload_offers_to_resume(server, browser, factory, components, tmp_path):
    from gateway.uploads.models import Upload

    staff, vendor, source, data, _marker = staff_and_file(factory, components, tmp_path, 20 * MiB)
    # One cut, and the page is reloaded while the client waits to retry.
    proxy = CuttingProxy(int(server.rsplit(":", 1)[1]), cuts=[9 * MiB], outage_seconds=3)
    page = new_page(browser)
    try:
        sign_in(page, proxy.url, staff)
        page.goto(f"{proxy.url}/transfers/new")
        page.select_option("#partner", vendor.id)
        page.fill("#purpose", "APPEAL-RELOAD-1")
        page.set_input_files("#files", str(source))
        page.click("#send")
        page.locator("#upload-status", has_text="Resuming by itself").wait_for(timeout=60000)
        while not proxy.up():  # reload once the line is back (the client is still waiting to retry)
            page.wait_for_timeout(100)
        page.reload()
        note = page.locator("#resume-note")
        note.wait_for(state="visible", timeout=30000)
        assert "scan batch.pdf" in note.inner_text() and "resume" in note.inner_text()
        page.select_option("#partner", vendor.id)
        page.fill("#purpose", "APPEAL-RELOAD-1")
        page.set_input_files("#files", str(source))
        page.click("#send")
        page.wait_for_url(lambda url: "/transfers/" in url and not url.endswith("/transfers/new"), timeout=120000)
    finally:
        proxy.close()
    with components.db.snapshot() as db:
        uploads = list(db.scalars(select(Upload).where(Upload.user_id == staff.id)))
    assert [u.state.value for u in uploads] == ["used"]  # resumed, not sent again from the start
    f = transfer_file(components, page.url.rsplit("/", 1)[1])
    assert f.sha256 == hashlib.sha256(data).hexdigest()
    assert csp_violations(page) == []
