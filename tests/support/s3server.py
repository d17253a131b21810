"""A real S3-compatible HTTP endpoint for tests: moto's ThreadedMotoServer on loopback.

Reusable by any test package (storage contract tests, the gateway's S3 lane)::

    with S3Server() as server:
        client = server.client()
        store = open_object_store(f"s3://bucket?region=us-east-1&endpoint_url={server.endpoint_url}")

or as a pytest session fixture (see tests/storage/conftest.py). The server binds
127.0.0.1 on a free port chosen by the OS (port 0), never a fixed port, and never
any other interface. Credentials are fixed dummies; nothing leaves the machine.
"""

from __future__ import annotations

import urllib.request
from types import TracebackType
from typing import Any

TEST_ACCESS_KEY = "testing"
TEST_SECRET_KEY = "testing"
TEST_REGION = "us-east-1"


class S3Server:
    """Start/stop a moto S3 (and KMS, STS...) server on 127.0.0.1:<free port>."""

    def __init__(self) -> None:
        self._server: Any = None
        self.endpoint_url: str | None = None

    def start(self) -> str:
        """Start the server; return its endpoint URL (``http://127.0.0.1:PORT``)."""
        from moto.server import ThreadedMotoServer

        if self._server is not None:
            raise RuntimeError("S3Server already started")
        # port=0: the OS picks a free port at bind time, so there is no race between
        # choosing a port and binding it.
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint_url = f"http://{host}:{port}"
        return self.endpoint_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self.endpoint_url = None

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API)."""
        assert self.endpoint_url, "server not started"
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10):  # loopback test server
            pass

    def session(self) -> Any:
        """A boto3 session with the dummy credentials (no environment, no ~/.aws)."""
        import boto3

        return boto3.session.Session(
            aws_access_key_id=TEST_ACCESS_KEY,
            aws_secret_access_key=TEST_SECRET_KEY,
            region_name=TEST_REGION,
        )

    def client(self, service: str = "s3", region: str = TEST_REGION) -> Any:
        """A boto3 client for this server."""
        assert self.endpoint_url, "server not started"
        return self.session().client(service, endpoint_url=self.endpoint_url, region_name=region)

    def __enter__(self) -> S3Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
