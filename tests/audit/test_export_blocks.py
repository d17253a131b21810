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


def _export_and_verify(components, signer, tmp_path, filtered: EventFilter, matching: int) -> None:
    """Whole and filtered, CSV and JSON Lines: each export verifies and holds the events it should."""
    for flt, expected in ((EventFilter(), None), (filtered, matching)):
        for fmt in ("csv", "jsonl"):
            chunks, _, size = start_export(components, Scope(None), flt, fmt, Actor.system())
            path = tmp_path / f"export.{fmt}"
            path.write_bytes(b"".join(chunks))
            report = verify_export(str(path), signer.public_key())
            assert report.ok, report.problem
            assert report.events == (size if expected is None else expected)


def test_exports_of_many_blocks_verify_whole_and_filtered(components, signer, tmp_path):
    with components.db.transaction() as db:
        record_events_bulk(
            db,
            [{"action": Action.KEYS_REWRAPPED, "actor_user_id": f"u{i % 7}", "details": {"i": i}} for i in range(5000)],
        )
    _export_and_verify(components, signer, tmp_path, EventFilter(user_id="u3"), 714)
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


def test_rows_streamed_in_many_fetches_are_the_rows_of_one_read(components):
    from gateway.audit.tree import event_chunks

    with components.db.transaction() as db:
        record_events_bulk(db, [{"action": Action.KEYS_REWRAPPED, "details": {"i": i}} for i in range(100)])
    whole = [tuple(row) for rows in event_chunks(components.db, 0, None, None, 10_000) for row in rows]
    pieces = list(event_chunks(components.db, 0, None, None, 7))
    assert [tuple(row) for rows in pieces for row in rows] == whole
    assert [row[0] for row in whole] == list(range(1, 101))
    assert [len(rows) for rows in pieces] == [7] * 14 + [2]


def test_exports_read_in_many_chunks_with_awkward_cells_verify_whole_and_filtered(
    components, signer, tmp_path, monkeypatch
):
    from gateway.auditor import export as export_module

    # Small reads: the first chunk, the driver's own fetches after it, batches of mixed cells.
    monkeypatch.setattr(export_module, "CHUNK", 333)
    users = [None, "u1", "=cmd", 'a "quoted", word', "u1", "-1"]
    with components.db.transaction() as db:
        record_events_bulk(
            db,
            [
                {
                    "action": Action.KEYS_REWRAPPED,
                    "actor_user_id": users[i % 6],
                    "ip": None if i % 5 else "192.0.2.9",
                    "details": {"i": i},
                }
                for i in range(1500)
            ],
        )
    _export_and_verify(components, signer, tmp_path, EventFilter(user_id="u1"), 500)
    events = [json.loads(line) for line in (tmp_path / "export.jsonl").read_text().splitlines()[1:-1]]
    assert [e["seq"] for e in events] == [i + 1 for i in range(1500) if i % 6 in (1, 4)]
