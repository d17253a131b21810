"""What the audit API answers: the shapes of its JSON, for the schema and for generated clients.

Times are the strings the log itself holds (ISO 8601, UTC); hashes are lowercase hex.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gateway.audit.actions import Action
from gateway.audit.models import Outcome, Severity


class EventOut(BaseModel):
    seq: int = Field(description="the event's position in the log (leaf seq - 1 of the Merkle tree)", examples=[42])
    occurred_at: str = Field(examples=["2026-12-01T10:00:00.000000Z"])
    action: str = Field(
        description="a member of the event table (docs/audit.md)", examples=[Action.TRANSFER_APPROVED.value]
    )
    outcome: Outcome
    severity: Severity
    actor_user_id: str | None
    actor_org_id: str | None
    ip: str | None
    user_agent: str | None
    target_type: str | None = Field(examples=["transfer"])
    target_id: str | None
    target_org_id: str | None
    details: dict[str, Any] = Field(description="the action's details: ids, sizes, hashes, never PHI")
    leaf_hash: str


class EventPage(BaseModel):
    items: list[EventOut]
    next_before: int | None = Field(description="pass as `before` for the next (older) page; null at the end")


class ActivityOut(BaseModel):
    user: str
    day: str = Field(examples=["2026-12-01"])
    items: list[EventOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class TimelineOut(BaseModel):
    target_id: str
    items: list[EventOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class CheckpointOut(BaseModel):
    id: int
    tree_size: int
    root_hash: str
    kind: str
    created_at: str
    note: str = Field(description="the checkpoint as a C2SP signed note")


class CheckpointStatus(CheckpointOut):
    signature_ok: bool | None = Field(description="the note's signature, checked again now")


class LogStatus(BaseModel):
    tree_size: int
    prune_base: int = Field(description="leaves before this were pruned by retention (0: none)")
    latest_checkpoint: CheckpointStatus | None
    unsigned_events: int = Field(description="events not yet covered by a checkpoint")
    queued_events: int = Field(
        description="events committed with their actions but not yet integrated into the log (no sequence number yet)"
    )
    last_verification: dict[str, Any] | None = Field(
        description="the latest full verification: `seq` and `at` of its event, and that event's details"
    )


class PublicKeyOut(BaseModel):
    key_name: str
    fingerprint: str
    public_key_pem: str
    verifier_key: str = Field(description="the C2SP note verifier key (`<name>+<hash>+<key>`)")


class CheckpointList(BaseModel):
    items: list[CheckpointOut]


class CheckpointSigned(BaseModel):
    id: int
    tree_size: int
    root_hash: str
    note: str


class InclusionProof(BaseModel):
    seq: int
    leaf_index: int
    tree_size: int
    leaf_hash: str
    inclusion_path: list[str]
    root_hash: str
    checkpoint: str = Field(description="the signed note of the tree the proof is for")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    consistency_path: list[str]
    first_root_hash: str
    second_root_hash: str
    first_checkpoint: str | None = Field(description="the signed note of the first tree, when one was signed")
    second_checkpoint: str


class VendorOut(BaseModel):
    id: str
    name: str
    active: bool


class VendorsOut(BaseModel):
    vendors: list[VendorOut]


class VendorRef(BaseModel):
    id: str
    name: str


class ReviewRowOut(BaseModel):
    user_id: str
    username: str
    full_name: str
    role: str
    active: bool
    mfa_enrolled: bool
    created_at: str
    created_by: str | None
    last_login_at: str | None
    last_download_at: str | None
    days_inactive: int


class AccessReviewOut(BaseModel):
    vendor: VendorRef
    users: list[ReviewRowOut]


class AlertOut(BaseModel):
    id: int
    rule: str
    severity: Severity
    subject: str
    summary: str
    count: int
    first_seq: int
    last_seq: int
    org_ids: list[str]
    raised_at: str
    source: str = Field(examples=["phigate"])
    acknowledged_at: str | None
    delivered_at: str | None


class AlertList(BaseModel):
    items: list[AlertOut]


class Acknowledged(BaseModel):
    id: int
    acknowledged_at: str
