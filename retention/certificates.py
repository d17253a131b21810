"""Destruction certificates: canonical JSON, signed with the onshore Ed25519 key, verifiable with the public key alone.

The document is ``{"certificate": BODY, "signature": SIG}`` serialised canonically:
RFC 8785 (JCS, translog/jcs.py) from format 2 on, so that any language's JSON
and sorting reproduce it; format 1 certificates (Python's json.dumps with sorted
keys, "," and ":" separators, non-ASCII as itself) still verify in their own form.
``SIG.value`` is the Ed25519 signature of the canonical serialisation of BODY.
Verification refuses a file that is not exactly the canonical serialisation of
what it parses to, so any changed byte fails: either the JSON breaks, or the form
is not canonical, or the signed content changed.  See docs/destruction-certificate.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from sqlalchemy import func, select

from crypto import Signer, fingerprint, verify_signature
from gateway import __version__, clock
from gateway.audit.actions import Action
from gateway.audit.models import Severity
from gateway.audit.service import Actor, record_event
from gateway.components import Components
from gateway.ids import new_id
from gateway.orgs.models import Organisation
from retention import steps
from retention.models import Certificate, DestructionJob, DestructionRecord, JobKind, JobStatus
from translog import jcs

FORMAT = "phigate-destruction-certificate/2"
FORMAT_V1 = "phigate-destruction-certificate/1"
METHOD = "cryptographic erase of per-object data keys and deletion of every stored object version"
VERIFICATION_METHOD = (
    "after deletion the object store is queried for the exact object key: on S3, HeadObject must answer 404 and "
    "ListObjectVersions and ListMultipartUploads must list no version, delete marker or upload; on the local "
    "store, the object file and every temporary remnant must be absent. Each object's wrapped data key and "
    "encrypted file name are then erased from the database (cryptographic erase)."
)
CRYPTO_SHRED_ONLY = (
    "storage deletion was blocked (Object Lock); the object was destroyed by crypto-shredding only: its data key "
    "was erased, so the remaining ciphertext cannot be decrypted"
)


SIGNED = "canonical JSON of the certificate member"
SIGNATURE_MEMBERS = {"algorithm", "signed", "public_key", "public_key_fingerprint", "value"}


def canonical(value) -> bytes:
    """The one serialisation that is signed and hashed (RFC 8785)."""
    return jcs.canonical(value)


def canonical_v1(value) -> bytes:
    """Format 1's serialisation, kept to verify the certificates issued in it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


CANONICAL = {FORMAT: canonical, FORMAT_V1: canonical_v1}


def _signer(c: Components) -> Signer:
    from gateway.audit.checkpoint import get_signer

    return get_signer(c)


def _checkpoint(c: Components) -> dict:
    """Sign a checkpoint of the audit log now (the destruction events are in it) and describe it."""
    from gateway.audit.checkpoint import maybe_checkpoint, signed_checkpoint

    maybe_checkpoint(c, force=True)
    with c.db.sessions() as db:
        cp = signed_checkpoint(db)
        db.commit()
    return {
        "tree_size": cp.tree_size,
        "root_hash": cp.root_hash.hex(),
        "origin": cp.key_name,
        "key_fingerprint": cp.key_fingerprint,
        "signed_at": cp.created_at.isoformat(),
        "signed_note": cp.note,
    }


def _entry(row) -> dict:
    storage = row.storage or {}
    return {
        "transfer_id": row.transfer_id,
        "object_id": row.file_id,
        "storage_object_key": row.object_key,
        "size": row.size,
        "plaintext_sha256": row.sha256,
        "storage_location": row.storage_location,
        "destroyed_at": row.destroyed_at.isoformat(),
        "verification": "crypto-shred only" if row.crypto_shred_only else "verified absent",
        "storage": {
            "versions_deleted": storage.get("versions_deleted", 0),
            "delete_markers_deleted": storage.get("delete_markers_deleted", 0),
            "blocked": storage.get("blocked", []),
            "checks": storage.get("checks", []),
            "checked_at": storage.get("checked_at"),
        },
        "data_key": "erased",
    }


_OBJECTS = "\x00objects\x00"  # placeholder spliced out of the canonical body


def build_body(
    c: Components, job: DestructionJob, cert_id: str, issued_at, checkpoint: dict, db
) -> tuple[bytearray, dict]:
    """The canonical serialisation of the certificate body, and its summary.

    Objects are read in chunks and serialised one by one into the output, so memory
    holds the document's bytes (a few hundred per object), never the objects as Python
    values: sorted keys make the "objects" member's place fixed, so splicing the
    serialised list into the canonical rest of the body is itself canonical.
    """
    names = dict(
        db.execute(
            select(Organisation.id, Organisation.name).where(Organisation.id.in_([job.practice_id, job.vendor_id]))
        ).all()
    )
    mine = DestructionRecord.job_id == job.id
    count, total = db.execute(
        select(func.count(), func.coalesce(func.sum(DestructionRecord.size), 0)).where(mine)
    ).one()
    shred_only = list(
        db.scalars(
            select(DestructionRecord.file_id)
            .where(mine, DestructionRecord.crypto_shred_only.is_(True))
            .order_by(DestructionRecord.file_id)
        )
    )
    body = {
        "format": FORMAT,
        "certificate_id": cert_id,
        "issued_at": issued_at.isoformat(),
        "issuer": {"software": "PHI Gate", "software_version": __version__, "instance_id": c.settings.instance_id},
        "operator": job.operator,
        "scope": {
            "kind": job.kind.value,
            "practice_id": job.practice_id,
            "practice_name": names.get(job.practice_id),
            "vendor_id": job.vendor_id,
            "vendor_name": names.get(job.vendor_id),
            "reason": job.reason,
            "baa_references": job.baa_references,
            "job_id": job.id,
            "returned_files_included": bool(job.include_returned),
            "retention_cutoff": job.cutoff.isoformat() if job.cutoff else None,
        },
        "sanitization": {
            "standard": "NIST SP 800-88 Rev. 1",
            "category": "Purge",
            "method": METHOD,
            "media": "object storage holding ciphertext only (AES-256-GCM, one data key per object)",
            "tool": f"PHI Gate {__version__} retention engine",
        },
        "verification_method": VERIFICATION_METHOD,
        "summary": {
            "objects": count,
            "bytes": int(total),
            "verified_absent": count - len(shred_only),
            "crypto_shred_only": len(shred_only),
            "objects_retained_under_legal_hold": sum(h["objects"] for h in job.held or []),
        },
        "objects": _OBJECTS,
        "crypto_shred_only": {"statement": CRYPTO_SHRED_ONLY, "object_ids": shred_only} if shred_only else None,
        "key_evidence": job.key_evidence,
        "retained_under_legal_hold": job.held or [],
        "supplements": job.supplements,
        "audit_checkpoint": checkpoint,
    }
    head, tail = canonical(body).split(canonical(_OBJECTS), 1)
    out = bytearray(head)
    out += b"["
    columns = (
        DestructionRecord.transfer_id,
        DestructionRecord.file_id,
        DestructionRecord.object_key,
        DestructionRecord.size,
        DestructionRecord.sha256,
        DestructionRecord.storage_location,
        DestructionRecord.destroyed_at,
        DestructionRecord.crypto_shred_only,
        DestructionRecord.storage,
    )
    rows = db.execute(
        select(*columns)
        .where(mine)
        .order_by(DestructionRecord.transfer_id, DestructionRecord.file_id)
        .execution_options(yield_per=500)
    )
    for i, row in enumerate(rows):
        if i:
            out += b","
        out += canonical(_entry(row))
    out += b"]"
    out += tail
    return out, body["summary"]


def sign(body: dict | bytes | bytearray, signer: Signer) -> bytes:
    """The certificate document: canonical JSON of the body (a dict, or its canonical bytes) and its signature."""
    message = bytes(body) if isinstance(body, bytes | bytearray) else canonical(body)
    signature = canonical(
        {
            "algorithm": "Ed25519",
            "signed": SIGNED,
            "public_key": base64.b64encode(signer.public_key_raw()).decode(),
            "public_key_fingerprint": signer.fingerprint(),
            "value": base64.b64encode(signer.sign(message)).decode(),
        }
    )
    # "certificate" sorts before "signature": this is canonical({"certificate": body, "signature": sig}).
    return b"".join((b'{"certificate":', message, b',"signature":', signature, b"}"))


def issue(c: Components, job_id: str, actor: Actor) -> str:
    """Issue the job's one certificate (or return it if issued already) and complete the job."""
    with c.db.sessions() as db:
        existing = db.scalar(select(Certificate.id).where(Certificate.job_id == job_id))
        db.commit()
    if existing:
        return existing
    # Signed first, so that the checkpoint covers every destruction event of the job.
    checkpoint = _checkpoint(c)
    steps.done("checkpoint")
    signer = _signer(c)
    with c.db.transaction() as db:
        job = db.get_one(DestructionJob, job_id, with_for_update=True)
        existing = db.scalar(select(Certificate.id).where(Certificate.job_id == job_id))
        if existing:
            return existing
        cert_id, issued_at = new_id(), clock.now()
        body, summary = build_body(c, job, cert_id, issued_at, checkpoint, db)
        document = sign(body, signer)
        del body
        digest = hashlib.sha256(document).hexdigest()
        db.add(
            Certificate(
                id=cert_id,
                job_id=job.id,
                kind=job.kind,
                practice_id=job.practice_id,
                vendor_id=job.vendor_id,
                issued_at=issued_at,
                objects=summary["objects"],
                crypto_shred_only=summary["crypto_shred_only"],
                sha256=digest,
                key_fingerprint=signer.fingerprint(),
                document=document,
            )
        )
        job.status, job.finished_at = JobStatus.complete, issued_at
        record_event(
            db,
            Action.RETENTION_CERTIFICATE_ISSUED,
            actor=actor,
            severity=Severity.warning,
            target_type="certificate",
            target_id=cert_id,
            target_org_id=job.practice_id,
            details={
                "job_id": job.id,
                "kind": job.kind.value,
                "vendor_id": job.vendor_id,
                "objects": summary["objects"],
                "crypto_shred_only": summary["crypto_shred_only"],
                "sha256": digest,
                "key_destroyed": bool(job.key_evidence and job.key_evidence.get("destroyed")),
            },
        )
    steps.done("certificate_issued")
    return cert_id


# -- verification -----------------------------------------------------------------


@dataclass
class Verification:
    ok: bool
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    certificate_id: str | None = None
    objects: int = 0
    storage_checked: int = 0

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "certificate_id": self.certificate_id,
            "objects": self.objects,
            "storage_checked": self.storage_checked,
            "problems": self.problems,
            "notes": self.notes,
        }


def _b64(text: str) -> bytes:
    """Strict base64: one encoding per value (unused trailing bits would let a byte change unnoticed)."""
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode() != text:
        raise ValueError("non-canonical base64")
    return raw


def verify_document(data: bytes, public_key=None) -> tuple[Verification, dict | None]:
    """Check a certificate's form and signature, with the given public key (PEM or raw) or the embedded one."""
    v = Verification(ok=False)
    try:
        doc = json.loads(data.decode("utf-8"))
        body, sig = doc["certificate"], doc["signature"]
        if set(doc) != {"certificate", "signature"} or not isinstance(body, dict):
            raise ValueError
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        v.problems.append("not a certificate document (malformed JSON or missing members)")
        return v, None
    v.certificate_id = body.get("certificate_id")
    v.objects = len(body.get("objects") or [])
    # The format names its serialisation; an unknown one (or one that is not a string, which
    # could not even be looked up) is checked as the current one and fails.
    fmt = body.get("format")
    form = CANONICAL.get(fmt, canonical) if isinstance(fmt, str) else canonical
    canonical_doc: bytes | None
    canonical_body: bytes | None
    try:
        canonical_doc, canonical_body = form(doc), form(body)
    except (jcs.NotCanonicalisable, TypeError, ValueError):
        canonical_doc = canonical_body = None
    if canonical_doc != data:
        v.problems.append("the file is not in canonical form: it was altered after signing")
    if not isinstance(fmt, str) or fmt not in CANONICAL:
        v.problems.append(f"unknown format {fmt!r}")
    try:
        # Every byte of the signature member is checked too: nothing in the file is free text.
        if set(sig) != SIGNATURE_MEMBERS or sig["signed"] != SIGNED:
            v.problems.append("the signature member is not in the expected form")
        embedded, signature = _b64(sig["public_key"]), _b64(sig["value"])
        if public_key is None:
            key = embedded
            v.notes.append(
                "checked with the public key embedded in the certificate; pass --public-key to check "
                "it against the operator's published key"
            )
        else:
            key = public_key
            if fingerprint(embedded) != fingerprint(public_key):
                v.problems.append("the certificate names another signing key than the one given")
        if sig.get("public_key_fingerprint") != fingerprint(key):
            v.problems.append("the signing key fingerprint does not match the key")
        if (
            sig.get("algorithm") != "Ed25519"
            or canonical_body is None
            or not verify_signature(key, canonical_body, signature)
        ):
            v.problems.append("the signature does not verify")
    except Exception:  # noqa: BLE001 - any malformed signature member is one failure
        v.problems.append("the signature member is malformed")
    v.ok = not v.problems
    return v, body


def check_storage(body: dict, store) -> tuple[int, list[str], list[str]]:
    """Confirm each listed object is still absent from `store`; (checked, problems, notes)."""
    problems, notes, checked = [], [], 0
    for entry in body.get("objects") or []:
        if entry["storage_location"] != store.location_id:
            problems.append(
                f"object {entry['object_id']}: stored in {entry['storage_location']}, "
                f"not in the configured store {store.location_id}"
            )
            continue
        proof = store.verify_absent(entry["storage_object_key"])
        checked += 1
        if not proof.absent:
            if entry["verification"] == "crypto-shred only":
                notes.append(
                    f"object {entry['object_id']}: ciphertext still held under Object Lock "
                    "(destroyed by crypto-shredding, as the certificate states)"
                )
            else:
                problems.append(f"object {entry['object_id']}: present in storage again")
    return checked, problems, notes


def document_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def list_certificates(db, practice_id: str | None = None) -> list[Certificate]:
    query = select(Certificate).order_by(Certificate.issued_at.desc())
    if practice_id is not None:
        query = query.where(Certificate.practice_id == practice_id)
    return list(db.scalars(query.limit(500)))


def is_offboarding(cert: Certificate) -> bool:
    return cert.kind == JobKind.offboarding
