"""docs/encrypted-object-format.md's independent decryptor, run verbatim: its SQL finds a stored transfer's
objects, and its script (only the `cryptography` package) opens the file, its name and the note the gateway
stored, byte for byte; with another object's context it refuses."""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import quote

import pytest
from sqlalchemy import text

from tests.support.recipes import Recipe, recipe

DOC = "encrypted-object-format.md"
# Three 1 MiB segments, the last one short: the counter and the last-segment flag both matter.
DATA = b"%PDF-1.7\n" + os.urandom(5 << 19) + b"\n%%EOF\n"
NAME = "Überweisung März (Kopie).pdf"
NOTE = "Bitte bis Freitag; Ref. 7 — ½ Seite fehlt"


@pytest.fixture
def decryptor(tmp_path) -> Recipe:
    return Recipe(DOC, "decrypt-object", "python", tmp_path)


def _hex(value) -> str:
    return bytes(value).hex()


def test_the_recipe_opens_what_the_gateway_stored(party, session_for, db, decryptor, settings, keyring_url, tmp_path):
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=DATA, name=NAME, **{"X-Note": quote(NOTE)})
    assert r.status_code == 201, r.text
    transfer_id = r.json()["id"]

    rows = db.execute(text(recipe(DOC, "find-transfer-objects", "sql")), {"transfer_id": transfer_id}).mappings().all()
    db.commit()
    assert len(rows) == 1
    row = rows[0]
    context = row["context"] if isinstance(row["context"], str) else json.dumps(row["context"])
    assert json.loads(context) == {
        "practice": party.practice.id,
        "vendor": party.vendor.id,
        "transfer": transfer_id,
        "file": row["file_id"],
    }
    keyring = keyring_url.removeprefix("local://")
    store = settings.storage_url.removeprefix("file://")

    out = tmp_path / "plaintext"
    r = decryptor.run("file", keyring, store, row["object_key"], _hex(row["wrapped_dek"]), context, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == DATA and r.stdout.strip() == hashlib.sha256(DATA).hexdigest()

    r = decryptor.run("name", keyring, _hex(row["name_sealed"]), row["file_id"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == NAME + "\n"

    r = decryptor.run("note", keyring, _hex(row["note_sealed"]), transfer_id)
    assert r.returncode == 0, r.stderr
    assert r.stdout == NOTE + "\n"

    # The context is bound in: the same object under another file's context, or a name opened as
    # another file's, does not decrypt, and nothing is written.
    other = tmp_path / "other"
    wrong = json.dumps({**json.loads(context), "file": "0" * 32})
    r = decryptor.run("file", keyring, store, row["object_key"], _hex(row["wrapped_dek"]), wrong, other)
    assert r.returncode != 0 and "InvalidTag" in r.stderr and not other.exists()
    r = decryptor.run("name", keyring, _hex(row["name_sealed"]), "0" * 32)
    assert r.returncode != 0 and "InvalidTag" in r.stderr


def test_the_recipe_refuses_a_damaged_store_file(party, session_for, db, decryptor, settings, keyring_url, tmp_path):
    """The local store's trailer, as the doc lays it out, is what the recipe checks the file against."""
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=DATA[:4096], name="short.pdf")
    assert r.status_code == 201, r.text
    row = (
        db.execute(text(recipe(DOC, "find-transfer-objects", "sql")), {"transfer_id": r.json()["id"]})
        .mappings()
        .one()
    )
    db.commit()
    context = row["context"] if isinstance(row["context"], str) else json.dumps(row["context"])
    store = settings.storage_url.removeprefix("file://")
    h = hashlib.sha256(row["object_key"].encode()).hexdigest()
    path = os.path.join(store, h[:2], h[2:4], row["object_key"].replace("/", "~"))
    data = bytearray(open(path, "rb").read())
    data[100] ^= 1  # one bit of the first segment's ciphertext
    with open(path, "wb") as f:
        f.write(data)
    args = ("file", keyring_url.removeprefix("local://"), store, row["object_key"], _hex(row["wrapped_dek"]), context)
    r = decryptor.run(*args, tmp_path / "out")
    assert r.returncode != 0 and "refused: SHA-256 differs from the trailer" in r.stderr
