"""Walking a paged list through HTTP as a client would: follow `X-Next-Cursor` and `Link` until neither is sent."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_PAGES = 50  # bounded: every list these tests build has a handful of pages


def next_link(response) -> str | None:
    """The `Link: <...>; rel="next"` address, checked against `X-Next-Cursor`; None on the last page."""
    cursor = response.headers.get("x-next-cursor")
    if cursor is None:
        assert "link" not in response.headers, response.headers
        return None
    link = response.headers["link"]
    assert link.startswith("<") and link.endswith('>; rel="next"'), link
    url = link[1 : -len('>; rel="next"')]
    assert parse_qs(urlsplit(url).query)["cursor"] == [cursor]
    return url


def walk(
    client,
    path: str,
    limit: int,
    params: dict | None = None,
    items: Callable[[Any], list] | None = None,
    between: Callable[[int], None] | None = None,
) -> list[list]:
    """Every page of `path`, following each answer's `Link` exactly as sent; `between(n)` runs after page n."""
    r = client.get(path, params={**(params or {}), "limit": limit})
    pages: list[list] = []
    for n in range(MAX_PAGES):
        assert r.status_code == 200, r.text
        page = r.json() if items is None else items(r.json())
        assert isinstance(page, list) and len(page) <= limit
        pages.append(page)
        url = next_link(r)
        if url is None:
            return pages
        assert len(page) == limit, "a page with a next page is a full page"
        if between is not None:
            between(n)
        r = client.get(url)
    raise AssertionError("paging did not end")


def flat(pages: list[list], key: str = "id") -> list:
    return [item[key] for page in pages for item in page]


def forged_cursors(genuine: str) -> list[str]:
    """Cursors no list gave out (from one it did): not base64, not JSON, another list's name, values missing, of
    the wrong types or too many, not UTF-8."""
    raw = json.loads(base64.urlsafe_b64decode(genuine + "=" * (-len(genuine) % 4)))

    def encode(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return [
        "not-base64!",
        encode("just a string"),
        encode(["another-list", *raw[1:]]),
        encode([raw[0]]),
        encode([raw[0], *[[v] for v in raw[1:]]]),
        encode([raw[0], *raw[1:], "extra"]),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ]


def assert_refused(client, path: str, genuine: str, params: dict | None = None) -> None:
    """Every forged cursor, a cursor past the length limit and a limit past the maximum answer the documented
    errors (422 `invalid_cursor`, 422 `invalid_input`) in the API's error shape."""
    for cursor in forged_cursors(genuine):
        r = client.get(path, params={**(params or {}), "cursor": cursor})
        assert r.status_code == 422, (cursor, r.text)
        assert r.json()["error"]["code"] == "invalid_cursor", (cursor, r.text)
    for bad in ({"cursor": "A" * 3000}, {"limit": 201}, {"limit": 0}):
        r = client.get(path, params={**(params or {}), **bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", (bad, r.text)


class _Anchors(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.found.append((a.get("rel") or "", a["href"] or ""))


def html_links(text: str) -> dict[str, list[str]]:
    """The addresses of a page's links by `rel` (unescaped, as a browser follows them)."""
    parser = _Anchors()
    parser.feed(text)
    out: dict[str, list[str]] = {}
    for rel, href in parser.found:
        out.setdefault(rel, []).append(href)
    return out


def html_next_link(text: str) -> str:
    [url] = html_links(text)["next"]
    return url


def html_walk(client, path: str, pattern: str) -> list[list[str]]:
    """Every page of an HTML list, following its one "Next page" link; per page, the matches of `pattern`."""
    pages: list[list[str]] = []
    r = client.get(path)
    for _ in range(MAX_PAGES):
        assert r.status_code == 200, r.text
        assert "<script>" not in r.text  # plain links: the strict CSP allows no inline script
        pages.append(re.findall(pattern, r.text))
        following = html_links(r.text).get("next")
        if not following:
            return pages
        [url] = following
        r = client.get(url)
    raise AssertionError("paging did not end")
