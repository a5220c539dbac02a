"""The catalogue's rows against the custody log that vouches for them.

Each log entry carries the facts it vouches for (`vouched`): a capture entry the whole capture
row and its record rows, a check entry a few columns, its row's SHA-256 and its records' member
hashes, a verify entry its verification_runs row, a sealed file its size and SHA-256. `RowCheck`
compares those with the rows as they are now, so an edit made with sqlite3 after the fact is
named to the column; `UnvouchedRows` names the rows no entry vouches for (added behind
evarchive's back, or the log lost its tail). Capture entries whose rows are unchanged are
recognised inside SQLite (`capture_match_sql`) and never parsed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from ..catalogue import to_json
from .findings import Findings, Problem
from .scope import Locator, Scope
from .sql import bindable, columns_of, dict_rows, in_chunks, sql_name, sql_text, text_affinity

# What each event vouches for: a list of (table, key column, key value, expected columns).
# The capture engine puts the whole capture row and its record rows in the entry; the WARC
# writer puts a closed file's size and SHA-256. verify compares those with the rows as they
# are now, so an edit made with sqlite3 after the fact is found and named to the column.


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


class Seen:
    """The row ids some log entry vouches for: one byte per id, not the rows themselves."""

    __slots__ = ("_bytes", "_other", "count")
    _DENSE = 1 << 26  # ids beyond this (an attacker's INSERT with id = 10**12) go to a set

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._other: set[int] = set()
        self.count = 0  # distinct ids added

    def add(self, rowid: int) -> None:
        if 0 <= rowid < self._DENSE:
            if rowid >= len(self._bytes):
                self._bytes.extend(bytes(rowid + 1 - len(self._bytes) + 4096))
            if not self._bytes[rowid]:
                self._bytes[rowid] = 1
                self.count += 1
        elif rowid not in self._other:
            self._other.add(rowid)
            self.count += 1

    def __contains__(self, rowid: int) -> bool:
        if 0 <= rowid < len(self._bytes):
            return bool(self._bytes[rowid])
        return rowid in self._other


# (getter of the entry's columns from a row tuple, those column names, whether that is all of them)
_Shape = tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], list[str], bool]


class RowCheck:
    """Compares the rows log entries vouch for with the catalogue as it is now.

    Entries are taken a batch at a time: the rows the batch names are fetched with one
    IN (...) query per table, and each is compared with its entry as a tuple (one C-level
    comparison per row); only a row that differs is compared column by column to word the
    problem. Neither the log nor the catalogue is ever held in memory as a whole.
    """

    def __init__(self, db: Any, scope: Scope, where: Locator, out: list[Problem]) -> None:
        self.db = db
        self.scope = scope
        self.where = where
        self.out = out
        self.items: list[tuple[int, str, str, Any, dict[str, Any]]] = []
        self.seen: dict[str, Seen] = {}
        self.columns: dict[str, list[str]] = {}  # per table, as `SELECT rowid AS __rowid, *` returns them
        self.shapes: dict[tuple[str, tuple[str, ...]], _Shape] = {}
        self.check_records_due: list[tuple[int, Any, list[Any]]] = []  # (seq, check id, member hashes)

    def add(self, entry: dict[str, Any], details: Any) -> None:
        for table, keycol, key, expected in vouched(entry, details):
            self.items.append((entry["seq"], table, keycol, key, expected))

    def flush(self) -> None:
        if not self.items:
            return
        wanted: dict[tuple[str, str], set[Any]] = {}
        for _seq, table, keycol, key, _exp in self.items:
            if bindable(key):
                wanted.setdefault((table, keycol), set()).add(key)
        current = {tk: self.fetch(tk[0], tk[1], keys) for tk, keys in wanted.items()}
        for seq, table, keycol, key, expected in self.items:
            rows = current.get((table, keycol), {})
            self.compare(seq, table, key, expected, rows.get(key) if bindable(key) else None)
        self.items.clear()
        self.compare_check_records()

    def fetch(self, table: str, keycol: str, keys: set[Any]) -> dict[Any, tuple[Any, ...]]:
        out: dict[Any, tuple[Any, ...]] = {}
        for part, marks in in_chunks(keys):
            cursor = self.db.execute(f"SELECT rowid AS __rowid, * FROM {sql_name(table)} "
                                     f"WHERE {sql_name(keycol)} IN ({marks})", part)
            cols = self.columns.setdefault(table, [d[0] for d in cursor.description])
            k = cols.index(keycol)
            for row in cursor:
                out[row[k]] = row
        return out

    def record_at(self, file: Any, offset: Any) -> tuple[Any, ...] | None:
        """A record row found by where it says the record is (its record_id was edited)."""
        if not (isinstance(file, str) and bindable(offset)):
            return None
        cursor = self.db.execute("SELECT rowid AS __rowid, * FROM capture_records WHERE warc_file = ? AND offset = ? "
                                 "ORDER BY rowid DESC LIMIT 1", [file, offset])
        self.columns.setdefault("capture_records", [d[0] for d in cursor.description])
        return cursor.fetchone()

    def as_dict(self, table: str, row: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.columns[table][1:], row[1:], strict=True))

    def shape(self, table: str, keys: tuple[str, ...]) -> _Shape:
        """A getter that pulls the entry's columns out of a row tuple, cached per key set."""
        found = self.shapes.get((table, keys))
        if found is None:
            cols = self.columns[table]
            names = [k for k in keys if k in cols[1:]]
            index = [cols.index(k) for k in names]
            if len(index) == 1:
                i = index[0]
                getter: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda row: (row[i],)  # noqa: E731
            elif index:
                getter = itemgetter(*index)
            else:
                getter = lambda row: ()  # noqa: E731
            found = self.shapes[(table, keys)] = (getter, names, len(names) == len(keys))
        return found

    def compare(self, seq: int, table: str, key: Any, expected: dict[str, Any], by_key: tuple[Any, ...] | None) -> None:
        seen = self.seen.setdefault(table, Seen())
        if by_key is not None:
            seen.add(by_key[0])
        if self.scope.source_ids is not None and not self.scope.in_scope(
                table, key, self.as_dict(table, by_key) if by_key is not None else None):
            return
        current = by_key
        if current is None and table == "capture_records":
            current = self.record_at(expected.get("warc_file"), expected.get("offset"))
            if current is not None:
                seen.add(current[0])
        if current is None:
            where = self.where.row(table, key, None, expected)
            self.out.append(Problem("catalogue-deleted", f"{table} row {key} vouched for by log entry {seq} "
                                    "is missing from the catalogue", table=table, log_seq=seq, **where))
            return
        getter, names, complete = self.shape(table, tuple(expected))
        values = tuple(expected.values()) if complete else tuple(expected[k] for k in names)
        if getter(current) == values:
            if table == "checks":
                self.compare_check(seq, key, expected, current, edited=False)
            return
        row = self.as_dict(table, current)
        where = self.where.row(table, key, row, expected)
        for column, value in expected.items():
            if column in row and row[column] != value:
                self.out.append(Problem("catalogue-edited", f"{table} {key}: {column} is {row[column]!r}, but log "
                                        f"entry {seq} recorded {value!r}", table=table, column=column,
                                        log_seq=seq, **where))
        if table == "checks":
            self.compare_check(seq, key, expected, current, edited=True)

    def compare_check(self, seq: int, key: Any, expected: dict[str, Any], current: tuple[Any, ...],
                      edited: bool) -> None:
        """A check's entry holds the SHA-256 of its whole row (to_json of it, as it was inserted)
        and the member SHA-256 of each record it wrote; the records are compared per batch."""
        row_sha256 = expected.get("row_sha256")
        if not edited and row_sha256 is not None and \
                hashlib.sha256(to_json(self.as_dict("checks", current)).encode()).hexdigest() != row_sha256:
            self.out.append(Problem("catalogue-edited", f"checks {key} was edited: the row no longer has the SHA-256 "
                                    f"log entry {seq} recorded for it", table="checks", log_seq=seq,
                                    **self.where.check(key)))
        if isinstance(expected.get("records"), list):
            self.check_records_due.append((seq, key, expected["records"]))

    def compare_check_records(self) -> None:
        """Each check's record rows against the member hashes its entry lists: a row whose hash
        the entry lacks is an edit (paired with a hash no row has), or unvouched if none is left."""
        if not self.check_records_due:
            return
        by_check: dict[Any, list[tuple[Any, ...]]] = {}
        for part, marks in in_chunks(sorted({k for _s, k, _h in self.check_records_due if bindable(k)})):
            cursor = self.db.execute(f"SELECT rowid AS __rowid, * FROM check_records WHERE check_id IN ({marks}) "
                                     "ORDER BY offset", part)
            cols = self.columns.setdefault("check_records", [d[0] for d in cursor.description])
            k = cols.index("check_id")
            for row in cursor:
                by_check.setdefault(row[k], []).append(row)
        seen = self.seen.setdefault("check_records", Seen())
        for seq, check_id, hashes in self.check_records_due:
            left = list(hashes)
            strays = []
            for row in by_check.get(check_id, []) if bindable(check_id) else []:
                rec = self.as_dict("check_records", row)
                if rec["member_sha256"] in left:
                    left.remove(rec["member_sha256"])
                    seen.add(row[0])
                else:
                    strays.append((row[0], rec))
            for (rowid, rec), vouched in zip(strays, left, strict=False):
                seen.add(rowid)
                self.out.append(Problem("catalogue-edited", f"check_records {rec['record_id']}: member_sha256 is "
                                        f"{rec['member_sha256']!r}, but log entry {seq} recorded {vouched!r}",
                                        table="check_records", column="member_sha256", log_seq=seq,
                                        **self.where.record(rec)))
            for vouched in left[len(strays):]:
                self.out.append(Problem("catalogue-deleted", f"a record of check {check_id} (member SHA-256 "
                                        f"{vouched}) vouched for by log entry {seq} is missing from the catalogue",
                                        table="check_records", log_seq=seq, **self.where.check(check_id)))
        self.check_records_due.clear()


def capture_match_sql(db: Any, capture_keys: list[str], record_keys: list[str]) -> tuple[str, str] | None:
    """(join, expression): joined to `custody_log l`, the expression is 1 exactly when a capture
    entry's details are, byte for byte, what its rows say now.

    The capture engine's entry is to_json({"capture": row, "capture_id": id, "records": [...]})
    (sorted keys, no spaces, raw UTF-8): SQLite's json_object writes integers, text and NULL
    exactly as json.dumps does, so the entry can be rebuilt from the current rows and compared
    as one string, in C, with the GIL released, without parsing it. Equal strings mean equal
    values. Anything json_object might render ambiguously (a REAL) yields 0, and so does a
    different key set, record order or formatting: those entries take the exact Python path.
    None when the key sets are not all columns (no rebuild possible).
    """
    cap_cols, rec_cols = set(columns_of(db, "captures")), set(columns_of(db, "capture_records"))
    if not capture_keys or not record_keys or not (set(capture_keys) <= cap_cols and set(record_keys) <= rec_cols):
        return None

    def rebuilt(alias: str, keys: list[str]) -> str:
        return "json_object(" + ", ".join(f"{sql_text(k)}, {alias}.{sql_name(k)}" for k in sorted(keys)) + ")"

    def odd(alias: str, table: str, keys: list[str]) -> str:
        # A REAL is printed with 15 digits by json_object (two values could print alike), so a
        # REAL anywhere sends the entry to the exact path. Only columns without TEXT affinity can
        # hold one. (A BLOB makes json_object raise: the caller then takes the exact path for all.)
        text = text_affinity(db, table)
        checks = [f"typeof({alias}.{sql_name(k)}) = 'real'" for k in keys if k not in text]
        return "(" + (" OR ".join(checks) or "0") + ")"

    rec_odd = odd("r", "capture_records", record_keys)
    records = (f"(SELECT CASE WHEN count(*) = 0 THEN '' WHEN sum({rec_odd}) > 0 THEN NULL "
               f"ELSE group_concat(CASE WHEN {rec_odd} THEN NULL ELSE {rebuilt('r', record_keys)} END, ',') "
               f"END FROM capture_records r WHERE r.capture_id = c.id)")
    # capture_id sits after the capture object (sorted keys); a wrong guess only means "not equal".
    join = ("LEFT JOIN captures c ON l.event = 'capture' AND c.id = "
            "CAST(substr(l.details, instr(l.details, ',\"capture_id\":') + 14) AS INTEGER)")
    same = ("CASE WHEN c.id IS NULL OR " + odd("c", "captures", capture_keys) + " THEN 0 ELSE "
            "l.details = '{\"capture\":' || " + rebuilt("c", capture_keys) + " || ',\"capture_id\":' || c.id "
            "|| ',\"records\":[' || " + records + " || ']}' END")
    return join, same


class UnvouchedRows:
    """Rows no entry vouches for were added behind evarchive's back, or the log lost its tail."""

    def __init__(self, db: Any, scope: Scope, where: Locator, findings: Findings) -> None:
        self.db = db
        self.scope = scope
        self.where = where
        self.findings = findings
        self.add = self.findings.add
        self.note = self.findings.note

    def find(self, seen: dict[str, Seen], same_captures: Seen) -> None:
        """Rows no entry vouches for were added behind evarchive's back, or the log lost its tail."""
        # The usual case: every capture (so every record that belongs to one) matched in SQL.
        if same_captures.count != self.db.execute("SELECT COUNT(*) FROM captures").fetchone()[0]:
            self.captures(seen, same_captures)
        self.checks(seen)
        if self.scope.source_ids is None:
            self.verification_runs(seen)
        self.warc_files(seen)

    def captures(self, seen: dict[str, Seen], same_captures: Seen) -> None:
        """A capture whose entry matched in SQL is vouched for, and so is each of its records
        (the entry lists exactly the capture's records as they are now)."""
        none = Seen()
        caps = seen.get("captures", none)
        for (cid,) in self.db.execute("SELECT id FROM captures ORDER BY id"):
            if cid not in caps and cid not in same_captures and (
                    self.scope.captures is None or cid in self.scope.captures):
                self.add("catalogue-unvouched", f"capture {cid} is in no custody-log entry (added outside "
                         "evarchive, or the end of the log was removed)", table="captures",
                         **self.where.record(None, cid))
        recs = seen.get("capture_records", none)
        unseen = [rowid for rowid, capture_id in self.db.execute(
            "SELECT r.id, r.capture_id FROM capture_records r JOIN captures c ON c.id = r.capture_id "
            "ORDER BY r.warc_file, r.offset")
            if rowid not in recs and capture_id not in same_captures
            and (self.scope.captures is None or capture_id in self.scope.captures)]
        for part, marks in in_chunks(unseen):
            for rec in dict_rows(self.db, f"SELECT * FROM capture_records WHERE id IN ({marks}) "
                                           "ORDER BY warc_file, offset", part):
                self.add("catalogue-unvouched", f"record {rec['record_id']} is in no custody-log entry",
                         table="capture_records", **self.where.record(rec))

    def checks(self, seen: dict[str, Seen]) -> None:
        checks, recs = seen.get("checks", Seen()), seen.get("check_records", Seen())
        for (cid,) in self.db.execute("SELECT id FROM checks ORDER BY id").fetchall():
            if cid not in checks and (self.scope.source_ids is None or cid in self.scope.checks):
                self.add("catalogue-unvouched", f"check {cid} is in no custody-log entry (added outside evarchive, "
                         "or the end of the log was removed)", table="checks", **self.where.check(cid))
        unseen = [rowid for rowid, check_id in self.db.execute("SELECT id, check_id FROM check_records ORDER BY id")
                  if rowid not in recs and (self.scope.source_ids is None or check_id in self.scope.checks)]
        for part, marks in in_chunks(unseen):
            for rec in dict_rows(self.db, f"SELECT * FROM check_records WHERE id IN ({marks}) "
                                           "ORDER BY warc_file, offset", part):
                self.add("catalogue-unvouched", f"record {rec['record_id']} of check {rec['check_id']} is in no "
                         "custody-log entry", table="check_records", **self.where.record(rec))

    def verification_runs(self, seen: dict[str, Seen]) -> None:
        runs = seen.get("verification_runs", Seen())
        for run_id, result in self.db.execute("SELECT id, result FROM verification_runs ORDER BY id").fetchall():
            if run_id in runs:
                continue
            if result is None:  # left by a verification that was interrupted before it could record its end
                self.note("verification-unfinished", f"verification run {run_id} never finished; no custody-log "
                          "entry vouches for it", table="verification_runs")
            else:
                self.add("catalogue-unvouched", f"verification run {run_id} is in no custody-log entry (added "
                         "outside evarchive, or the end of the log was removed)", table="verification_runs")

    def warc_files(self, seen: dict[str, Seen]) -> None:
        files = seen.get("warc_files", Seen())
        for name, row in self.scope.files.items():
            if row["status"] != "open" and row["id"] not in files:
                self.add("catalogue-unvouched", f"the sealed state of {name} is in no custody-log entry",
                         table="warc_files", file=name)
