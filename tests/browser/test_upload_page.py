"""The send page's own checks and controls: limits from the server, drag and drop, speed, cancel.

The limits (allowed extensions, largest file) reach the page from the settings; a file the gateway
would refuse is refused before a byte is sent. Uploads are throttled with Chromium's network
emulation where a test needs to see them in flight.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from tests.browser.conftest import csp_violations
from tests.browser.test_transfer_journey import new_page, sign_in
from tests.transfers.conftest import record_baa
from tests.uploads.conftest import MiB, synthetic_pdf

pytestmark = pytest.mark.browser

LIMIT = 3 * MiB // 2  # the largest file in these tests: 1.5 MiB

# Drops the named files on the drop zone, as a file manager would; answers whether the zone accepted them.
DROP = """([files]) => {
  const dt = new DataTransfer();
  for (const [name, text] of files) dt.items.add(new File([text], name));
  const zone = document.getElementById("drop-zone");
  let accepted = true;
  for (const kind of ["dragenter", "dragover", "drop"]) {
    accepted = !zone.dispatchEvent(new DragEvent(kind, {dataTransfer: dt, bubbles: true, cancelable: true})) && accepted;
  }
  return accepted;
}"""


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"max_file_size": LIMIT, "max_files_per_transfer": 2})


def send_page(browser, server, factory, components):
    practice, vendor = factory.org("practice"), factory.org("vendor")
    staff = factory.user("practice_staff", practice)
    record_baa(components, practice, vendor)
    page = new_page(browser)
    sign_in(page, server, staff)
    page.goto(f"{server}/transfers/new")
    page.select_option("#partner", vendor.id)
    page.fill("#purpose", "APPEAL-UI-1")
    return page, staff


def uploads_of(components, user):
    from gateway.uploads.models import Upload

    with components.db.snapshot() as db:
        return list(db.scalars(select(Upload).where(Upload.user_id == user.id)))


def unfinished(page, server):
    answer = page.request.get(f"{server}/api/v1/uploads")
    assert answer.status == 200
    return answer.json()


def throttle(page, bytes_per_second: int):
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_second},
    )


def test_files_the_gateway_refuses_are_refused_before_a_byte_is_sent(server, browser, factory, components, settings):
    page, staff = send_page(browser, server, factory, components)
    form = page.locator("#upload-form")
    assert form.get_attribute("data-max-size") == str(LIMIT)
    assert form.get_attribute("data-allowed") == ",".join(settings.allowed_file_types)
    assert form.get_attribute("data-max-files") == "2"
    assert "up to 1.5 MiB each, 2 at most" in page.locator("label", has=page.locator("#files")).inner_text()
    sent = []
    page.on("request", lambda r: sent.append((r.method, r.url)) if "/api/v1/uploads" in r.url else None)
    status = page.locator("#upload-status")

    page.set_input_files(
        "#files", {"name": "big scan.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7\n" * (2 * MiB // 9)}
    )
    assert status.inner_text() == "\u201cbig scan.pdf\u201d is 2 MiB: a file may be at most 1.5 MiB."
    page.click("#send")
    assert "error" in status.get_attribute("class")
    assert page.locator("#files").get_attribute("aria-invalid") == "true"

    assert page.evaluate(DROP, [[["tool.exe", "MZ not a claim"]]])
    assert "\u201ctool.exe\u201d: this type of file is not accepted. Accepted: 835, 837," in status.inner_text()
    assert page.locator("#file-list").inner_text() == "tool.exe (14 bytes)"
    page.click("#send")

    page.set_input_files("#files", {"name": "empty.pdf", "mimeType": "application/pdf", "buffer": b""})
    page.click("#send")
    assert status.inner_text() == "\u201cempty.pdf\u201d is empty."

    three = [{"name": f"part {n}.pdf", "mimeType": "application/pdf", "buffer": b"%PDF-1.7\n"} for n in range(3)]
    page.set_input_files("#files", three)
    page.click("#send")
    assert status.inner_text() == "At most 2 files per transfer."

    page.wait_for_timeout(300)  # anything the page would have sent has left by now
    assert sent == []
    assert uploads_of(components, staff) == []
    assert page.locator("#progress").is_hidden()
    assert csp_violations(page) == []


def test_a_dropped_file_is_sent(server, browser, factory, components):
    page, staff = send_page(browser, server, factory, components)
    body = "%PDF-1.7\n" + "dropped claim attachment\n" * 400
    assert page.evaluate(DROP, [[["dropped appeal.pdf", body]]])
    assert page.locator("#file-list").inner_text() == "dropped appeal.pdf (9.8 KiB)"
    assert page.locator("#upload-status").inner_text() == ""
    page.click("#send")
    page.wait_for_url(lambda url: "/transfers/" in url and not url.endswith("/transfers/new"), timeout=30000)
    assert page.locator("#status").inner_text() == "waiting for approval"
    assert "dropped appeal.pdf" in page.locator("main").inner_text()
    assert [u.state.value for u in uploads_of(components, staff)] == ["used"]
    assert csp_violations(page) == []


def test_progress_shows_speed_and_time_left_and_cancel_removes_the_uploads(
    server, browser, factory, components, tmp_path
):
    page, staff = send_page(browser, server, factory, components)
    small, large = tmp_path / "cover letter.pdf", tmp_path / "records.pdf"
    small.write_bytes(synthetic_pdf(64 * 1024, b"SMALL"))
    large.write_bytes(synthetic_pdf(LIMIT, b"LARGE"))
    page.set_input_files("#files", [str(small), str(large)])
    throttle(page, 256 * 1024)
    page.click("#send")

    page.locator("#upload-status", has_text="records.pdf").wait_for(timeout=15000)
    text = page.locator("#progress-text")
    text.filter(has_text=re.compile(r"KiB/s · about \d+ s left")).wait_for(timeout=15000)
    assert re.fullmatch(r"[\d.]+ (KiB|MiB) of 1.6 MiB · [\d.]+ KiB/s · about \d+ s left", text.inner_text()), (
        text.inner_text()
    )
    assert page.locator("#progress").get_attribute("value") != "100"
    assert page.locator("#files").is_disabled()
    # The first file is complete on the server and the second one under way: cancel ends both.
    assert [u.state.value for u in uploads_of(components, staff)].count("open") == 1
    page.click("#cancel")
    page.locator("#upload-status", has_text="Cancelled").wait_for(timeout=15000)
    assert page.locator("#upload-status").inner_text() == "Cancelled. Nothing of these files is kept on the server."
    assert unfinished(page, server) == []
    assert sorted(u.state.value for u in uploads_of(components, staff)) == ["cancelled", "cancelled"]
    assert page.locator("#progress").is_hidden() and page.locator("#cancel").is_hidden()
    assert page.locator("#send").is_enabled() and page.locator("#files").is_enabled()
    assert csp_violations(page) == []


def test_a_cancel_the_server_never_hears_of_says_so_and_keeps_the_upload(
    server, browser, factory, components, tmp_path
):
    page, staff = send_page(browser, server, factory, components)
    source = tmp_path / "records.pdf"
    source.write_bytes(synthetic_pdf(LIMIT, b"LARGE"))
    page.set_input_files("#files", str(source))
    throttle(page, 256 * 1024)
    page.click("#send")
    page.locator("#progress-text", has_text="left").wait_for(timeout=15000)
    # From now on the server is out of reach for a DELETE (the upload under way is not intercepted).
    page.route(
        "**/api/v1/uploads/*", lambda route: route.abort() if route.request.method == "DELETE" else route.fallback()
    )
    page.click("#cancel")
    status = page.locator("#upload-status.error")
    status.wait_for(timeout=15000)
    assert status.inner_text().startswith(
        "Sending stopped, but the server could not be reached to remove what was already sent."
    )
    # Nothing is lost: the upload is still there to resume (or expires by itself).
    assert [u["file_name"] for u in unfinished(page, server)] == ["records.pdf"]
    assert [u.state.value for u in uploads_of(components, staff)] == ["open"]
    assert page.locator("#progress").is_hidden() and page.locator("#send").is_enabled()


def test_a_file_the_server_refuses_leaves_no_full_bar_beside_the_error(server, browser, factory, components):
    page, staff = send_page(browser, server, factory, components)
    page.set_input_files(
        "#files", {"name": "notes.pdf", "mimeType": "application/pdf", "buffer": b"plain text\n" * 2000}
    )
    page.click("#send")
    status = page.locator("#upload-status.error")
    status.wait_for(timeout=15000)
    assert status.inner_text() == "The file's content does not match its extension."
    assert page.locator("#progress").is_hidden() and page.locator("#progress-text").is_hidden()
    assert page.locator("#send").is_enabled() and page.locator("#cancel").is_hidden()
    # The refused upload can never be sent: the page ends it on the server, so nothing is left.
    for _ in range(50):
        if not unfinished(page, server):
            break
        page.wait_for_timeout(100)
    assert unfinished(page, server) == []
    assert [u.state.value for u in uploads_of(components, staff)] == ["cancelled"]


def test_a_cancel_while_the_upload_is_being_created_still_ends_it(server, browser, factory, components, tmp_path):
    page, staff = send_page(browser, server, factory, components)
    source = tmp_path / "records.pdf"
    source.write_bytes(synthetic_pdf(64 * 1024, b"SMALL"))
    page.set_input_files("#files", str(source))
    held = []  # the creation request, held back until Cancel has been pressed
    page.route(
        "**/api/v1/uploads", lambda route: held.append(route) if route.request.method == "POST" else route.fallback()
    )
    page.click("#send")
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    page.click("#cancel")
    assert page.locator("#upload-status").inner_text() == "Cancelling\u2026"
    held[0].fallback()
    page.locator("#upload-status", has_text="Cancelled.").wait_for(timeout=15000)
    assert unfinished(page, server) == []
    assert [(u.state.value, u.received) for u in uploads_of(components, staff)] == [("cancelled", 0)]
