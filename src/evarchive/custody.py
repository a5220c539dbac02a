"""The custody log: an append-only, hash-chained record of every event that touches evidence.

Each entry's hash covers its own fields and the previous entry's hash, so removing,
reordering or editing an entry breaks the chain from that point on. An entry's ``details``
carry the facts it vouches for (for a capture: the capture row's evidence fields and the
record hashes), so a catalogue row edited after the fact no longer matches its entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
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


# --------------------------------------------------------------------------- verification
# What each event vouches for: a list of (table, key column, key value, expected columns).
# The capture engine puts the whole capture row and its record rows in the entry; the WARC
# writer puts a closed file's size and SHA-256. verify compares those with the rows as they
# are now, so an edit made with sqlite3 after the fact is found and named to the column.
#
# verify streams the log (iter_entries + ChainChecker) instead of loading it: a log of a
# million captures is gigabytes of details, and the checks only ever need one entry at a time.

ENTRY_COLUMNS = ("seq", "at", "event", "subject", "details", "prev_hash", "entry_hash", "signature")


def vouched(entry: dict[str, Any], details: Any = None) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """What `entry` vouches for; `details` may be passed already parsed (verify parses once)."""
    if details is None:
        try:
            details = json.loads(entry["details"])
        except (TypeError, ValueError):
            return []
    if not isinstance(details, dict):
        return []
    event = entry["event"]
    out: list[tuple[str, str, Any, dict[str, Any]]] = []
    if event == "capture" and isinstance(details.get("capture"), dict):
        capture_id = details.get("capture_id")
        out.append(("captures", "id", capture_id, details["capture"]))
        for record in details.get("records") or []:
            if isinstance(record, dict):
                # The entry also says whose record it is: a record row moved to another capture
                # (so that another source's claims would cite it) is an edit too.
                out.append(("capture_records", "record_id", record.get("record_id"),
                            {**record, "capture_id": capture_id} if "capture_id" not in record else record))
    elif event in ("warc-closed", "warc-interrupted"):
        expected = {k: details[k] for k in ("size", "sha256", "referenced_size") if k in details}
        expected["status"] = "closed" if event == "warc-closed" else "interrupted"
        out.append(("warc_files", "name", entry["subject"], expected))
    elif event == "timestamp" and "timestamp_id" in details:
        out.append(("timestamps", "id", details["timestamp_id"],
                    {k: details[k] for k in ("covers_seq", "digest", "token_sha256", "tsa_url")
                     if k in details}))
    elif event == "keys-generate":
        out.append(("signing_keys", "key_id", entry["subject"],
                    {"public_key_pem": details.get("public_key_pem")}))
    elif event == "check" and isinstance(details.get("checks"), list):
        # A check's entry names a few of its columns, the SHA-256 of its whole row and the
        # member SHA-256 of each record it wrote; verify compares the columns here and the
        # row hash and records itself (CHECK_EXTRAS are no columns).
        for check in details["checks"]:
            if isinstance(check, dict):
                out.append(("checks", "id", check.get("check_id"),
                            {k: check[k] for k in ("source_id", "verdict", "confirmed", *CHECK_EXTRAS)
                             if k in check}))
    elif event == "verify" and _bindable_id(details.get("run_id")):
        out.append(("verification_runs", "id", details["run_id"], _verification_row(details)))
    return out


CHECK_EXTRAS = ("row_sha256", "records")


def _bindable_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _verification_row(details: dict[str, Any]) -> dict[str, Any]:
    """The verification_runs row a verify entry vouches for.

    Entries carry the whole row under "run"; entries written before they did carry only the
    outcome, which is all that can be vouched for in their rows."""
    if isinstance(details.get("run"), dict):
        return details["run"]
    older = {"mode": "mode", "result": "result", "problems": "problems", "files": "files",
             "bytes": "bytes", "log_head_checked": "log_head"}
    row = {column: details[key] for key, column in older.items() if key in details}
    if "scope" in details:
        row["scope"] = to_json(details["scope"])
    if "by_kind" in details:
        row["summary"] = to_json(details["by_kind"])
    return row


def iter_entries(db: sqlite_utils.Database, batch: int = 512) -> Iterator[list[dict[str, Any]]]:
    """The log in seq order, `batch` entries at a time (bounded memory however long the log)."""
    cursor = db.execute(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM custody_log ORDER BY seq")
    while rows := cursor.fetchmany(batch):
        yield [dict(zip(ENTRY_COLUMNS, row, strict=True)) for row in rows]


def seqs_of(db: sqlite_utils.Database, hashes: set[str]) -> dict[str, int]:
    """entry_hash -> seq for the given hashes (only needed to explain a broken link)."""
    out: dict[str, int] = {}
    wanted = sorted(h for h in hashes if isinstance(h, str))
    for i in range(0, len(wanted), 500):
        part = wanted[i:i + 500]
        marks = ",".join("?" for _ in part)
        for digest, seq in db.execute(f"SELECT entry_hash, seq FROM custody_log WHERE entry_hash IN ({marks}) "
                                      "ORDER BY seq", part):
            out[digest] = seq  # a duplicated hash: the later entry, as a dict over the log would say
    return out


class ChainChecker:
    """check_chain one entry at a time.

    Each entry is checked on its own (does its hash still match its fields?) and against its
    neighbour (does it name the previous entry's hash?), so the report points at the entry
    that was changed rather than at everything after it. Which entry a mis-linked one really
    follows is looked up only at the end, for the few links that are broken.
    """

    def __init__(self, total: int) -> None:
        self.total = total  # entries in the log: bounds the search for a moved entry's old seq
        self.issues: list[tuple[int, str, str]] = []
        self._unlinked: list[tuple[int, int, str, int]] = []  # (index in issues, seq, prev_hash, prev_seq)
        self._prev_hash, self._prev_seq, self._prev_bad = GENESIS_HASH, 0, False

    def feed(self, row: dict[str, Any]) -> None:
        seq = row["seq"]
        bad = _recompute(row, seq) != row["entry_hash"]
        if bad:
            moved = _original_seq(row, self.total + 2)
            if moved is not None and moved != seq:
                self.issues.append((seq, "reordered", f"log entry {seq} ({row['event']} {row['subject']}) "
                                    f"was entry {moved}: the log was reordered"))
            else:
                self.issues.append((seq, "edited", f"log entry {seq} ({row['event']} {row['subject']}) "
                                    "was edited: its hash no longer matches its contents"))
        prev_seq = self._prev_seq
        if seq != prev_seq + 1:
            missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}..{seq - 1}"
            self.issues.append((prev_seq + 1, "deleted", f"log entries {missing} are missing (deleted)"))
        elif row["prev_hash"] != self._prev_hash and not bad and not self._prev_bad:
            # (a flagged predecessor already explains a broken link: name it once)
            self._unlinked.append((len(self.issues), seq, row["prev_hash"], prev_seq))
            self.issues.append((seq, "deleted", ""))  # worded in finish()
        self._prev_hash, self._prev_seq, self._prev_bad = row["entry_hash"], seq, bad

    def finish(self, find: Callable[[set[str]], dict[str, int]]) -> list[tuple[int, str, str]]:
        """The issues, in log order; `find` maps entry hashes to the seqs that carry them."""
        origins = find({h for _i, _s, h, _p in self._unlinked}) if self._unlinked else {}
        for index, seq, prev_hash, prev_seq in self._unlinked:
            origin = origins.get(prev_hash)
            if origin is not None:
                self.issues[index] = (seq, "reordered", f"log entry {seq} follows entry {origin}, "
                                      f"not entry {prev_seq}: the log was reordered")
            else:
                self.issues[index] = (seq, "deleted", f"the entry before log entry {seq} is not the one it "
                                      "was chained to (an entry was deleted or replaced)")
        return self.issues


def check_chain(rows: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    """(seq, kind, message) for every break in the chain. Kinds: edited, deleted, reordered."""
    checker = ChainChecker(len(rows))
    for row in rows:
        checker.feed(row)
    return checker.finish(lambda hashes: {r["entry_hash"]: r["seq"] for r in rows if r["entry_hash"] in hashes})


# Characters json.dumps(..., ensure_ascii=False) escapes in a string: any other string
# serialises as itself in quotes, which saves four json.dumps calls per entry.
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')


def _json_str(value: Any) -> str:
    if type(value) is str and not _JSON_ESCAPED.search(value):
        return '"' + value + '"'
    return json.dumps(value, ensure_ascii=False)


def _recompute(row: dict[str, Any], seq: int) -> str | None:
    # Fast path: the stored details are the canonical JSON that was hashed, so splice them in
    # verbatim (no parse/re-serialise). A mismatch falls back to the exact canonical form.
    try:
        body = ('{"at":' + _json_str(row["at"]) + ',"details":' + row["details"]
                + ',"event":' + _json_str(row["event"]) + ',"prev_hash":'
                + _json_str(row["prev_hash"]) + ',"seq":' + str(int(seq)) + ',"subject":'
                + _json_str(row["subject"]) + "}")
        fast = hashlib.sha256(body.encode("utf-8")).hexdigest()
        if fast == row["entry_hash"]:
            return fast
    except (TypeError, ValueError):
        pass
    try:
        return entry_hash(seq, row["at"], row["event"], row["subject"], row["details"],
                          row["prev_hash"])
    except (TypeError, ValueError):
        return None


def _original_seq(row: dict[str, Any], limit: int) -> int | None:
    """The seq this entry was written with, if its hash matches some other seq."""
    if limit > 5000:  # only for small logs; large ones just say "edited"
        return None
    for candidate in range(1, limit):
        if _recompute(row, candidate) == row["entry_hash"]:
            return candidate
    return None
