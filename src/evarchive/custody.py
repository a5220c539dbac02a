"""The custody log: an append-only, hash-chained record of every event that touches evidence.

Each entry's hash covers its own fields and the previous entry's hash, so removing,
reordering or editing an entry breaks the chain from that point on. An entry's ``details``
carry the facts it vouches for (for a capture: the capture row's evidence fields and the
record hashes), so a catalogue row edited after the fact no longer matches its entry.

This module writes the log. Checking it (the chain, signatures, what each entry vouches for and
the rows no entry vouches for) is verify's: `verify/log.py` and `verify/rows.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import sqlite_utils

from . import signing
from .archive import Archive, keys_dir_of
from .catalogue import insert, one, path_value, to_json, transaction, utc_now

GENESIS_HASH = "0" * 64


def entry_hash(seq: int, at: str, event: str, subject: str | None, details_json: str,
               prev_hash: str) -> str:
    """SHA-256 over the canonical serialisation of one entry's fields.

    The same bytes as ``to_json`` of the whole entry (keys sorted, no spaces), built around the
    stored ``details`` text instead of re-parsing it: the hash covers exactly what is stored.
    """
    def text(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    body = (f'{{"at":{text(at)},"details":{details_json},"event":{text(event)},'
            f'"prev_hash":{text(prev_hash)},"seq":{int(seq)},"subject":{text(subject)}}}')
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def head(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The newest entry, or None for an empty log."""
    return one(db, "SELECT * FROM custody_log ORDER BY seq DESC LIMIT 1")


def append(db: sqlite_utils.Database, event: str, subject: str | None,
           details: dict[str, Any]) -> dict[str, Any]:
    """Append one entry; joins the caller's transaction so rows and entry commit together."""
    return append_many(db, [(event, subject, details)])[0]


def append_many(db: sqlite_utils.Database,
                items: list[tuple[str, str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Append entries in order, reading the head and the key once (a capture batch commits at once)."""
    rows = []
    with transaction(db):
        last = head(db)
        seq = last["seq"] if last else 0
        prev = last["entry_hash"] if last else GENESIS_HASH
        key = load_active_private(db)
        for event, subject, details in items:
            seq += 1
            at = utc_now()
            details_json = to_json(details)
            digest = entry_hash(seq, at, event, subject, details_json, prev)
            row = {"seq": seq, "at": at, "event": event, "subject": subject,
                   "details": details_json, "prev_hash": prev, "entry_hash": digest,
                   "signature": signing.sign_hash(key, digest) if key is not None else None}
            insert(db, "custody_log", row)
            rows.append(row)
            prev = digest
    return rows


# --------------------------------------------------------------------------- signing
# When a key has been introduced (a ``keys-generate`` entry and a ``signing_keys`` row),
# every later entry must carry its signature; verify reports unsigned ones. The private key
# is read from EVARCHIVE_SIGNING_KEY or the archive's keys/ directory, never the catalogue.

_KEY_CACHE: dict[str, tuple[float, Any]] = {}


def catalogue_path(db: sqlite_utils.Database) -> Path | None:
    # As bytes: the path may hold bytes that are not UTF-8, which SQLite cannot return as text.
    row = db.execute("SELECT CAST(file AS BLOB) FROM pragma_database_list WHERE name = 'main'").fetchone()
    return Path(os.fsdecode(row[0])) if row and row[0] else None


def active_key(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The signing_keys row in force (the newest not retired), if the table exists."""
    if not db["signing_keys"].exists():
        return None
    return one(db, "SELECT * FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, "
                   "rowid DESC LIMIT 1")


def private_key_path(db: sqlite_utils.Database, key_row: dict[str, Any]) -> Path | None:
    env = os.environ.get(signing.ENV_SIGNING_KEY)
    if env:
        return Path(env)
    if key_row.get("private_key_path"):
        return Path(os.fsdecode(key_row["private_key_path"]))
    cat = catalogue_path(db)
    return signing.default_private_path(keys_dir_of(cat.parent)) if cat else None


def introduce_key(archive: Archive, private_path: Path | None = None, *, overwrite: bool = False) -> signing.KeyPair:
    """Generate a key pair and put it in force: a signing_keys row (public part only) and a
    ``keys-generate`` log entry that the new key itself signs (proof of possession)."""
    path = private_path or signing.default_private_path(archive.keys_dir)
    pair = signing.generate(path, overwrite=overwrite)
    db = archive.db
    with transaction(db):
        now = utc_now()
        db.execute("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL", [now])
        insert(db, "signing_keys", {
            "key_id": pair.key_id, "public_key_pem": pair.public_pem, "created_at": now,
            "private_key_path": None if private_path is None else path_value(path.resolve())})
        append(db, "keys-generate", pair.key_id, {
            "algorithm": "ed25519", "public_key_pem": pair.public_pem})
    return pair


def load_active_private(db: sqlite_utils.Database) -> Any:
    """The private key for the active key id, or None when unavailable (entry stays unsigned)."""
    key_row = active_key(db)
    if key_row is None:
        return None
    path = private_key_path(db, key_row)
    if path is None or not path.exists():
        return None
    cache_key = f"{path}:{key_row['key_id']}"
    mtime = path.stat().st_mtime
    cached = _KEY_CACHE.get(cache_key)
    if cached and cached[0] == mtime:
        return cached[1]
    key = signing.load_private(path)
    if signing.key_id(key.public_key()) != key_row["key_id"]:
        key = None  # a different key sits at that path: never sign with it
    _KEY_CACHE[cache_key] = (mtime, key)
    return key


def _sign(db: sqlite_utils.Database, digest: str) -> str | None:
    key = load_active_private(db)
    return signing.sign_hash(key, digest) if key is not None else None


def entries(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    return list(db.query("SELECT * FROM custody_log ORDER BY seq"))


def sign_pending(db: sqlite_utils.Database, key: Any) -> int:
    """Sign the entries after the key's introduction that are still unsigned (key was away)."""
    kid = signing.key_id(key.public_key())
    intro = one(db, "SELECT seq FROM custody_log WHERE event = 'keys-generate' AND subject = ? "
                    "ORDER BY seq LIMIT 1", [kid])
    if intro is None:
        return 0
    count = 0
    with transaction(db):
        for row in list(db.query("SELECT seq, entry_hash FROM custody_log WHERE seq >= ? AND "
                                 "signature IS NULL ORDER BY seq", [intro["seq"]])):
            db.execute("UPDATE custody_log SET signature = ? WHERE seq = ?",
                       [signing.sign_hash(key, row["entry_hash"]), row["seq"]])
            count += 1
    return count


# The columns of one entry, in the order readers (verify, export) select them.
ENTRY_COLUMNS = ("seq", "at", "event", "subject", "details", "prev_hash", "entry_hash", "signature")
