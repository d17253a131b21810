"""The progress bar and the schedule inside `phigate serve`."""

from __future__ import annotations

import io
import time

from sqlalchemy import func, select

from retention.models import Certificate


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_and_summarises_elsewhere():
    from gateway.cli_support import Bar

    tty = _Tty()
    bar = Bar("destroying", stream=tty, width=10)
    bar.start(4)
    bar.advance(2)
    bar._draw(force=True)
    bar.advance(2)
    bar.finish()
    out = tty.getvalue()
    assert "\r" in out and "[#####.....] 2/4" in out and "[##########] 4/4 objects" in out
    plain = io.StringIO()
    bar = Bar("destroying", stream=plain, width=10)
    bar.start(3)
    bar.advance(3)
    bar.finish()
    assert plain.getvalue().count("\n") == 1 and "3/3 objects" in plain.getvalue()


def test_scheduled_run_inside_serve(components, party, seeded, db):
    from gateway.jobs import serve_scheduler

    seeded(2, ended_days_ago=60)
    c = components
    c.settings = c.settings.model_copy(
        update={
            "retention_run_interval_seconds": 1,
            "audit_checkpoint_interval_seconds": 0,
            "outbox_retry_seconds": 0,
            "upload_expiry_interval_seconds": 0,
            "notify_interval_seconds": 0,
        }
    )
    scheduler = serve_scheduler(c)  # this process contends for leadership, alone, and wins
    # The refusal ledger's sweep runs every minute whatever the settings, and the audit queue's
    # integration every PHIGATE_AUDIT_INTEGRATE_SECONDS (default 1); both do nothing here.
    assert [job.name for job in scheduler.jobs] == ["audit-integrate", "retention", "address-windows"]
    scheduler.start()
    try:
        for _ in range(300):  # polls until the first tick has run; no timing is asserted
            count = db.scalar(select(func.count()).select_from(Certificate))
            db.commit()
            if count:
                break
            time.sleep(0.1)
    finally:
        scheduler.shutdown()
    cert = db.scalar(select(Certificate))
    db.commit()
    assert cert is not None and cert.objects == 2


def test_cli_policies_holds_dry_run_and_status(phigate, party, seeded, db):
    import json

    seeded(2, ended_days_ago=10)
    assert phigate("retention", "policy", "set", "--practice", party.practice.name, "--keep-days", "5").returncode == 0
    listed = phigate("retention", "policy", "list").stdout
    assert party.practice.id in listed and "keep_days=5" in listed
    bad = phigate("retention", "policy", "set", "--practice", party.practice.id, "--keep-days", "-1")
    assert bad.returncode == 1 and "invalid_keep_days" in bad.stderr
    placed = phigate("retention", "hold", "place", "vendor", party.vendor.id, "--reference", "MATTER-3")
    assert placed.returncode == 0
    hold_id = placed.stdout.split()[1]
    dry = json.loads(phigate("retention", "run", "--dry-run").stdout)
    assert dry["due"] == [] and dry["held"][0]["hold_id"] == hold_id and dry["held"][0]["objects"] == 2
    assert hold_id in phigate("retention", "status").stdout
    assert phigate("retention", "hold", "release", hold_id).returncode == 0
    dry = json.loads(phigate("retention", "run", "--dry-run").stdout)
    assert dry["due"][0]["objects"] == 2 and dry["due"][0]["policy"] == "practice"
    unknown = phigate("retention", "hold", "place", "vendor", "nope", "--reference", "X")
    assert unknown.returncode == 1 and "vendor_not_found" in unknown.stderr
