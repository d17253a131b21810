"""docs/encrypted-object-format.md's independent decryptor, run verbatim: its SQL finds a stored transfer's
objects, and its script (only the `cryptography` package) opens the file, its name and the note the gateway
stored, byte for byte; with another object's context it refuses."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text

from storage.checksums import crc32c_hex
from tests.support.recipes import Recipe, recipe
from tests.uploads.conftest import Tus, metadata

DOC = "encrypted-object-format.md"
# Three 1 MiB segments, the last one short: the counter and the last-segment flag both matter.
DATA = b"%PDF-1.7\n" + os.urandom(5 << 19) + b"\n%%EOF\n"
NAME = "Überweisung März (Kopie).pdf"
NOTE = "Bitte bis Freitag; Ref. 7 — ½ Seite fehlt"


@pytest.fixture(params=["python", "node"])
def decryptor(request, tmp_path) -> Recipe:
    node = request.getfixturevalue("node") if request.param == "node" else None
    return Recipe(DOC, "decrypt-object", request.param, tmp_path, node)


def _hex(value) -> str:
    return bytes(value).hex()


def local_store_file(payload: bytes, version: int = 2) -> bytes:
    """An object file of the local store as docs/encrypted-object-format.md lays it out (v1: before CRC32C)."""
    trailer: dict = {"metadata": {"format": "phg-stream-v1"}, "size": len(payload), "v": version}
    if version == 2:
        trailer["crc32c"] = crc32c_hex(payload)
    else:
        trailer["sha256"] = hashlib.sha256(payload).hexdigest()
    encoded = json.dumps(trailer, separators=(",", ":"), sort_keys=True).encode()
    return payload + encoded + len(encoded).to_bytes(8, "big") + b"PHGSTOR1"


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
    assert r.returncode != 0 and "refused: authentication failed" in r.stderr and not other.exists()
    r = decryptor.run("name", keyring, _hex(row["name_sealed"]), "0" * 32)
    assert r.returncode != 0 and "refused: authentication failed" in r.stderr


def test_the_recipe_opens_a_file_sent_as_a_resumable_upload(
    party, session_for, db, decryptor, settings, keyring_url, tmp_path
):
    """A file that arrived in tus parts keeps the upload's context (`upload`, not `transfer`), as the doc says."""
    tus = Tus(session_for(party.staff))
    meta = metadata(filename=NAME, partner_id=party.vendor.id, purpose="APPEAL-2001", note=NOTE)
    r = tus.create(len(DATA), partner_id=party.vendor.id, meta=meta, body=DATA)
    assert r.status_code == 201 and int(r.headers["Upload-Offset"]) == len(DATA), r.text
    upload_id = r.headers["Location"].rsplit("/", 1)[1]
    r = tus.client.post("/api/v1/uploads/transfers", json={"upload_ids": [upload_id]})
    assert r.status_code == 201, r.text
    transfer_id = r.json()["id"]

    row = db.execute(text(recipe(DOC, "find-transfer-objects", "sql")), {"transfer_id": transfer_id}).mappings().one()
    db.commit()
    context = row["context"] if isinstance(row["context"], str) else json.dumps(row["context"])
    assert json.loads(context) == {
        "practice": party.practice.id,
        "vendor": party.vendor.id,
        "upload": upload_id,
        "file": row["file_id"],
    }
    keyring, store = keyring_url.removeprefix("local://"), settings.storage_url.removeprefix("file://")
    out = tmp_path / "plaintext"
    r = decryptor.run("file", keyring, store, row["object_key"], _hex(row["wrapped_dek"]), context, out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == DATA
    assert decryptor.run("name", keyring, _hex(row["name_sealed"]), row["file_id"]).stdout == NAME + "\n"
    assert decryptor.run("note", keyring, _hex(row["note_sealed"]), transfer_id).stdout == NOTE + "\n"


def test_the_recipe_refuses_a_damaged_store_file(party, session_for, db, decryptor, settings, keyring_url, tmp_path):
    """The local store's trailer, as the doc lays it out, is what the recipe checks the file against."""
    staff = session_for(party.staff)
    r = staff.upload(party.vendor.id, data=DATA[:4096], name="short.pdf")
    assert r.status_code == 201, r.text
    row = (
        db.execute(text(recipe(DOC, "find-transfer-objects", "sql")), {"transfer_id": r.json()["id"]}).mappings().one()
    )
    db.commit()
    context = row["context"] if isinstance(row["context"], str) else json.dumps(row["context"])
    store = settings.storage_url.removeprefix("file://")
    h = hashlib.sha256(row["object_key"].encode()).hexdigest()
    path = Path(store, h[:2], h[2:4], row["object_key"].replace("/", "~"))
    original = path.read_bytes()
    payload = original[: len(original) - 16 - int.from_bytes(original[-16:-8], "big")]
    assert original == local_store_file(payload)  # exactly the layout the doc gives
    damaged = bytearray(original)
    damaged[100] ^= 1  # one bit of the first segment's ciphertext
    path.write_bytes(bytes(damaged))
    args = ("file", keyring_url.removeprefix("local://"), store, row["object_key"], _hex(row["wrapped_dek"]), context)
    r = decryptor.run(*args, tmp_path / "out")
    assert r.returncode != 0 and "refused: CRC32C differs from the trailer" in r.stderr

    # A file written before CRC32C (trailer v1, SHA-256) opens, and is checked with its SHA-256.
    path.write_bytes(local_store_file(payload, version=1))
    assert decryptor.run(*args, tmp_path / "old").returncode == 0 and (tmp_path / "old").read_bytes() == DATA[:4096]
    damaged = bytearray(local_store_file(payload, version=1))
    damaged[100] ^= 1
    path.write_bytes(bytes(damaged))
    r = decryptor.run(*args, tmp_path / "out")
    assert r.returncode != 0 and "refused: SHA-256 differs from the trailer" in r.stderr

    # A forger who rewrites the trailer too still fails the AEAD, and nothing is written.
    forged = bytearray(payload)
    forged[100] ^= 1
    path.write_bytes(local_store_file(bytes(forged)))
    r = decryptor.run(*args, tmp_path / "out")
    assert r.returncode != 0 and "refused: authentication failed" in r.stderr, r.stderr
    assert not (tmp_path / "out").exists()
