"""A human-readable PDF of a destruction certificate, for the contract file (fpdf2, core fonts only)."""

from __future__ import annotations

import json

from retention.certificates import document_sha256

MAX_ROWS = 300


def _latin(text) -> str:
    # Core PDF fonts are Latin-1; anything else is shown as "?" (ids and hashes are ASCII anyway).
    return str(text).encode("latin-1", "replace").decode("latin-1")


def render(document: bytes) -> bytes:
    """The PDF: certificate id, summary, the SHA-256 of the JSON, the signing key's fingerprint, the objects."""
    from fpdf import FPDF

    doc = json.loads(document)
    body, sig = doc["certificate"], doc["signature"]
    scope, summary = body["scope"], body["summary"]
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(True, margin=15)
    pdf.set_title(_latin(f"Certificate of sanitization {body['certificate_id']}"))
    pdf.set_creator(_latin(f"PHI Gate {body['issuer']['software_version']}"))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 9, "Certificate of Sanitization (NIST SP 800-88)", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)

    def line(label: str, value) -> None:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(48, 5, _latin(label))
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(0, 5, _latin(value), align="L", new_x="LMARGIN", new_y="NEXT")

    operator = body.get("operator") or {}
    key = body.get("key_evidence") or {}
    cp = body["audit_checkpoint"]
    for label, value in (
        ("Certificate id", body["certificate_id"]),
        ("Issued at (UTC)", body["issued_at"]),
        (
            "Issued by",
            f"{body['issuer']['software']} {body['issuer']['software_version']}, "
            f"instance {body['issuer']['instance_id']}",
        ),
        ("Operator", operator.get("username") or operator.get("user_agent") or operator.get("user_id") or "-"),
        ("Kind", scope["kind"]),
        ("Practice", f"{scope.get('practice_name')} ({scope['practice_id']})"),
        ("Vendor", f"{scope.get('vendor_name')} ({scope['vendor_id']})"),
        ("BAA reference(s)", ", ".join(scope.get("baa_references") or []) or "-"),
        ("Reason", scope["reason"]),
        ("Method", f"{body['sanitization']['category']}: {body['sanitization']['method']}"),
        ("Verification", body["verification_method"]),
        ("Objects destroyed", f"{summary['objects']} ({summary['bytes']} bytes of plaintext)"),
        ("Verified absent", summary["verified_absent"]),
        ("Crypto-shred only", summary["crypto_shred_only"]),
        ("Kept under legal hold", summary["objects_retained_under_legal_hold"]),
        (
            "Key-encryption key",
            (
                f"{key.get('key_id')}: destroyed by {key.get('method')} at {key.get('destroyed_at')}, "
                f"material gone by {key.get('deletion_scheduled_for')}"
            )
            if key.get("destroyed")
            else (
                f"{key.get('key_id')}: {key.get('reason')}"
                if key
                else "not part of this run (per-object data keys erased)"
            ),
        ),
        ("Audit checkpoint", f"tree size {cp['tree_size']}, root {cp['root_hash']}, signed {cp['signed_at']}"),
        ("SHA-256 of the JSON", document_sha256(document)),
        ("Signing key (Ed25519)", f"fingerprint {sig['public_key_fingerprint']}"),
    ):
        line(label, value)
    if body.get("crypto_shred_only"):
        pdf.ln(2)
        pdf.set_font("Helvetica", "B", 9)
        pdf.multi_cell(
            0,
            5,
            _latin(
                "Crypto-shred only: "
                + body["crypto_shred_only"]["statement"]
                + ". Objects: "
                + ", ".join(body["crypto_shred_only"]["object_ids"][:50])
            ),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    for hold in body.get("retained_under_legal_hold") or []:
        line(
            "Legal hold",
            f"{hold['hold_id']} on {hold['scope']} {hold['scope_id']} "
            f"({hold.get('reference')}): {hold['objects']} object(s) kept",
        )
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 8)
    widths = (52, 52, 22, 34, 30)
    for w, h in zip(widths, ("Transfer", "Object", "Size", "Destroyed at", "Verification"), strict=True):
        pdf.cell(w, 5, h, border=1)
    pdf.ln()
    pdf.set_font("Courier", "", 6.5)
    for e in body["objects"][:MAX_ROWS]:
        for w, v in zip(
            widths,
            (e["transfer_id"], e["object_id"], e["size"], e["destroyed_at"][:19], e["verification"]),
            strict=True,
        ):
            pdf.cell(w, 4, _latin(v), border=1)
        pdf.ln()
    if len(body["objects"]) > MAX_ROWS:
        pdf.set_font("Helvetica", "I", 8)
        pdf.cell(
            0,
            5,
            f"... and {len(body['objects']) - MAX_ROWS} more: the signed JSON lists every object "
            "with its plaintext SHA-256.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 8)
    pdf.multi_cell(
        0,
        4,
        "The signed JSON document is authoritative. Verify it with the operator's public key: "
        "phigate certificate verify CERT.json --public-key KEY.pem [--check-storage]",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    return bytes(pdf.output())
