"""Fixtures: a real SMTP server on loopback, and the gateway's settings pointed at it."""

from __future__ import annotations

import pytest

from tests.support.smtp import PASSWORD, SmtpServer, make_ca_and_server_cert
from tests.transfers.conftest import party, session_for  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def mail_certs(tmp_path_factory):
    return make_ca_and_server_cert(tmp_path_factory.mktemp("mail-tls"))


@pytest.fixture
def mail_server(mail_certs):
    """Start one with `mail_server(mode=...)`; every server started is stopped at the end."""
    started: list[SmtpServer] = []

    def start(mode: str = "starttls", port: int | None = None) -> SmtpServer:
        server = SmtpServer(mail_certs, mode, port).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def use_mail(components, mail_certs):
    """Point the gateway at a server: the URL names the user, the password is the separate secret setting."""

    def point(server_or_url) -> None:
        s = components.settings
        s.smtp_url = server_or_url if isinstance(server_or_url, str) else server_or_url.url
        s.smtp_password = __import__("pydantic").SecretStr(PASSWORD)
        s.smtp_ca_file = mail_certs[0]
        s.smtp_timeout = 5
        s.public_url = "https://gateway.example"

    return point


@pytest.fixture
def mailer(mail_server, use_mail):
    """A server taking mail with STARTTLS and a login, and the gateway pointed at it."""
    server = mail_server()
    use_mail(server)
    return server
