"""Sending one message through the configured SMTP server (PHIGATE_SMTP_URL).

`smtps://` speaks TLS from the first byte (port 465); `smtp://` upgrades with STARTTLS
(port 587) and refuses a server that does not offer it, so neither the password nor a
message crosses the network in clear; only `?starttls=off` (a relay on loopback) skips
it.  The server's certificate is verified against the system's CAs or PHIGATE_SMTP_CA_FILE.

A failure says what kind it was and never quotes the server, whose answer may repeat
an address: `Refused` (a 5xx answer to this message's recipient or content: the outbox
keeps it, settled, and never sends it again) or `MailUnavailable` (the server is down,
busy, or refuses us as a sender or a login: everything waits for the next run).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

from gateway.config import Settings
from gateway.outbox import Refused


class MailUnavailable(OSError):
    """The message could not be handed over now; it is tried again later."""


def _permanent(code: int | None) -> bool:
    return code is not None and 500 <= code < 600


def send(settings: Settings, message: EmailMessage) -> None:
    """Hand `message` to the SMTP server; raises Refused or MailUnavailable."""
    parts = urlsplit(settings.smtp_url)
    implicit_tls = parts.scheme == "smtps"
    host = parts.hostname or ""
    port = parts.port or (465 if implicit_tls else 587)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else settings.smtp_password.get_secret_value()
    context = ssl.create_default_context(cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
    timeout = settings.smtp_timeout
    try:
        client: smtplib.SMTP = (
            smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            if implicit_tls
            else smtplib.SMTP(host, port, timeout=timeout)
        )
    except smtplib.SMTPConnectError as exc:
        raise MailUnavailable(f"SMTP {exc.smtp_code} on connecting") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailUnavailable(f"cannot reach the SMTP server ({type(exc).__name__})") from None
    try:
        client.ehlo()
        if not implicit_tls and settings.smtp_tls:
            if not client.has_extn("starttls"):
                raise MailUnavailable("the SMTP server does not offer STARTTLS")
            client.starttls(context=context)
            client.ehlo()
        if user:
            client.login(user, password)
        client.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        if all(_permanent(code) for code in codes):
            raise Refused(f"SMTP {','.join(map(str, codes))} for the recipient") from None
        raise MailUnavailable(f"SMTP {','.join(map(str, codes))} for the recipient") from None
    except smtplib.SMTPDataError as exc:
        if _permanent(exc.smtp_code):
            raise Refused(f"SMTP {exc.smtp_code} for the message") from None
        raise MailUnavailable(f"SMTP {exc.smtp_code} for the message") from None
    except smtplib.SMTPAuthenticationError as exc:
        raise MailUnavailable(f"SMTP {exc.smtp_code}: the server refused the login") from None
    except smtplib.SMTPSenderRefused as exc:
        raise MailUnavailable(f"SMTP {exc.smtp_code}: the server refused the sender address") from None
    except smtplib.SMTPResponseException as exc:
        raise MailUnavailable(f"SMTP {exc.smtp_code}") from None
    except MailUnavailable:
        raise
    except ssl.SSLError as exc:
        raise MailUnavailable(f"TLS with the SMTP server failed ({exc.reason or type(exc).__name__})") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise MailUnavailable(f"the SMTP conversation failed ({type(exc).__name__})") from None
    finally:
        _close(client)


def _close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except (OSError, smtplib.SMTPException):
        client.close()
