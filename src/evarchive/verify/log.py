"""The custody log itself: its chain, its signatures, the rows it vouches for, its timestamps.

One streaming pass over the log (never loaded whole: a log of a million captures is gigabytes
of details) checks each entry's hash and its link to the previous one (`ChainChecker`), its
signature once a key was introduced, and hands the rest to `rows.RowCheck`. Stored RFC 3161
tokens are verified offline against the entries they stamp.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable
from typing import Any

from .. import custody, signing
from .findings import Findings, Problem
from .rows import RowCheck, Seen, UnvouchedRows, capture_match_sql
from .scope import Locator, Scope
from .sql import dict_rows


class LogChecks:
    """The log's checks for one run, reading through `db` (the run's second connection)."""

    def __init__(self, db: Any, scope: Scope, where: Locator, *, public_keys: list[Any] | None = None,
                 tsa_roots: list[Any] | None = None) -> None:
        self.db = db
        self.scope = scope
        self.where = where
        self.public_keys = public_keys
        self.tsa_roots = tsa_roots
        self.findings = Findings()
        self.add = self.findings.add
        self.note = self.findings.note
        self.log_head: str | None = None

    def run(self) -> list[Problem]:
        """Chain, signatures and rows, then timestamps; their problems in that order."""
        self.check_log()
        self.check_timestamps()
        return self.findings.problems

    # -- custody log
    def check_log(self) -> None:
        """Chain, signatures and vouched rows in one streaming pass over the log.

        The same query that streams the entries for the chain check tells, for each capture
        entry, whether its rows still match it byte for byte (capture_match_sql); only the
        others are parsed and compared in Python. Problems keep the order of the checks
        (chain breaks, then signatures, then rows).
        """
        sql, rebuilding = self.log_query(rebuild=True)
        try:
            self._check_log(sql)
        except sqlite3.Error:
            if not rebuilding:
                raise
            # A value json_object refuses (a BLOB) stops the query part-way: start again without
            # the rebuild, so that every entry takes the exact path.
            self._check_log(self.log_query(rebuild=False)[0])

    def log_query(self, rebuild: bool) -> tuple[str, bool]:
        """SELECT the entry columns, a capture id and a 1 for each capture entry matched in SQL."""
        cols = ", ".join(f"l.{c}" for c in custody.ENTRY_COLUMNS)
        plain = f"SELECT {cols}, NULL, 0 FROM custody_log l ORDER BY l.seq"
        if not rebuild:
            return plain, False
        # The key sets come from the first entry that has records (a failed capture has none).
        first = self.db.execute("SELECT details FROM custody_log WHERE event = 'capture' AND "
                                "instr(details, '\"records\":[{') > 0 ORDER BY seq LIMIT 1").fetchone()
        try:
            details = json.loads(first[0]) if first else None
        except (TypeError, ValueError):
            details = None
        if not (isinstance(details, dict) and set(details) == {"capture", "capture_id", "records"}
                and isinstance(details["capture"], dict) and isinstance(details["records"], list)
                and all(isinstance(r, dict) for r in details["records"])):
            return plain, False
        match = capture_match_sql(self.db, list(details["capture"]), sorted({k for r in details["records"] for k in r}))
        if match is None:
            return plain, False
        join, same = match
        return f"SELECT {cols}, c.id, {same} FROM custody_log l {join} ORDER BY l.seq", True

    def _check_log(self, sql: str) -> None:
        total = self.db.execute("SELECT COUNT(*) FROM custody_log").fetchone()[0]
        chain = ChainChecker(total)
        signature_problems: list[Problem] = []
        row_problems: list[Problem] = []
        check_signature = self.signature_checker(signature_problems)
        rows = RowCheck(self.db, self.scope, self.where, row_problems)
        same_captures = Seen()
        head = custody.GENESIS_HASH
        names = custody.ENTRY_COLUMNS
        width = len(names)
        cursor = self.db.execute(sql)
        while batch := cursor.fetchmany(512):
            for values in batch:
                entry = dict(zip(names, values[:width], strict=True))
                chain.feed(entry)
                if check_signature is not None:
                    check_signature(entry)
                if values[width + 1] == 1:
                    same_captures.add(values[width])
                    continue  # its rows were proven identical in SQL: nothing to parse or compare
                try:
                    details = json.loads(entry["details"])
                except (TypeError, ValueError):
                    continue  # a mangled entry: the chain check reports it
                rows.add(entry, details)
            rows.flush()
            head = batch[-1][names.index("entry_hash")]
        self.log_head = head
        for seq, kind, message in chain.finish(lambda hashes: seqs_of(self.db, hashes)):
            self.add(f"log-{kind}", message, log_seq=seq)
        self.findings.problems.extend(signature_problems)
        self.findings.problems.extend(row_problems)
        UnvouchedRows(self.db, self.scope, self.where, self.findings).find(rows.seen, same_captures)

    def unchanged_captures(self) -> Seen:
        """The capture ids whose entries match their rows byte for byte (what check_log skips)."""
        sql, _rebuilding = self.log_query(rebuild=True)
        width = len(custody.ENTRY_COLUMNS)
        captures = Seen()
        for values in self.db.execute(sql):
            if values[width + 1] == 1:
                captures.add(values[width])
        return captures

    def signature_checker(self, out: list[Problem]) -> Callable[[dict[str, Any]], None] | None:
        """A per-entry signature check, or None when no key was ever introduced."""
        intros = dict_rows(self.db, "SELECT seq, subject, details FROM custody_log WHERE event = 'keys-generate' "
                                     "ORDER BY seq")
        trusted = {signing.key_id(k): k for k in (self.public_keys or [])}
        if not intros:
            if trusted:
                out.append(Problem("log-unsigned", "a public key was given, but no signing key was ever "
                                   "introduced in the log"))
            return None
        logged: dict[str, Any] = {}
        for intro in intros:
            try:
                pem = json.loads(intro["details"]).get("public_key_pem")
                logged[intro["subject"]] = signing.load_public(pem)
            except Exception:  # noqa: BLE001 - a mangled entry is reported by the chain check
                continue
        keys = trusted or logged
        if not trusted:
            out.append(Problem("log-key-source", "signatures checked against the public keys recorded in the log "
                               "itself; pass --public-key with a copy kept elsewhere to rule out a replaced key",
                               severity="note"))
        first = intros[0]["seq"]

        def check(r: dict[str, Any]) -> None:
            if r["seq"] < first:
                return
            if not r["signature"]:
                out.append(Problem("log-unsigned", f"log entry {r['seq']} ({r['event']}) is not signed, although a "
                                   "signing key was in force", log_seq=r["seq"]))
                return
            try:
                kid, _raw = signing.parse_signature(r["signature"])
            except ValueError as exc:
                out.append(Problem("log-signature", f"log entry {r['seq']}: malformed signature ({exc})",
                                   log_seq=r["seq"]))
                return
            key = keys.get(kid)
            if key is None:
                out.append(Problem("log-signature", f"log entry {r['seq']} is signed by key {kid}, which is not a "
                                   "trusted key", log_seq=r["seq"]))
                return
            why = signing.check_signature(key, r["entry_hash"], r["signature"])
            if why:
                out.append(Problem("log-signature", f"log entry {r['seq']} ({r['event']}): {why}", log_seq=r["seq"]))

        return check


    def check_timestamps(self) -> None:
        if not self.db["timestamps"].exists():
            return
        stamps = dict_rows(self.db, "SELECT * FROM timestamps ORDER BY id")
        if not stamps:
            return
        # pyasn1 and its RFC modules cost 0.8-1.1 s of import on this machine (measured under load):
        # only a run that has a token to check pays it.
        from .. import timestamping

        if self.tsa_roots is None:
            self.note("timestamp-unanchored", "no TSA roots configured: tokens are checked (imprint, nonce, "
                      "signature) but their chains are not anchored; use --tsa-roots")
        for st in stamps:
            self.check_token(st, timestamping)

    def check_token(self, st: dict[str, Any], ts: Any) -> None:
        label = f"timestamp {st['id']} (log entry {st['covers_seq']}, {st['gen_time']})"
        where = {"log_seq": st["covers_seq"], "table": "timestamps"}
        token = bytes(st["token"])
        if hashlib.sha256(token).hexdigest() != st["token_sha256"]:
            self.add("timestamp", f"{label}: the stored token is not the one recorded", **where)
        found = dict_rows(self.db, f"SELECT {', '.join(custody.ENTRY_COLUMNS)} FROM custody_log WHERE seq = ?",
                           [st["covers_seq"]])
        if not found:
            self.add("timestamp", f"{label}: the log entry it stamps is missing", **where)
            return
        entry = found[0]
        recomputed = recompute(entry, entry["seq"]) or ""
        if recomputed != st["digest"]:
            self.add("timestamp", f"{label}: the log entry it stamps has changed since", **where)
        try:
            chain = ts.load_pem_certificates("".join(json.loads(st["tsa_chain_pem"])).encode())
            ts.verify_token(token, bytes.fromhex(recomputed), nonce=int(st["nonce"]),
                            roots=self.tsa_roots, extra_certs=chain)
        except ts.TokenInvalid as exc:
            self.add("timestamp", f"{label}: {exc.reason}", **where)
        except ValueError as exc:
            self.add("timestamp", f"{label}: unreadable ({exc})", **where)

    # -- claims


# ------------------------------------------------------------------ the chain


def seqs_of(db: Any, hashes: set[str]) -> dict[str, int]:
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
        self._prev_hash, self._prev_seq, self._prev_bad = custody.GENESIS_HASH, 0, False

    def feed(self, row: dict[str, Any]) -> None:
        seq = row["seq"]
        bad = recompute(row, seq) != row["entry_hash"]
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


def recompute(row: dict[str, Any], seq: int) -> str | None:
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
        return custody.entry_hash(seq, row["at"], row["event"], row["subject"], row["details"],
                          row["prev_hash"])
    except (TypeError, ValueError):
        return None


def _original_seq(row: dict[str, Any], limit: int) -> int | None:
    """The seq this entry was written with, if its hash matches some other seq."""
    if limit > 5000:  # only for small logs; large ones just say "edited"
        return None
    for candidate in range(1, limit):
        if recompute(row, candidate) == row["entry_hash"]:
            return candidate
    return None
