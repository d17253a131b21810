"""Retention policies: per practice, with an optional override per practice-vendor pair."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock, paging
from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_event
from gateway.config import Settings
from gateway.errors import InvalidInput, NotFound
from gateway.orgs.models import Organisation, OrgKind
from gateway.paging import Page
from retention.models import RetentionPolicy

MAX_KEEP_DAYS = 3650


@dataclass(frozen=True)
class Effective:
    keep_days: int
    max_access_days: int
    source: str  # "pair", "practice" or "default"


def _org(db: Session, org_id: str, kind: OrgKind) -> Organisation:
    org = db.get(Organisation, org_id)
    if org is None or org.kind != kind:
        raise NotFound(f"No such {kind.value}.", code=f"{kind.value}_not_found")
    return org


# By practice; a practice's policy and its vendor overrides then by id (vendor_id may be NULL: not a cursor column).
ORDER = paging.Order("retention-policies", (RetentionPolicy.practice_id, RetentionPolicy.id))


def policy_page(db: Session, *, limit: int = paging.DEFAULT_LIMIT, cursor: str | None = None) -> Page[RetentionPolicy]:
    """One page of the retention policies."""
    return ORDER.page(db, select(RetentionPolicy), limit=limit, cursor=cursor)


def list_policies(db: Session) -> list[RetentionPolicy]:
    """Every retention policy (the CLI)."""
    return list(paging.every(lambda cursor: policy_page(db, limit=paging.MAX_LIMIT, cursor=cursor)))


def _find(db: Session, practice_id: str, vendor_id: str | None) -> RetentionPolicy | None:
    where = RetentionPolicy.vendor_id.is_(None) if vendor_id is None else RetentionPolicy.vendor_id == vendor_id
    return db.scalar(select(RetentionPolicy).where(RetentionPolicy.practice_id == practice_id, where))


def set_policy(
    db: Session,
    settings: Settings,
    practice_id: str,
    vendor_id: str | None,
    *,
    keep_days: int,
    max_access_days: int | None,
    actor: Actor,
) -> RetentionPolicy:
    """Create or change a practice's policy (vendor_id None) or a pair's override; audited."""
    _org(db, practice_id, OrgKind.practice)
    if vendor_id is not None:
        _org(db, vendor_id, OrgKind.vendor)
    if not 0 <= keep_days <= MAX_KEEP_DAYS:
        raise InvalidInput(f"Keep ciphertext 0 to {MAX_KEEP_DAYS} days.", code="invalid_keep_days")
    if max_access_days is not None and not 1 <= max_access_days <= settings.max_access_days:
        raise InvalidInput(f"The maximum access window is 1 to {settings.max_access_days} days.", code="invalid_window")
    policy = _find(db, practice_id, vendor_id)
    before = None if policy is None else {"keep_days": policy.keep_days, "max_access_days": policy.max_access_days}
    if policy is None:
        policy = RetentionPolicy(practice_id=practice_id, vendor_id=vendor_id)
        db.add(policy)
    policy.keep_days, policy.max_access_days = keep_days, max_access_days
    policy.updated_at, policy.updated_by = clock.now(), actor.user_id
    db.flush()
    record_event(
        db,
        Action.RETENTION_POLICY_UPDATED,
        actor=actor,
        target_type="retention_policy",
        target_id=policy.id,
        target_org_id=practice_id,
        details={
            "vendor_id": vendor_id,
            "keep_days": keep_days,
            "max_access_days": max_access_days,
            "previous_keep_days": before and before["keep_days"],
            "previous_max_access_days": before and before["max_access_days"],
        },
    )
    return policy


def remove_policy(db: Session, policy_id: str, actor: Actor) -> None:
    policy = db.get(RetentionPolicy, policy_id)
    if policy is None:
        raise NotFound("No such policy.", code="policy_not_found")
    record_event(
        db,
        Action.RETENTION_POLICY_REMOVED,
        actor=actor,
        target_type="retention_policy",
        target_id=policy.id,
        target_org_id=policy.practice_id,
        details={"vendor_id": policy.vendor_id, "keep_days": policy.keep_days},
    )
    db.delete(policy)


def effective(db: Session, settings: Settings, practice_id: str, vendor_id: str) -> Effective:
    """The pair's override, else the practice's policy, else the gateway's defaults."""
    for vid, source in ((vendor_id, "pair"), (None, "practice")):
        policy = _find(db, practice_id, vid)
        if policy is not None:
            return Effective(policy.keep_days, policy.max_access_days or settings.max_access_days, source)
    return Effective(settings.retention_keep_days, settings.max_access_days, "default")


def max_access_days(db: Session, settings: Settings, practice_id: str, vendor_id: str) -> int:
    """The longest access window an approver may grant on this pair (gateway.transfers.service.approve)."""
    return effective(db, settings, practice_id, vendor_id).max_access_days
