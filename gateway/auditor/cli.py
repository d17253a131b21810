"""`phigate audit ...`: verify, checkpoint, export, verify-export, prune, public-key, review, alerts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from gateway.cli_support import actor as _actor
from gateway.cli_support import components as _components

audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)


@audit_app.command("verify")
def verify(as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Recompute the whole tree, check every signed checkpoint, name the first event where the log breaks."""
    from gateway.audit.verify import run_verification

    report = run_verification(_components(), _actor())
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    elif report.ok:
        typer.echo(
            f"log intact: {report.events_checked} events, {report.checkpoints_checked} signed checkpoints "
            f"verified (tree size {report.tree_size}; {report.unsigned_events} events after the last "
            f"checkpoint{'; pruned through ' + str(report.prune_base) if report.prune_base else ''})"
        )
        if report.queued_events:
            typer.echo(
                f"{report.queued_events} events queued, not yet integrated: not covered by this verification "
                "(they get their sequence numbers within PHIGATE_AUDIT_INTEGRATE_SECONDS)"
            )
    else:
        typer.echo(f"LOG BROKEN at event {report.first_bad_seq}: {report.problem}", err=True)
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("checkpoint")
def checkpoint(force: bool = typer.Option(True, help="sign now even if the interval has not passed")) -> None:
    """Sign a checkpoint of the current tree (nothing to do when the log did not grow)."""
    from gateway.audit.checkpoint import latest_checkpoint, maybe_checkpoint

    components = _components()
    cp = maybe_checkpoint(components, force=force)
    if cp is None:
        with components.db.sessions() as db:
            cp = latest_checkpoint(db)
        if cp is None:
            typer.echo("the log is empty: nothing to sign")
            return
        typer.echo("no new events since the last checkpoint", err=True)
    typer.echo(cp.note, nl=False)


@audit_app.command("public-key")
def public_key(verifier: bool = typer.Option(False, "--verifier-key", help="print the C2SP verifier key")) -> None:
    """Print the checkpoint signing public key (PEM) for outside verifiers."""
    from gateway.audit.checkpoint import get_signer, origin
    from translog import verifier_key

    components = _components()
    signer = get_signer(components)
    if verifier:
        typer.echo(verifier_key(origin(components.settings), signer.public_key_raw()))
    else:
        typer.echo(signer.public_key_pem().decode(), nl=False)


@audit_app.command("export")
def export(
    out: Path = typer.Option(..., "--out", help="file to write"),
    fmt: str = typer.Option("jsonl", "--format", help="csv or jsonl"),
    user: str = typer.Option(None),
    org: str = typer.Option(None),
    action: str = typer.Option(None),
    outcome: str = typer.Option(None),
    since: str = typer.Option(None),
    until: str = typer.Option(None),
    target_id: str = typer.Option(None),
) -> None:
    """Export events (all, or a filtered selection) with the covering checkpoint and inclusion proofs."""
    from gateway.auditor import export as export_service
    from gateway.auditor import search
    from gateway.errors import GatewayError

    components = _components()
    try:
        with components.db.sessions() as db:
            flt = search.build_filter(
                db,
                user=user,
                org=org,
                action=action,
                outcome=outcome,
                since=since,
                until=until,
                target_id=target_id,
                max_days=None,
            )
        chunks, _, size = export_service.start_export(components, search.Scope(None), flt, fmt, _actor())
    except GatewayError as exc:
        typer.echo(f"error: {exc.message} ({exc.code})", err=True)
        raise typer.Exit(2) from None
    with open(out, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
    typer.echo(f"wrote {out} (checkpoint tree size {size})")


@audit_app.command("verify-export")
def verify_export(
    file: Path,
    public_key: str = typer.Option(..., "--public-key", help="PEM file, or a C2SP verifier key string"),
    key_name: str = typer.Option(None, help="signer name (default: the checkpoint origin)"),
    allow_v1: bool = typer.Option(
        False, "--allow-v1", help="accept a version 1 export, whose header is not signed, and verify its events alone"
    ),
) -> None:
    """Verify an export offline with only the public key: signature, header, every leaf, every inclusion proof."""
    from translog import InvalidKey, NoteError, PublicKey, load_public_key, parse_verifier_key
    from translog import verify_export as check

    key: PublicKey
    try:
        if Path(public_key).is_file():
            key, name = load_public_key(Path(public_key).read_bytes()), key_name
        else:
            name, key = parse_verifier_key(public_key)
            name = key_name or name
    except (NoteError, InvalidKey) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    report = check(str(file), key, name, allow_v1=allow_v1)
    if report.ok and report.header_bound:
        h = report.header
        assert h is not None  # noqa: S101 - narrows the type: a bound export's report carries its header
        typer.echo(
            f"export verified: {report.events} events included in the checkpoint of {report.origin} "
            f"at tree size {report.tree_size}; header signed (export event {h['export_event_seq']}, "
            f"filters {json.dumps(h['filters'], sort_keys=True)})"
        )
        raise typer.Exit(0)
    if report.ok:
        typer.echo(
            f"events verified: {report.events} events included in the checkpoint of {report.origin} "
            f"at tree size {report.tree_size}; version 1 export: its header (filters, export event, "
            f"key fields) is NOT covered by the signature"
        )
        raise typer.Exit(0)
    where = f" at event {report.first_bad_seq}" if report.first_bad_seq else ""
    typer.echo(f"EXPORT DOES NOT VERIFY{where}: {report.problem}", err=True)
    raise typer.Exit(1)


@audit_app.command("prune")
def prune() -> None:
    """Delete events older than PHIGATE_AUDIT_RETENTION_YEARS behind a signed prune checkpoint."""
    from gateway.audit.checkpoint import prune as prune_log

    base = prune_log(_components(), _actor())
    typer.echo(f"events 1..{base} are pruned" if base else "nothing old enough to prune")


@audit_app.command("review")
def review(vendor: str = typer.Argument(..., help="vendor organisation id or name")) -> None:
    """Print the access review of one vendor as JSON."""
    from gateway.audit.sequencer import catch_up
    from gateway.auditor.review import access_review
    from gateway.auditor.search import Scope
    from gateway.orgs.service import find_org

    components = _components()
    catch_up(components.db)  # every event committed before the review is in it
    with components.db.sessions() as db:
        org, rows = access_review(db, Scope(None), find_org(db, vendor).id)
        typer.echo(json.dumps({"vendor": org.name, "users": [r.__dict__ for r in rows]}, default=str, indent=2))


@audit_app.command("disable-inactive")
def disable_inactive(days: int = typer.Option(None, help="default PHIGATE_AUDIT_INACTIVITY_DAYS")) -> None:
    """Disable practice and vendor accounts inactive for longer than the limit, recording why."""
    from gateway.auditor.review import disable_inactive as job

    names = job(_components(), _actor(), days)
    typer.echo(f"disabled {len(names)} account(s)" + (": " + ", ".join(names) if names else ""))


@audit_app.command("alerts")
def alerts() -> None:
    """Evaluate the alert rules now and deliver new flags to the sink."""
    from gateway.auditor.alerts import run

    raised, delivered = run(_components())
    typer.echo(f"{raised} alert(s) raised, {delivered} delivered")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(audit_app())
