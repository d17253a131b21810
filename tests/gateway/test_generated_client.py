"""An integrator's journey through a client generated from the live schema, with no hand-written request code.

The schema is fetched (signed in) from the gateway served by uvicorn, `openapi-python-client`
generates a package from it (with docs/openapi-python-client.yaml, and no warnings), and every
step goes through that package: sign-in (password, then TOTP), API tokens, partner discovery,
upload, approval, the biller's download and the auditor's export. A header the schema declares
wrongly must break the journey: the typo tests rename one in the schema and watch it fail at the
server with the gateway's own error.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import subprocess
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import api_login
from tests.transfers.conftest import PDF, record_baa

if TYPE_CHECKING:
    from tests.conftest import TestUser

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "docs" / "openapi-python-client.yaml"
PACKAGE = "phi_gate_client"
# How long a request may take before the test calls it hung: httpx's default of 5 s failed once on a CI
# machine busy with the rest of the suite, where a slow answer is not what this test is about.
PATIENCE = 60.0


@dataclass
class People:
    staff: TestUser
    approver: TestUser
    biller: TestUser
    auditor: TestUser
    admin: TestUser
    vendor_id: str
    baa_id: str


@pytest.fixture
def people(components, factory) -> People:
    practice, vendor = factory.org("practice"), factory.org("vendor")
    baa_id = record_baa(components, practice, vendor)
    return People(
        staff=factory.user("practice_staff", practice),
        approver=factory.user("practice_approver", practice),
        biller=factory.user("biller", vendor),
        auditor=factory.user("auditor", practice),
        admin=factory.user("admin", factory.org("operator")),
        vendor_id=vendor.id,
        baa_id=baa_id,
    )


def live_schema(server: str, user: TestUser, clock) -> dict[str, Any]:
    """The schema as an integrator gets it: signed in (it answers nobody else)."""
    with httpx.Client(base_url=server, timeout=PATIENCE) as http:
        api_login(http, user, clock)
        r = http.get("/api/openapi.json")
        assert r.status_code == 200, r.text
        return r.json()


def generate(schema: dict[str, Any], where: Path) -> types.ModuleType:
    """Generate the client package from `schema` into `where` and import it; the generator must not warn."""
    where.mkdir()
    path = where / "openapi.json"
    path.write_text(json.dumps(schema))
    # The generator formats its output with ruff (its post-hooks): the one installed beside this Python.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(path),
            "--config",
            str(CONFIG),
            "--meta",
            "none",
            "--output-path",
            str(where / PACKAGE),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=where,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # Its only line on success; any warning (a skipped operation, an unknown media type) fails here.
    assert output.strip() == f"Generating {where / PACKAGE}", output
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # a previous test's client
    sys.path.insert(0, str(where))
    try:
        return importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))


class StepFailed(Exception):
    def __init__(self, step: str, response):
        super().__init__(f"{step}: {response.status_code} {response.content[:300]!r}")
        self.step = step
        self.status = response.status_code
        self.error = json.loads(response.content).get("error", {}) if response.content.startswith(b"{") else {}


class Journey:
    """The generated package, and each step of the journey as an integrator writes it with that package."""

    def __init__(self, client: types.ModuleType, server: str, clock):
        self.pkg = client
        self.server = server
        self.clock = clock
        self.opened: list[Any] = []

    def models(self) -> Any:
        return importlib.import_module(f"{PACKAGE}.models")

    def file(self, data: bytes, name: str, media_type: str) -> Any:
        return importlib.import_module(f"{PACKAGE}.types").File(
            payload=io.BytesIO(data), file_name=name, mime_type=media_type
        )

    def call(self, step: str, operation: str, expected: int, **kwargs) -> Any:
        """One operation (`<tag>.<operation id>`) through its generated `sync_detailed`: the response (with
        `.parsed`), or StepFailed when its status is not the one `expected`."""
        endpoint = importlib.import_module(f"{PACKAGE}.api.{operation}")
        response = endpoint.sync_detailed(**kwargs)
        if response.status_code != expected:
            raise StepFailed(step, response)
        return response

    def fresh_code(self, user: TestUser) -> str:
        """A TOTP code of a step nobody has used (the gateway refuses a replayed one)."""
        code = user.code()
        self.clock.advance(seconds=30)
        return code

    def sign_in(self, user: TestUser) -> Any:
        """Password, then TOTP, on a cookie session; then a personal API token, the client the rest uses."""
        models = self.models()
        session = self.pkg.Client(base_url=self.server, timeout=httpx.Timeout(PATIENCE))
        self.opened.append(session)
        stage = self.call(
            "login",
            "auth.login",
            200,
            client=session,
            body=models.LoginIn(username=user.username, password=user.password),
        ).parsed
        assert stage.stage == "mfa"
        stage = self.call(
            "mfa",
            "auth.mfa",
            200,
            client=session,
            body=models.CodeIn(code=self.fresh_code(user)),
            x_csrf_token=stage.csrf_token,
        ).parsed
        assert stage.stage == "full" and stage.must_change_password is False
        created = self.call(
            "create token",
            "auth.create_token",
            201,
            client=session,
            body=models.TokenCreateIn(name="practice integration", code=self.fresh_code(user), days=1),
            x_csrf_token=stage.csrf_token,
        ).parsed
        assert created.token.startswith("phg_")
        client = self.pkg.AuthenticatedClient(
            base_url=self.server, token=created.token, timeout=httpx.Timeout(PATIENCE)
        )
        self.opened.append(client)
        return client

    def run(self, people: People, data: bytes) -> dict[str, Any]:
        """The whole journey; returns what the checks need."""
        models = self.models()

        staff = self.sign_in(people.staff)
        partners = self.call("partners", "partners.list_partners", 200, client=staff).parsed
        vendor = next(p for p in partners if p.id == people.vendor_id)
        assert vendor.kind == "vendor" and people.biller.id in [b.id for b in vendor.billers]

        created = self.call(
            "upload",
            "transfers.create_transfer",
            201,
            client=staff,
            body=self.file(data, "appeal.pdf", "application/octet-stream"),
            partner_id=vendor.id,
            biller_id=[people.biller.id],
            content_disposition="attachment; filename*=UTF-8''appeal%20%C3%A9.pdf",
            x_purpose="APPEAL-1001",
            x_note="synthetic%20note",
        ).parsed
        assert created.status.value == "awaiting_approval"

        approver = self.sign_in(people.approver)
        queue = self.call("approvals", "transfers.approvals", 200, client=approver).parsed
        assert created.id in [t.id for t in queue]
        approved = self.call(
            "approve",
            "transfers.approve",
            200,
            client=approver,
            transfer_id=created.id,
            body=models.ApproveIn(days=3, code=self.fresh_code(people.approver)),
        ).parsed
        assert approved.status.value == "approved"

        biller = self.sign_in(people.biller)
        inbox = self.call("inbox", "transfers.inbox", 200, client=biller).parsed
        transfer = next(t for t in inbox if t.id == created.id)
        assert transfer.purpose == "APPEAL-1001" and transfer.files[0].name == "appeal é.pdf"
        download = self.call(
            "download",
            "transfers.download_file",
            200,
            client=biller,
            transfer_id=transfer.id,
            file_id=transfer.files[0].id,
        )

        auditor = self.sign_in(people.auditor)
        events = self.call("events", "audit.list_events", 200, client=auditor, target_id=created.id).parsed
        assert "transfer.approved" in [e.action for e in events.items]
        review = self.call("access review", "audit.access_review", 200, client=auditor, vendor_id=vendor.id).parsed
        assert people.biller.id in [u.user_id for u in review.users]
        export = self.call("export", "audit.export_csv", 200, client=auditor, target_id=created.id)
        return {"transfer": transfer, "download": download, "export": export}

    def close(self) -> None:
        for client in self.opened:
            client.get_httpx_client().close()


@pytest.fixture
def journey(live_server, people, fake_clock, tmp_path):
    opened: list[Journey] = []

    def make(mutate=None) -> Journey:
        schema = live_schema(live_server, people.staff, fake_clock)
        if mutate is not None:
            mutate(schema)
        j = Journey(generate(schema, tmp_path / f"client{len(opened)}"), live_server, fake_clock)
        opened.append(j)
        return j

    yield make
    for j in opened:
        j.close()


def test_the_journey_runs_through_the_generated_client(journey, people):
    data = PDF + hashlib.sha256(b"one synthetic file").digest()
    done = journey().run(people, data)

    transfer, download = done["transfer"], done["download"]
    assert download.content == data, "the biller gets the bytes the practice sent"
    assert hashlib.sha256(download.parsed.payload.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert transfer.files[0].sha256 == hashlib.sha256(data).hexdigest() == download.headers["x-content-sha256"]
    assert download.headers["content-type"] == "application/octet-stream"

    export = done["export"]
    assert export.headers["content-type"].startswith("text/csv")
    rows = export.parsed.splitlines()
    assert any(f"{transfer.id}" in row and "transfer.approved" in row for row in rows), rows[:5]
    assert any("transfer.download.completed" in row for row in rows), "the download is in the auditor's export"


def test_binary_and_multipart_bodies_go_through_the_generated_client(journey, people):
    """The bodies a generator skips unless they are described: several files as multipart, a signed BAA as PDF."""
    j = journey()
    models = j.models()

    staff = j.sign_in(people.staff)
    files = [j.file(PDF, f"part {n}.pdf", "application/pdf") for n in (1, 2)]
    body = models.CreateTransferFilesBody(partner_id=people.vendor_id, purpose="APPEAL-1002", files=files)
    created = j.call("multipart upload", "transfers.create_transfer", 201, client=staff, body=body).parsed
    transfer = j.call("get", "transfers.get_transfer", 200, client=staff, transfer_id=created.id).parsed
    assert sorted(f.name for f in transfer.files) == ["part 1.pdf", "part 2.pdf"]

    admin = j.sign_in(people.admin)
    copy = PDF + b"% signed\n"
    pdf = j.file(copy, "baa.pdf", "application/pdf")
    j.call("store BAA copy", "baas.put_signed_copy", 200, client=admin, baa_id=people.baa_id, body=pdf)
    back = j.call("read BAA copy", "baas.get_signed_copy", 200, client=admin, baa_id=people.baa_id)
    assert back.headers["content-type"] == "application/pdf"
    assert back.parsed.payload.read() == copy
    assert back.headers["x-content-sha256"] == hashlib.sha256(copy).hexdigest()


def _rename_header(operation_id: str, name: str, typo: str):
    def mutate(schema: dict[str, Any]) -> None:
        operations = [
            op for path in schema["paths"].values() for op in path.values() if op["operationId"] == operation_id
        ]
        assert len(operations) == 1
        params = [p for p in operations[0]["parameters"] if p["in"] == "header" and p["name"] == name]
        assert len(params) == 1, f"{operation_id} declares no header {name}"
        params[0]["name"] = typo

    return mutate


@pytest.mark.parametrize(
    ("operation_id", "header", "step", "status", "code"),
    [
        ("create_transfer", "X-Purpose", "upload", 422, "invalid_purpose"),
        ("create_transfer", "Content-Disposition", "upload", 422, "invalid_file_name"),
        ("mfa", "X-CSRF-Token", "mfa", 403, "csrf_failed"),
    ],
)
def test_a_typo_in_a_declared_header_breaks_the_journey(journey, people, operation_id, header, step, status, code):
    # `X_Purpose` for `X-Purpose`: the generated keyword is the same, so the journey's code still runs, and
    # the client sends a header the gateway does not read.
    broken = journey(_rename_header(operation_id, header, header.replace("-", "_")))
    with pytest.raises(StepFailed) as failed:
        broken.run(people, PDF)
    assert (failed.value.step, failed.value.status, failed.value.error.get("code")) == (step, status, code)
