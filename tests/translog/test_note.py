"""Checkpoints as C2SP signed notes."""

import base64
import hashlib

import pytest

from tests.translog.signer import TestSigner
from translog import note


@pytest.fixture
def key():
    return TestSigner()


def test_note_layout_key_id_and_verification(key):
    root = hashlib.sha256(b"root").digest()
    text = note.sign("example.org/log", 42, root, key)
    lines = text.split("\n")
    assert lines[:4] == ["example.org/log", "42", base64.b64encode(root).decode(), ""]
    dash, name, sig = lines[4].split(" ")
    assert dash == "\u2014" and name == "example.org/log" and lines[5] == ""
    raw = base64.b64decode(sig)
    expected_id = hashlib.sha256(b"example.org/log\n\x01" + key.public_key_raw()).digest()[:4]
    assert raw[:4] == expected_id and len(raw) == 68
    cp = note.verify(text, key.public_key_raw())
    assert (cp.origin, cp.tree_size, cp.root_hash) == ("example.org/log", 42, root)
    name, pub = note.parse_verifier_key(note.verifier_key("example.org/log", key.public_key_raw()))
    assert name == "example.org/log" and pub == key.public_key_raw()


@pytest.mark.parametrize(
    "edit",
    [
        lambda t: t.replace("\n42\n", "\n43\n"),  # claims a bigger tree
        lambda t: t.replace("example.org/log\n", "example.org/other\n", 1),  # another log
        lambda t: t[:-10] + ("A" if t[-10] != "A" else "B") + t[-9:],  # signature bit flip
    ],
)
def test_altered_notes_do_not_verify(key, edit):
    text = note.sign("example.org/log", 42, b"\x01" * 32, key)
    with pytest.raises(note.NoteError):
        note.verify(edit(text), key.public_key_raw(), "example.org/log")


def test_another_key_does_not_verify(key):
    text = note.sign("example.org/log", 1, b"\x02" * 32, key)
    with pytest.raises(note.NoteError):
        note.verify(text, TestSigner().public_key_raw())
