"""The browser engine's artefacts (screenshots, PDF print, rendered DOM, title, text, provenance).

Each artefact is a WARC `resource` record of its capture (so a capture_records row, checked by
`files` like any record) and a capture_artefacts row that says what it is and the SHA-256 and
size of its bytes, which the export and the exhibit index show. Deep verify holds the two
together: every artefact row names a record of its own capture, that record is where the
catalogue places it, and its block still hashes as the row says; and every artefact record of
a capture has its row.
"""

from __future__ import annotations

from typing import Any

from .findings import Findings
from .scan import Member
from .scope import Locator, Scope
from .sql import columns_of, dict_rows

# The kinds browser.evidence.ARTEFACT_KINDS writes, under the target URI urn:evarchive:<kind>:<page URL>.
# Spelled here so that verify does not import the browser engine (httpx, the capture engine:
# about a second of start-up on this machine); tests/test_browser.py holds the two equal.
ARTEFACT_KINDS = ("screenshot-full", "screenshot-viewport", "pdf", "dom", "title", "text", "provenance")
ARTEFACT_URI = "urn:evarchive:"


def artefact_kind(target_uri: str | None) -> str | None:
    """The artefact kind a record's target URI names, or None when it is no artefact's."""
    if not target_uri or not target_uri.startswith(ARTEFACT_URI):
        return None
    kind = target_uri[len(ARTEFACT_URI):].partition(":")[0]
    return kind if kind in ARTEFACT_KINDS else None


# Each artefact row with its record's row, found by the record id the artefact row names.
_ARTEFACTS_OF_FILE = ("SELECT a.id, a.capture_id, a.kind, a.record_id, a.size, a.sha256, r.warc_file, r.offset "
                      "FROM capture_records r JOIN capture_artefacts a ON a.record_id = r.record_id "
                      "WHERE r.warc_file = ? ORDER BY r.offset")


class ArtefactChecks:
    """The artefact checks of one deep run."""

    def __init__(self, db: Any, scope: Scope, where: Locator, findings: Findings) -> None:
        self.db = db
        self.scope = scope
        self.where = where
        self.add = findings.add
        self.any_rows: bool | None = None  # does the catalogue hold any artefact row? (asked once)

    def label(self, row: dict[str, Any]) -> str:
        return f"the {row['kind']} artefact of capture {row['capture_id']} (record {row['record_id']})"

    def bytes_of_file(self, name: str, members: list[Member]) -> None:
        """Each artefact whose record the catalogue places in `name` against what is there:
        `members`, the records found in the file (none when the file is missing)."""
        if self.any_rows is None:
            self.any_rows = bool(columns_of(self.db, "capture_artefacts")) and \
                self.db.execute("SELECT 1 FROM capture_artefacts LIMIT 1").fetchone() is not None
        if not self.any_rows:
            return
        at = {m.offset: m for m in members}
        for row in dict_rows(self.db, _ARTEFACTS_OF_FILE, [name]):
            where = {**self.where.record(row), "table": "capture_artefacts"}
            m = at.get(row["offset"])
            if m is None:
                self.add("artefact-missing", f"{self.label(row)}: no record starts at offset {row['offset']} of "
                         f"{name}, where the catalogue places it", **where)
            elif m.record_id != row["record_id"]:
                self.add("artefact-missing", f"{self.label(row)}: the record at offset {row['offset']} of {name} "
                         f"is {m.record_id}, not the artefact's", **where)
            elif m.block_sha256 != row["sha256"] or m.block_length != row["size"]:
                self.add("artefact-changed", f"{self.label(row)} no longer hashes as catalogued: its "
                         f"{m.block_length} bytes at offset {row['offset']} of {name} have SHA-256 "
                         f"{m.block_sha256}, the catalogue says {row['size']} bytes with SHA-256 {row['sha256']}",
                         **where)

    def rows(self) -> None:
        """Artefact rows whose record is not one of their capture's resource records, and
        artefact records of a capture that no row lists."""
        if not columns_of(self.db, "capture_artefacts"):
            return  # a catalogue from before the browser engine
        for row in dict_rows(self.db, "SELECT a.id, a.capture_id, a.kind, a.record_id, r.capture_id AS owner, "
                                      "r.record_type FROM capture_artefacts a "
                                      "LEFT JOIN capture_records r ON r.record_id = a.record_id ORDER BY a.id"):
            if not self.in_scope(row["capture_id"]):
                continue
            where = {**self.where.record(None, row["capture_id"]), "record_id": row["record_id"],
                     "table": "capture_artefacts"}
            if row["owner"] is None:
                self.add("artefact-no-record", f"{self.label(row)}: the catalogue has no record {row['record_id']}",
                         **where)
            elif row["owner"] != row["capture_id"] or row["record_type"] != "resource":
                self.add("artefact-no-record", f"{self.label(row)}: record {row['record_id']} is a "
                         f"{row['record_type']} record of capture {row['owner']}, not a resource record of "
                         f"capture {row['capture_id']}", **where)
        unlisted = [r for r in dict_rows(
            self.db, "SELECT r.id, r.capture_id, r.warc_file, r.offset, r.record_id, r.target_uri "
                     "FROM capture_records r LEFT JOIN capture_artefacts a ON a.record_id = r.record_id "
                     f"WHERE r.record_type = 'resource' AND substr(r.target_uri, 1, {len(ARTEFACT_URI)}) = ? "
                     "AND a.id IS NULL ORDER BY r.warc_file, r.offset", [ARTEFACT_URI])
            if artefact_kind(r["target_uri"]) and self.in_scope(r["capture_id"])]
        for rec in unlisted:
            self.add("artefact-unlisted", f"record {rec['record_id']} of capture {rec['capture_id']} is its "
                     f"{artefact_kind(rec['target_uri'])} artefact ({rec['target_uri']}), but capture_artefacts "
                     "has no row for it", table="capture_artefacts", **self.where.record(rec))

    def in_scope(self, capture_id: Any) -> bool:
        return self.scope.captures is None or capture_id in self.scope.captures
