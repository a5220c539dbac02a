"""The custody log: an append-only, hash-chained record of every event that touches evidence.

Each entry's hash covers its own fields and the previous entry's hash, so removing,
reordering or editing an entry breaks the chain from that point on. An entry's ``details``
carry the facts it vouches for (for a capture: the capture row's evidence fields and the
record hashes), so a catalogue row edited after the fact no longer matches its entry.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlite_utils

from .catalogue import insert, one, to_json, transaction, utc_now

GENESIS_HASH = "0" * 64


def entry_hash(seq: int, at: str, event: str, subject: str | None, details_json: str,
               prev_hash: str) -> str:
    """SHA-256 over the canonical serialisation of one entry's fields."""
    body = to_json({"seq": seq, "at": at, "event": event, "subject": subject,
                    "details": json.loads(details_json), "prev_hash": prev_hash})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def head(db: sqlite_utils.Database) -> dict[str, Any] | None:
    """The newest entry, or None for an empty log."""
    return one(db, "SELECT * FROM custody_log ORDER BY seq DESC LIMIT 1")


def append(db: sqlite_utils.Database, event: str, subject: str | None,
           details: dict[str, Any]) -> dict[str, Any]:
    """Append one entry; joins the caller's transaction so rows and entry commit together."""
    with transaction(db):
        last = head(db)
        seq = (last["seq"] + 1) if last else 1
        prev = last["entry_hash"] if last else GENESIS_HASH
        at = utc_now()
        details_json = to_json(details)
        digest = entry_hash(seq, at, event, subject, details_json, prev)
        row = {"seq": seq, "at": at, "event": event, "subject": subject,
               "details": details_json, "prev_hash": prev, "entry_hash": digest,
               "signature": None}
        insert(db, "custody_log", row)
    return row
