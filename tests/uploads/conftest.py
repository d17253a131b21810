"""Fixtures for resumable uploads: the transfer fixtures, and a small tus client over the test client."""

from __future__ import annotations

import base64
import os

import pytest

from tests.transfers.conftest import Party, party, session_for  # noqa: F401

MiB = 1024 * 1024


def synthetic_pdf(size: int, marker: bytes) -> bytes:
    """A synthetic PDF of `size` bytes with a random marker repeated through it (found if plaintext leaks)."""
    body = bytearray(b"%PDF-1.7\n")
    while len(body) < size:
        body += marker + os.urandom(4000)
    return bytes(body[:size])


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


class Tus:
    """Just enough tus for tests, through a signed-in test session."""

    def __init__(self, session):
        self.client = session.client

    def create(
        self,
        length: int,
        *,
        partner_id: str,
        filename: str = "scan.pdf",
        purpose: str = "APPEAL-2001",
        body: bytes | None = None,
        meta: str | None = None,
        **headers,
    ):
        sent = {
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(length),
            "Upload-Metadata": meta
            if meta is not None
            else metadata(filename=filename, partner_id=partner_id, purpose=purpose),
        }
        if body is not None:
            sent["Content-Type"] = "application/offset+octet-stream"
        return self.client.post("/api/v1/uploads", content=body, headers={**sent, **headers})

    def patch(self, url: str, offset: int, data: bytes, **headers):
        return self.client.patch(
            url,
            content=data,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
                **headers,
            },
        )

    def head(self, url: str):
        return self.client.head(url, headers={"Tus-Resumable": "1.0.0"})

    def offset(self, url: str) -> int:
        r = self.head(url)
        assert r.status_code == 200, r.text
        return int(r.headers["Upload-Offset"])


@pytest.fixture
def tus_for(session_for):
    return lambda user: Tus(session_for(user))
