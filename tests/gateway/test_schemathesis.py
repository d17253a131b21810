"""The API keeps its contract: schemathesis sends generated requests to every operation of the live
schema, as each role, and every answer must be one the schema declares (status, content type, body,
headers) and never a server error.

Each role sweeps its own fresh database (the test is parametrized by role; the components fixture
empties the database after each), so what the administrator's sweep disables, offboards or
terminates cannot change what another role's sweep sees. Nothing is excluded.
"""

from __future__ import annotations

from datetime import timedelta

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

ROLES = ("practice_staff", "practice_approver", "biller", "auditor", "admin")
# Per operation, role and generation mode: the whole sweep (five roles, both modes) takes about
# two minutes on two cores, which is what the suite affords it.
EXAMPLES = 10
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


def _world(components, factory) -> dict[str, object]:
    """A practice and a vendor with a BAA in force, and one user of each role."""
    from gateway import clock
    from gateway.audit.service import Actor
    from gateway.baas.service import record_baa

    practice, vendor, operator = factory.org("practice"), factory.org("vendor"), factory.org("operator")
    with components.db.transaction() as db:
        record_baa(db, practice, vendor, "BAA-SWEEP", clock.now() - timedelta(days=1), None, Actor.system())
    return {
        "practice_staff": factory.user("practice_staff", practice),
        "practice_approver": factory.user("practice_approver", practice),
        "biller": factory.user("biller", vendor),
        "auditor": factory.user("auditor", practice),
        "admin": factory.user("admin", operator),
    }


def _token(components, user) -> str:
    from gateway.audit.service import Actor
    from gateway.auth.service import create_api_token
    from gateway.users.models import User

    with components.db.transaction() as db:
        _, raw = create_api_token(db, components.settings, db.get_one(User, user.id), "sweep", 30, Actor.system())
    return raw


def _sweep(operation, base_url: str, session: requests.Session, headers: dict[str, str]) -> list[str]:
    """Send EXAMPLES generated requests of each mode; the first failure of each distinct kind, as text."""
    found: dict[str, str] = {}
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @budget(
        max_examples=2 * EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case):
        response = case.call(base_url=base_url, session=session, headers=headers)
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
    users = _world(components, factory)
    headers = {"Authorization": f"Bearer {_token(components, users[role])}"}
    schema = schemathesis.openapi.from_dict(app.openapi())
    failures: list[str] = []
    swept = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            failures += _sweep(operation, live_server, session, headers)
            swept += 1
    assert swept == sum(len(ops) for ops in app.openapi()["paths"].values())
    assert not failures, f"{len(failures)} contract failure(s) as {role}:\n\n" + "\n\n".join(failures)
