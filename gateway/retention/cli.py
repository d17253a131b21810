"""`phigate retention ...`, `phigate offboard`, `phigate certificate ...`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from gateway import cli_support as cli

retention_app = typer.Typer(help="Retention policies, legal holds and destruction runs.", no_args_is_help=True)
certificate_app = typer.Typer(help="Destruction certificates.", no_args_is_help=True)
policy_app = typer.Typer(help="Retention policies.", no_args_is_help=True)
hold_app = typer.Typer(help="Legal holds.", no_args_is_help=True)
retention_app.add_typer(policy_app, name="policy")
retention_app.add_typer(hold_app, name="hold")

EXIT_BUSY = 3


def _guard(fn):
    """Run `fn`, turning gateway errors into one clear line and an exit code (3: another runner works)."""
    from gateway.errors import GatewayError
    from retention.errors import RunnerBusy

    try:
        return fn()
    except RunnerBusy as exc:
        typer.echo(f"error: {exc.message} ({exc.code})", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except GatewayError as exc:
        typer.echo(f"error: {exc.message} ({exc.code})", err=True)
        raise typer.Exit(1) from None


@retention_app.command("run")
def run(
    dry_run: bool = typer.Option(False, "--dry-run", help="say what is due; change nothing"),
    wait: float = typer.Option(0, help="seconds to wait for another runner to finish (default: exit at once)"),
    as_json: bool = typer.Option(True, "--json/--text"),
) -> None:
    """Destroy every object whose retention has ended (resuming any interrupted job); one certificate per scope."""
    from retention.runner import run as run_retention

    bar = cli.Bar("destroying")
    report = _guard(
        lambda: run_retention(
            cli.components(), cli.actor(), dry_run=dry_run, wait_seconds=wait, progress=bar.advance, on_start=bar.start
        )
    )
    bar.finish()
    typer.echo(json.dumps(report.as_dict(), indent=2, default=str))


@retention_app.command("status")
def status() -> None:
    """Open (interrupted) jobs and active holds."""
    from retention.holds import list_holds
    from retention.jobs import open_jobs

    with cli.components().db.transaction() as db:
        typer.echo(
            json.dumps(
                {
                    "open_jobs": [
                        {"job_id": j.id, "kind": j.kind.value, "practice_id": j.practice_id, "vendor_id": j.vendor_id}
                        for j in open_jobs(db)
                    ],
                    "active_holds": [
                        {"hold_id": h.id, "scope": h.scope.value, "scope_id": h.target_id, "reference": h.reference}
                        for h in list_holds(db, active_only=True)
                    ],
                },
                indent=2,
            )
        )


@policy_app.command("set")
def policy_set(
    practice: str = typer.Option(..., help="practice id or name"),
    vendor: str = typer.Option(None, help="vendor id or name (an override for this pair)"),
    keep_days: int = typer.Option(..., help="days ciphertext is kept after the window ends"),
    max_access_days: int = typer.Option(None, help="longest access window an approver may grant"),
) -> None:
    from gateway.orgs.service import find_org
    from retention.policies import set_policy

    c = cli.components()

    def go():
        with c.db.transaction() as db:
            p = set_policy(
                db,
                c.settings,
                find_org(db, practice).id,
                find_org(db, vendor).id if vendor else None,
                keep_days=keep_days,
                max_access_days=max_access_days,
                actor=cli.actor(),
            )
            typer.echo(f"policy {p.id}: keep {p.keep_days} days, max window {p.max_access_days or 'default'}")

    _guard(go)


@policy_app.command("list")
def policy_list() -> None:
    from retention.policies import list_policies

    with cli.components().db.transaction() as db:
        for p in list_policies(db):
            typer.echo(
                f"{p.id}  practice={p.practice_id}  vendor={p.vendor_id or '*'}  keep_days={p.keep_days}  "
                f"max_access_days={p.max_access_days or '-'}"
            )


@hold_app.command("place")
def hold_place(
    scope: str = typer.Argument(..., help="transfer, vendor or practice"),
    target: str = typer.Argument(..., help="its id"),
    reference: str = typer.Option(..., help="matter or case reference (no PHI)"),
) -> None:
    from retention.holds import place_hold

    def go():
        with cli.components().db.transaction() as db:
            typer.echo(f"hold {place_hold(db, scope, target, reference, cli.actor()).id} placed")

    _guard(go)


@hold_app.command("release")
def hold_release(hold_id: str) -> None:
    from retention.holds import release_hold

    def go():
        with cli.components().db.transaction() as db:
            release_hold(db, hold_id, cli.actor())
            typer.echo(f"hold {hold_id} released")

    _guard(go)


@hold_app.command("list")
def hold_list() -> None:
    from retention.holds import list_holds

    with cli.components().db.transaction() as db:
        for h in list_holds(db):
            typer.echo(
                f"{h.id}  {h.scope.value:<8} {h.target_id}  {'active' if h.active else 'released':<8} {h.reference}"
            )


def offboard(
    vendor: str = typer.Argument(..., help="vendor id or name"),
    practice: str = typer.Option(None, help="only this practice's relationship (id or name)"),
    reason: str = typer.Option(..., help="why (on the certificate)"),
    include_returned: bool = typer.Option(
        False, "--include-returned", help="also destroy files the vendor sent to the practice"
    ),
) -> None:
    """Terminate BAA(s), disable the vendor's users, destroy every file sent to it, destroy the key, certify."""
    from retention.offboarding import offboard as run_offboard

    bar = cli.Bar("offboarding")
    report = _guard(
        lambda: run_offboard(
            cli.components(),
            cli.actor(),
            vendor,
            practice_ref=practice,
            reason=reason,
            include_returned=include_returned,
            progress=bar.advance,
            on_start=bar.start,
        )
    )
    bar.finish()
    typer.echo(json.dumps(report.as_dict(), indent=2, default=str))


def _read_key(path: Path | None):
    if path is None:
        return None
    data = path.read_bytes()
    return data if b"BEGIN" in data or len(data) == 32 else data.strip()


@certificate_app.command("verify")
def verify(
    file: Path = typer.Argument(..., exists=True, dir_okay=False),
    public_key: Path = typer.Option(
        None, "--public-key", exists=True, dir_okay=False, help="the operator's Ed25519 public key (PEM)"
    ),
    check_storage: bool = typer.Option(
        False, "--check-storage", help="also confirm each object is absent from the configured store"
    ),
) -> None:
    """Verify a certificate's signature with the public key alone (exit 0 valid, 1 not)."""
    from retention.certificates import check_storage as check
    from retention.certificates import verify_document

    result, body = verify_document(file.read_bytes(), _read_key(public_key))
    if check_storage and body is not None and result.ok:
        checked, problems, notes = check(body, cli.components().store)
        result.storage_checked = checked
        result.problems += problems
        result.notes += notes
        result.ok = not result.problems
    typer.echo(json.dumps(result.as_dict(), indent=2))
    if not result.ok:
        typer.echo("certificate INVALID", err=True)
        raise typer.Exit(1)
    typer.echo("certificate valid", err=True)


@certificate_app.command("list")
def cert_list() -> None:
    from retention.certificates import list_certificates

    with cli.components().db.transaction() as db:
        for cert in list_certificates(db):
            typer.echo(
                f"{cert.id}  {cert.issued_at.isoformat()}  {cert.kind.value:<11} practice={cert.practice_id} "
                f"vendor={cert.vendor_id} objects={cert.objects} sha256={cert.sha256}"
            )


@certificate_app.command("export")
def cert_export(
    certificate_id: str, out: Path = typer.Option(..., "--out", help="file to write (.json or .pdf)")
) -> None:
    """Write a certificate as its signed JSON, or as the PDF rendering when --out ends in .pdf."""
    from retention.models import Certificate
    from retention.pdf import render

    with cli.components().db.transaction() as db:
        cert = db.get(Certificate, certificate_id)
        if cert is None:
            typer.echo("error: no such certificate", err=True)
            raise typer.Exit(1)
        out.write_bytes(render(cert.document) if out.suffix.lower() == ".pdf" else cert.document)
    typer.echo(f"wrote {out}")


@certificate_app.command("public-key")
def public_key() -> None:
    """Print the onshore signing key's public half (PEM), to hand to whoever verifies certificates."""
    from gateway.audit.checkpoint import get_signer

    typer.echo(get_signer(cli.components()).public_key_pem().decode().strip())
