"""The API keeps its contract: schemathesis sends generated requests to every operation of the live
schema, as each role, and every answer must be one the schema declares (status, content type, body,
headers) and never a server error.

Path parameters are generated, and also taken from real objects (a transfer and its file, the BAA,
another user, a spare token of the caller...), so that operations answer with their objects and
not only with 404. Each role sweeps its own fresh database (the test is parametrized by role; the
components fixture empties the database after each), so what the administrator's sweep disables,
offboards or terminates cannot change what another role's sweep sees. Nothing is excluded; the
caller's own user and the token it sweeps with are not among the real objects, so that the sweep
does not end itself half-way.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as budget
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# A signed BAA is a PDF: sent as the raw bytes generated for it, like any binary body.
schemathesis.serializer.alias("application/pdf", "application/octet-stream")
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")  # tus PATCH bodies

ROLES = ("practice_staff", "practice_approver", "biller", "auditor", "admin")
# Per operation, role and generation mode (generated, invalid, with real objects). Both lanes, five
# roles: about 140 s of CPU time (2.4 min; 5 min of wall time on a busy two-core machine).
EXAMPLES = 8
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture
def settings(settings):
    """Every generated request comes from 127.0.0.1: lift the address limit of refusals, which would
    otherwise answer most of the sweep with 429 (tests/gateway/test_refusal_ledger.py covers it)."""
    return settings.model_copy(update={"ip_failure_limit": 1_000_000})


PDF = b"%PDF-1.7\n" + b"synthetic appeal attachment, no real patient data\n" * 50 + b"%%EOF\n"


def _world(components, factory) -> tuple[dict, dict[str, str]]:
    """A practice and a vendor with a BAA in force, one user of each role (and a spare), and their ids."""
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa

    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    with components.db.transaction() as db:
        baa = record_baa(db, practice, vendor, "BAA-SWEEP", clock.now() - timedelta(days=1), None, Actor.system())
        baa_id = baa.id
    users = {
        "practice_staff": factory.user("practice_staff", practice),
        "practice_approver": factory.user("practice_approver", practice),
        "biller": factory.user("biller", vendor),
        "auditor": factory.user("auditor", practice),
        "admin": factory.user("admin", operator),
    }
    spare = factory.user("practice_staff", practice)
    ids = {"baa_id": baa_id, "vendor_id": vendor.id, "user_id": spare.id, "target_id": practice.id, "seq": "1"}
    return users, ids


def _transfer(base_url: str, token: str, vendor_id: str) -> dict[str, str]:
    """A real transfer with one file, uploaded through the API by practice staff."""
    r = requests.post(
        f"{base_url}/api/v1/transfers",
        params={"partner_id": vendor_id},
        data=PDF,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/octet-stream",
            "X-Purpose": "SWEEP-1",
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote('appeal.pdf')}",
        },
        timeout=30,
    )
    assert r.status_code == 201, r.text
    transfer_id = r.json()["id"]
    r = requests.get(
        f"{base_url}/api/v1/transfers/{transfer_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return {"transfer_id": transfer_id, "file_id": r.json()["files"][0]["id"]}


def _token(components, user, name: str = "sweep") -> tuple[str, str]:
    """(id, raw value) of a new API token of `user`."""
    from gateway.audit.service import Actor
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    with components.db.transaction() as db:
        token, raw = create_api_token(db, components.settings, db.get_one(User, user.id), name, 30, Actor.system())
        return token.id, raw


def _sweep(
    operation, base_url: str, session: requests.Session, headers: dict[str, str], ids: dict, answered: set[int]
) -> list[str]:
    """Send EXAMPLES generated requests of each mode; the first failure of each distinct kind, as text."""
    found: dict[str, str] = {}
    modes = [operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE)]
    names = re.findall(r"{(\w+)}", operation.path)
    if names and all(name in ids for name in names):
        real = {name: ids[name] for name in names}
        modes.append(operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real))
    strategy = st.one_of(modes)

    @given(case=strategy)
    @budget(
        max_examples=len(modes) * EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call(base_url=base_url, session=session, headers=headers)
        answered.add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as exc:  # every failed check of this case
            key = f"{response.status_code} {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            found.setdefault(key, f"{operation.label}: {exc}\n{case.as_curl_command(headers=headers)}"[:3000])

    run()
    return list(found.values())


@pytest.mark.hostile_input
@pytest.mark.parametrize("role", ROLES)
def test_every_operation_keeps_its_contract(app, components, factory, live_server, role):
    users, ids = _world(components, factory)
    ids |= _transfer(live_server, _token(components, users["practice_staff"], "upload")[1], ids["vendor_id"])
    ids["token_id"], _ = _token(components, users[role], "spare")
    headers = {"Authorization": f"Bearer {_token(components, users[role])[1]}"}
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    answers: dict[str, set[int]] = {}
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            answers[operation.label] = set()
            failures += _sweep(operation, live_server, session, headers, ids, answers[operation.label])
    assert len(answers) == sum(len(ops) for ops in app.openapi()["paths"].values())
    # The sweep reached past the refusals: the caller stayed signed in throughout, and operations of every
    # role answered with their objects.
    succeeded = sorted(label for label, statuses in answers.items() if any(200 <= s < 300 for s in statuses))
    assert "GET /api/v1/auth/me" in succeeded and len(succeeded) >= 10, succeeded
    assert not failures, f"{len(failures)} contract failure(s) as {role}:\n\n" + "\n\n".join(failures)
