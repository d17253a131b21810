"""Names for the ids on the auditor's pages: people, organisations and transfers, one query per page.

Audit events keep ids (they outlive renames and must not change); the pages show names beside them, with the
id on hover.  A transfer is named by its id and its two organisations, never by its purpose: a purpose or
ticket reference may hold PHI.  Event details are PHI-free by design; they are shown as labelled fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, cast, literal, null, select, union_all
from sqlalchemy.orm import Session, aliased

from gateway.audit.models import AuditEvent
from gateway.orgs.models import Organisation
from gateway.transfers.models import Transfer
from gateway.users.models import User

USER, ORG, TRANSFER = "user", "organisation", "transfer"
_LONG_HEX = re.compile(r"^[0-9a-f]{32,}$")
# Target types naming a row of each kind (both spellings of organisation are in use).
_TARGET_KINDS = {"user": USER, "organisation": ORG, "org": ORG, "transfer": TRANSFER}
# Detail keys holding ids of each kind.
_DETAIL_KINDS = {
    "vendor_id": ORG,
    "practice_id": ORG,
    "org_id": ORG,
    "user_id": USER,
    "recipients": USER,
    "transfer_id": TRANSFER,
}

# Human labels of the detail keys events carry; any other key is shown with its underscores as spaces.
DETAIL_LABELS = {
    "vendor_id": "Vendor",
    "practice_id": "Practice",
    "org_id": "Organisation",
    "user_id": "User",
    "transfer_id": "Transfer",
    "recipients": "Recipients",
    "file_id": "File id",
    "files": "Files",
    "bytes": "Bytes",
    "size": "Size (bytes)",
    "sha256": "SHA-256",
    "file_type": "File type",
    "key_id": "Key id",
    "direction": "Direction",
    "days": "Access days",
    "hours": "Hours",
    "minutes": "Minutes",
    "download_limit": "Download limit",
    "reason": "Reason",
    "reasons": "Reasons",
    "why": "Why",
    "role": "Role",
    "scope": "Scope",
    "scope_id": "Scope id",
    "count": "Count",
    "alert": "Alert raised",
    "rule": "Rule",
    "first_seq": "First event",
    "last_seq": "Last event",
    "window_minutes": "Window (minutes)",
    "sessions": "Sessions ended",
    "tokens": "Tokens revoked",
    "passkeys": "Passkeys",
    "second_factor": "Second factor",
    "failed_attempts": "Failed attempts",
    "failures": "Failures",
    "codes_left": "Recovery codes left",
    "keep_days": "Keep (days)",
    "cutoff": "Cut-off",
    "objects_removed": "Objects removed",
    "objects_left_for_fsck": "Objects left for fsck",
    "objects_failed": "Objects failed",
    "object_keys": "Object keys",
    "format": "Format",
    "from": "From",
    "to": "To",
    "version": "Version",
    "kind": "Kind",
    "purpose": "Used for",
    "sign_count": "Sign count",
    "aaguid": "Authenticator model",
}


@dataclass(frozen=True)
class Named:
    """What a page shows for an id: a label, and the id (with more) for the title attribute."""

    label: str
    hint: str


@dataclass(frozen=True)
class Field:
    label: str
    value: str
    hint: str | None = None


def _kind_of_target(event: AuditEvent) -> str | None:
    return _TARGET_KINDS.get(event.target_type or "")


def _ids(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


class Names:
    """The names of every id a page's events (and any extra ids) mention, read in one query."""

    def __init__(self, found: dict[tuple[str, str], Named]):
        self._found = found

    @classmethod
    def of(
        cls,
        db: Session,
        events: Iterable[AuditEvent] = (),
        *,
        users: Iterable[str | None] = (),
        orgs: Iterable[str | None] = (),
        transfers: Iterable[str | None] = (),
    ) -> Names:
        wanted: dict[str, set[str]] = {USER: set(filter(None, users)), ORG: set(filter(None, orgs))}
        wanted[TRANSFER] = set(filter(None, transfers))
        for e in events:
            if e.actor_user_id:
                wanted[USER].add(e.actor_user_id)
            wanted[ORG].update(filter(None, (e.actor_org_id, e.target_org_id)))
            kind = _kind_of_target(e)
            if kind and e.target_id:
                wanted[kind].add(e.target_id)
            for key, kind in _DETAIL_KINDS.items():
                wanted[kind].update(_ids((e.details or {}).get(key)))
        return cls(_resolve(db, wanted))

    def get(self, kind: str, id_: str | None) -> Named | None:
        if not id_:
            return None
        # An id that names nothing (deleted, or from another system) is shown as it is.
        return self._found.get((kind, id_)) or Named(id_, id_)

    def user(self, id_: str | None) -> Named | None:
        return self.get(USER, id_)

    def org(self, id_: str | None) -> Named | None:
        return self.get(ORG, id_)

    def target(self, event: AuditEvent) -> Named | None:
        kind = _kind_of_target(event)
        if kind:
            return self.get(kind, event.target_id)
        return Named(f"{event.target_type} {event.target_id}", event.target_id) if event.target_id else None

    def details(self, event: AuditEvent) -> list[Field]:
        """The event's details as labelled fields, ids of people, organisations and transfers by name."""
        fields = []
        for key, value in (event.details or {}).items():
            label = DETAIL_LABELS.get(key) or key.replace("_", " ").capitalize()
            kind = _DETAIL_KINDS.get(key)
            if kind and _ids(value):
                named = [self.get(kind, i) for i in _ids(value)]
                fields.append(
                    Field(label, ", ".join(n.label for n in named if n), ", ".join(n.hint for n in named if n))
                )
            elif isinstance(value, str) and _LONG_HEX.match(value):
                # Ids and digests: the start is enough to tell them apart, the whole on hover keeps tables narrow.
                fields.append(Field(label, f"{value[:12]}…", value))
            else:
                fields.append(Field(label, _text(value)))
        return fields


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


def _resolve(db: Session, wanted: dict[str, set[str]]) -> dict[tuple[str, str], Named]:
    """One UNION ALL query over users, organisations and transfers (with both organisations' names)."""
    parts = []
    text = String(200)
    if wanted[USER]:
        parts.append(
            select(
                cast(literal(USER), String(16)).label("kind"),
                User.id.label("id"),
                cast(User.full_name, text).label("a"),
                cast(User.username, text).label("b"),
                cast(null(), text).label("c"),
            ).where(User.id.in_(sorted(wanted[USER])))
        )
    if wanted[ORG]:
        parts.append(
            select(
                cast(literal(ORG), String(16)),
                Organisation.id,
                cast(Organisation.name, text),
                cast(null(), text),
                cast(null(), text),
            ).where(Organisation.id.in_(sorted(wanted[ORG])))
        )
    if wanted[TRANSFER]:
        practice, vendor = aliased(Organisation), aliased(Organisation)
        parts.append(
            select(
                cast(literal(TRANSFER), String(16)),
                Transfer.id,
                cast(practice.name, text),
                cast(vendor.name, text),
                cast(Transfer.direction, text),
            )
            .join(practice, practice.id == Transfer.practice_id)
            .join(vendor, vendor.id == Transfer.vendor_id)
            .where(Transfer.id.in_(sorted(wanted[TRANSFER])))
        )
    if not parts:
        return {}
    found: dict[tuple[str, str], Named] = {}
    for kind, id_, a, b, c in db.execute(union_all(*parts)).all():
        if kind == USER:
            named = Named(a, f"{b} · id {id_}")
        elif kind == ORG:
            named = Named(a, f"id {id_}")
        else:
            sender, receiver = (a, b) if c == "outbound" else (b, a)
            named = Named(f"transfer {id_[:8]}: {sender} → {receiver}", f"transfer id {id_}")
        found[(kind, id_)] = named
    return found
