"""docs/integration.md's scripts (bash + curl and Python), run verbatim against a live gateway with real
users and tokens: a practice sends with purpose, note and recipients; the vendor collects with a SHA-256
check; the bytes that arrive are the bytes that were sent, and no download is spent twice."""

from __future__ import annotations

import os

import pytest

from tests.support.recipes import Recipe
from tests.transfers.conftest import events

GUIDE = "integration.md"


def pdf(label: str) -> bytes:
    return b"%PDF-1.7\n" + f"synthetic {label}, no real patient data\n".encode() * 300 + b"%%EOF\n"


@pytest.fixture
def scripts(tmp_path, shell) -> dict[str, Recipe]:
    made = {}
    for name in ("send-file", "fetch-inbox"):
        made[f"{name} bash"] = Recipe(GUIDE, name, "bash", tmp_path, shell)
        made[f"{name} python"] = Recipe(GUIDE, name, "python", tmp_path)
    return made


def token_for(session) -> str:
    """A personal API token made as the guide says: signed in with password and TOTP, then a fresh code."""
    r = session.client.post(
        "/api/v1/auth/tokens", json={"name": "practice system", "days": 30, "code": session.fresh_code()}
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def note_of(components, db, transfer_id: str) -> str:
    from crypto import unseal
    from gateway.transfers.models import Transfer
    from gateway.transfers.upload import note_context

    db.expire_all()
    transfer = db.get(Transfer, transfer_id)
    note = unseal(components.keys, transfer.note_sealed, note_context(transfer_id)).decode()
    db.commit()
    return note


def test_the_guides_scripts_send_and_collect_files(party, session_for, live_server, scripts, tmp_path, components, db):
    staff, approver, biller = session_for(party.staff), session_for(party.approver), session_for(party.biller)
    practice_env = {"PHIGATE_URL": live_server, "PHIGATE_TOKEN": token_for(staff)}
    vendor_env = {"PHIGATE_URL": live_server, "PHIGATE_TOKEN": token_for(biller)}
    [partner] = staff.client.get("/api/v1/partners").json()
    biller_name = next(b["full_name"] for b in partner["billers"] if b["id"] == party.biller.id)
    inbox = tmp_path / "inbox"

    # bash: send with a note and one named biller, the approver approves, the vendor collects.
    first = tmp_path / "appeal packet é.pdf"
    # Over 1 MiB: curl sends `Expect: 100-continue`, and the file spans several encrypted segments.
    first.write_bytes(pdf("appeal packet") + os.urandom(3 << 19))
    r = scripts["send-file bash"].run(
        first, partner["name"], "APPEAL-2291", "Second request; see p. 3 & 4", biller_name, env=practice_env
    )
    assert r.returncode == 0, r.stderr
    first_id, status = r.stdout.split()
    assert status == "awaiting_approval"
    transfer = staff.client.get(f"/api/v1/transfers/{first_id}").json()
    assert transfer["purpose"] == "APPEAL-2291" and transfer["recipient_ids"] == [party.biller.id]
    assert [f["name"] for f in transfer["files"]] == ["appeal packet é.pdf"]
    assert note_of(components, db, first_id) == "Second request; see p. 3 & 4"
    assert approver.approve(first_id, days=7).status_code == 200

    r = scripts["fetch-inbox bash"].run(inbox, env=vendor_env)
    assert r.returncode == 0, r.stderr
    saved = inbox / first_id / "appeal packet é.pdf"
    assert r.stdout.splitlines() == [f"saved {saved}"]
    assert saved.read_bytes() == first.read_bytes()

    # Python: the same with the other script pair; the file already saved is not downloaded again.
    second = tmp_path / "EOB 2026-11.pdf"
    second.write_bytes(pdf("explanation of benefits"))
    r = scripts["send-file python"].run(
        second, partner["name"], "CLAIM-88", "--note", "Für die Akte", "--biller", biller_name, env=practice_env
    )
    assert r.returncode == 0, r.stderr
    second_id, status = r.stdout.split()
    assert status == "awaiting_approval" and second_id != first_id
    assert staff.client.get(f"/api/v1/transfers/{second_id}").json()["recipient_ids"] == [party.biller.id]
    assert note_of(components, db, second_id) == "Für die Akte"
    assert approver.approve(second_id, days=7).status_code == 200

    r = scripts["fetch-inbox python"].run(inbox, env=vendor_env)
    assert r.returncode == 0, r.stderr
    again = inbox / second_id / "EOB 2026-11.pdf"
    assert sorted(r.stdout.splitlines()) == sorted([f"have {saved}", f"saved {again}"])
    assert again.read_bytes() == second.read_bytes()

    # Run again (either language): everything is there, nothing is downloaded twice.
    r = scripts["fetch-inbox bash"].run(inbox, env=vendor_env)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.splitlines()) == sorted([f"have {saved}", f"have {again}"])
    started = events(db, "transfer.download.started")
    assert sorted(e.target_id for e in started) == sorted([first_id, second_id])
    assert not list(inbox.rglob("*.part"))

    # A biller's token sends back with the same script: the practice is its partner, delivered at once.
    back = tmp_path / "corrected claim.pdf"
    back.write_bytes(pdf("corrected claim"))
    r = scripts["send-file bash"].run(back, party.practice.name, "APPEAL-2291-R", env=vendor_env)
    assert r.returncode == 0, r.stderr
    back_id, status = r.stdout.split()
    assert status == "delivered"
    assert staff.client.get(f"/api/v1/transfers/{back_id}").json()["direction"] == "inbound"


@pytest.mark.parametrize("language", ["bash", "python"])
def test_the_send_script_stops_with_the_gateways_error(
    party, session_for, live_server, scripts, tmp_path, db, language
):
    """A refused request ends the script with the status, code and message, and nothing is sent."""
    staff = session_for(party.staff)
    file = tmp_path / "appeal.pdf"
    file.write_bytes(pdf("appeal"))
    send = scripts[f"send-file {language}"]

    r = send.run(
        file, "No Such Vendor", "APPEAL-1", env={"PHIGATE_URL": live_server, "PHIGATE_TOKEN": token_for(staff)}
    )
    assert r.returncode != 0 and 'no BAA in force with "No Such Vendor"' in r.stderr, r.stderr

    r = send.run(file, party.vendor.name, "APPEAL-1", env={"PHIGATE_URL": live_server, "PHIGATE_TOKEN": "phg_madeup"})
    assert r.returncode != 0 and "HTTP 401 invalid_token: " in r.stderr, r.stderr

    auditor = session_for(party.auditor)
    r = send.run(
        file, party.vendor.name, "APPEAL-1", env={"PHIGATE_URL": live_server, "PHIGATE_TOKEN": token_for(auditor)}
    )
    assert r.returncode != 0 and "HTTP 403 forbidden: " in r.stderr, r.stderr
    assert staff.client.get("/api/v1/transfers").json() == []
    assert events(db, "transfer.created") == []


def test_the_get_token_script_makes_a_token_that_works(party, live_server, shell, tmp_path, client, fake_clock):
    """Password and two codes on its standard input (as a person types them), the token on its output."""
    user = party.staff
    first = user.code()
    fake_clock.advance(seconds=30)
    second = user.code()  # the next step: within the allowed drift while the clock stands still
    fake_clock.advance(seconds=-30)
    get_token = Recipe(GUIDE, "get-token", "bash", tmp_path, shell)
    r = get_token.run(
        user.username,
        "claims export",
        30,
        env={"PHIGATE_URL": live_server},
        stdin=f"{user.password}\n{first}\n{second}\n",
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("phg_")
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["username"] == user.username
    tokens = client.get("/api/v1/auth/tokens", headers={"Authorization": f"Bearer {token}"}).json()
    assert [(t["name"], t["revoked_at"]) for t in tokens] == [("claims export", None)]

    # The same code twice is refused (a code is accepted once), and the script says why.
    r = get_token.run(
        user.username, "again", 30, env={"PHIGATE_URL": live_server}, stdin=f"{user.password}\n{second}\n{second}\n"
    )
    assert r.returncode != 0 and "HTTP 401 login_failed: " in r.stderr, r.stderr
