"""One vocabulary of event actions: `record_event()` takes members of `Action` and nothing else."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.audit.actions import Action
from gateway.audit.models import AuditEvent
from gateway.audit.sequencer import seq_of
from gateway.audit.service import Actor, record_event, record_events_bulk

REPO = Path(__file__).resolve().parents[2]
# Everything that records events; the enumeration itself is the one place its strings are written.
# (bench/load.py is an HTTP client: its search filters are what any API caller would type.)
SOURCES = [
    p
    for d in ("gateway", "retention")
    for p in (REPO / d).rglob("*.py")
    if p != REPO / "gateway" / "audit" / "actions.py" and "migrations" not in p.parts
]
SOURCES.append(REPO / "bench" / "audit.py")


def _event_count(components) -> int:
    with components.db.sessions() as db:
        return db.scalar(select(func.count()).select_from(AuditEvent))


@pytest.mark.parametrize("action", ["auth.login.failed", "auth.login.faild"])
def test_record_event_refuses_a_bare_string_and_records_nothing(components, action):
    before = _event_count(components)
    with pytest.raises(TypeError, match="Action members"), components.db.transaction() as db:
        record_event(db, action, actor=Actor.system())  # type: ignore[arg-type]
    assert _event_count(components) == before


def test_bulk_append_refuses_a_bare_string_and_records_nothing(components):
    before = _event_count(components)
    with pytest.raises(TypeError, match="Action members"), components.db.transaction() as db:
        record_events_bulk(db, [{"action": Action.KEYS_ROTATED}, {"action": "keys.rotated"}])
    assert _event_count(components) == before


def test_a_member_is_stored_and_hashed_as_its_plain_string(components):
    with components.db.transaction() as db:
        event = record_event(db, Action.KEYS_ROTATED, actor=Actor.system())
    seq = seq_of(components.db, event)  # integrated: at the commit on SQLite, by the integrator on PostgreSQL
    with components.db.sessions() as db:
        stored = db.scalar(select(AuditEvent.action).where(AuditEvent.seq == seq))
    assert stored == "keys.rotated" and type(stored) is str


def test_members_are_namespaced_fit_the_column_and_say_what_happened():
    column = AuditEvent.__table__.c.action.type.length
    for action in Action:
        assert re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", action.value), action
        assert len(action.value) <= column, action
        assert action.description.endswith(".") and "|" not in action.description, action


def test_no_call_site_writes_an_action_as_a_string_literal():
    """A literal equal to an action, or passed to record_event(), outside actions.py is a second spelling."""
    values = {a.value for a in Action}
    found = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in values:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "record_event"
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
            ):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: record_event({node.args[1].value!r})")
    assert not found, "use Action members:\n" + "\n".join(found)


def test_the_docs_event_table_is_generated_from_the_enumeration():
    spec = importlib.util.spec_from_file_location("event_table", REPO / "scripts" / "event_table.py")
    assert spec and spec.loader
    event_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(event_table)
    doc = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    assert event_table.updated(doc) == doc, "run python scripts/event_table.py"
    for action in Action:
        assert f"| `{action.value}` | {action.description} |" in doc
