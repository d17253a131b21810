"""The batch paths (many leaves, a whole block, many rows at once) give exactly what the one-by-one paths give."""

from __future__ import annotations

import csv
import io
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from translog import merkle
from translog.export import export_csv, export_jsonl, restore
from translog.leaf import FIELDS, VERSION, details_text, leaf_hash_text, leaf_hashes_text

# Strings that need escaping, look like the batch's own row separator, or hold what CSV must guard.
AWKWARD = [
    "plain",
    'a "quoted" word',
    "back\\slash",
    f'], ["{VERSION}", 2, "x',
    "Navigateur (é) ✓",
    "tab\tnew\nline\r",
    "\x7f\x01",
    "=SUM(1)",
    "+1",
    "@cmd",
    "-1",
    "a,b",
    "'quoted",
    "None",
    "null",
    '"None"',
    "",
]
texts = st.one_of(st.none(), st.sampled_from(AWKWARD), st.text(max_size=12))


def _row(seq: int, values: list) -> tuple:
    details = {"i": seq, "note": values[0] or ""}
    return (seq, "2026-01-02T03:04:05.678901Z", *values[:10], details_text(details))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.lists(texts, min_size=10, max_size=10), min_size=1, max_size=20))
def test_leaf_hashes_of_a_batch_are_those_of_each_row(values):
    rows = [_row(seq, v) for seq, v in enumerate(values, 1)]
    assert leaf_hashes_text(rows) == [leaf_hash_text(*row) for row in rows]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(texts, min_size=10, max_size=10), min_size=1, max_size=6), st.integers(0, 5), st.integers(2, 11)
)
def test_a_batch_with_a_field_that_is_not_text_hashes_as_each_row(values, which, column):
    # A number or a boolean where text belongs: JSON writes it otherwise than a string.
    rows = [_row(seq, v) for seq, v in enumerate(values, 1)]
    row = list(rows[which % len(rows)])
    row[column] = [5, True, 1.5, 7, None, "plain"][which]
    rows[which % len(rows)] = tuple(row)
    assert leaf_hashes_text(rows) == [leaf_hash_text(*row) for row in rows]


def test_a_sequence_number_that_is_not_an_integer_is_encoded_as_json_does():
    rows = [_row(1, ["a"] * 10), (True, *_row(2, ["b"] * 10)[1:]), (3.0, *_row(3, ["c"] * 10)[1:])]
    assert leaf_hashes_text(rows) == [leaf_hash_text(*row) for row in rows]
    assert leaf_hashes_text(rows[:1]) == [leaf_hash_text(*rows[0])]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 1200), st.integers(0, 1200), st.sampled_from([None, 1, 8, 9]))
def test_frontier_extend_by_blocks_equals_leaf_by_leaf(first, more, min_level):
    leaves = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(first + more)]
    seen_blocks: list = []
    seen_leaves: list = []
    by_blocks = merkle.Frontier(on_node=None if min_level is None else lambda *n: seen_blocks.append(n))
    by_leaves = merkle.Frontier(on_node=None if min_level is None else lambda *n: seen_leaves.append(n))
    by_blocks.min_level = by_leaves.min_level = min_level or 1
    by_blocks.extend(leaves[:first])
    by_blocks.extend(leaves[first:])
    for leaf in leaves:
        by_leaves.append(leaf)
    assert by_blocks.nodes == by_leaves.nodes and by_blocks.size == by_leaves.size == first + more
    assert by_blocks.root() == merkle.root_of(leaves)
    assert seen_blocks == seen_leaves


def _records(rows, paths):
    def records(sep: str):
        for row in rows:
            yield row, "ab" * 32, sep.join(paths[row[0]])

    return records


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(texts, min_size=10, max_size=10), min_size=1, max_size=8))
def test_export_lines_decode_to_the_fields_they_were_given(values):
    rows = [_row(seq, v) for seq, v in enumerate(values, 1)]
    paths = {row[0]: ["cd" * 32] * (row[0] % 3) for row in rows}
    header = {"format": "x"}
    lines = b"".join(export_jsonl(_records(rows, paths), "note", header)).decode().splitlines()
    events = [json.loads(line) for line in lines[1:-1]]
    for row, event in zip(rows, events, strict=True):
        assert [event[name] for name in FIELDS[:12]] == list(row[:12])
        assert event["details"] == json.loads(row[12]) and event["inclusion_path"] == paths[row[0]]
        assert event["type"] == "event" and event["leaf_hash"] == "ab" * 32
    csv_text = b"".join(export_csv(_records(rows, paths), "note", header)).decode()
    cells = list(csv.reader(io.StringIO(csv_text, newline="")))
    for row, out in zip(rows, cells[1 : 1 + len(rows)], strict=True):
        assert out[:2] == [str(row[0]), row[1]]
        assert [None if c == "" else restore(c) for c in out[2:12]] == [v or None for v in row[2:12]]
        assert json.loads(out[12]) == json.loads(row[12]) and out[14].split() == paths[row[0]]
