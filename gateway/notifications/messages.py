"""The words of each notice, built from an organisation's name, a count and the gateway's address only.

Nothing else reaches a message: no file name, purpose, note or reason, so no PHI can
leave by e-mail whatever a transfer holds (tests/notifications check it on every kind).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.notifications.models import Kind

# Where the link of each kind leads (after sign-in): the page that lists that work.
PATHS = {
    Kind.approval_requested: "/transfers/approvals",
    Kind.transfer_available: "/transfers",
    Kind.access_expiring: "/transfers",
    Kind.transfer_approved: "/transfers",
    Kind.transfer_rejected: "/transfers",
    Kind.transfer_revoked: "/transfers",
    Kind.transfer_downloaded: "/transfers",
    Kind.alert_raised: "/audit",
}


def _transfers(n: int) -> str:
    return "1 transfer" if n == 1 else f"{n} transfers"


def line(kind: Kind, org: str, count: int) -> str:
    """One sentence about `count` notices of one kind concerning one organisation."""
    n = _transfers(count)
    return {
        Kind.approval_requested: f"{n} to {org} {'awaits' if count == 1 else 'await'} your approval.",
        Kind.transfer_available: f"{n} from {org} {'is' if count == 1 else 'are'} available for you to download.",
        Kind.access_expiring: f"Access to {n} from {org} ends within a day.",
        Kind.transfer_approved: f"{n} you sent to {org} {'was' if count == 1 else 'were'} approved.",
        Kind.transfer_rejected: f"{n} you sent to {org} {'was' if count == 1 else 'were'} rejected.",
        Kind.transfer_revoked: f"{n} you sent to {org} {'was' if count == 1 else 'were'} revoked.",
        Kind.transfer_downloaded: f"{org} downloaded {n} you sent.",
        Kind.alert_raised: (
            f"{'1 new audit alert concerns' if count == 1 else f'{count} new audit alerts concern'} {org}."
        ),
    }[kind]


@dataclass(frozen=True)
class Item:
    kind: Kind
    org: str  # the organisation's name
    count: int


def compose(items: list[Item], public_url: str, *, digest: bool) -> tuple[str, str]:
    """(subject, plain-text body) of one message about `items`."""
    if digest:
        subject = "PHI Gate: your daily summary"
    elif len(items) == 1:
        subject = f"PHI Gate: {line(items[0].kind, items[0].org, items[0].count).rstrip('.')}"
    else:
        subject = "PHI Gate: new activity"
    lines = [f"- {line(i.kind, i.org, i.count)}" for i in items]
    paths = list(dict.fromkeys(PATHS[i.kind] for i in items))
    link = public_url.rstrip("/") + (paths[0] if len(paths) == 1 else "/home")
    body = "\n".join(
        [
            "Hello,",
            "",
            "Since your last message from PHI Gate:" if digest else "In PHI Gate:",
            *lines,
            "",
            f"Sign in to see the details: {link}",
            "",
            "This message holds no file names or other details on purpose. You can choose how often",
            f"PHI Gate writes to you on your account page: {public_url.rstrip('/')}/account",
        ]
    )
    return subject, body + "\n"
