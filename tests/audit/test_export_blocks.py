"""Exports of a log of many blocks: paths built a block at a time verify, whole and filtered, and equal RFC 9162's."""

from __future__ import annotations

import json

from gateway.audit.actions import Action
from gateway.audit.service import Actor, record_events_bulk
from gateway.audit.tree import ShortReads, TreeReader
from gateway.auditor.export import ProofStream, start_export
from gateway.auditor.search import EventFilter, Scope
from translog import merkle
from translog.export import verify_export


def test_exports_of_many_blocks_verify_whole_and_filtered(components, signer, tmp_path):
    with components.db.transaction() as db:
        record_events_bulk(
            db,
            [{"action": Action.KEYS_REWRAPPED, "actor_user_id": f"u{i % 7}", "details": {"i": i}} for i in range(5000)],
        )
    for flt, expected in ((EventFilter(), None), (EventFilter(user_id="u3"), 714)):
        for fmt in ("csv", "jsonl"):
            chunks, _, size = start_export(components, Scope(None), flt, fmt, Actor.system())
            path = tmp_path / f"export.{fmt}"
            path.write_bytes(b"".join(chunks))
            report = verify_export(str(path), signer.public_key())
            assert report.ok, report.problem
            assert report.events == (size if expected is None else expected)
    lines = (tmp_path / "export.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"type": "end", "events": 714}


def test_block_paths_equal_the_rfc_9162_paths_for_dense_sparse_and_tail_leaves(components):
    with components.db.transaction() as db:
        record_events_bulk(db, [{"action": Action.KEYS_REWRAPPED, "details": {"i": i}} for i in range(4099)])
    size = 4099  # no stored nodes: every subtree comes from the leaves
    reader = TreeReader(ShortReads(components.db), size)
    wanted = [*range(1300), 1301, 2047, 2048, 3000, *range(4090, 4099)]
    proofs = ProofStream(ShortReads(components.db), size, " ")
    for index in wanted:
        path = merkle.inclusion_path(index, size, reader.subtree)
        assert proofs.path_text(index) == " ".join(h.hex() for h in path), index
