"""What a run covers, and where each finding lies.

`Scope` is the whole archive, or the captures, checks and WARC files of some sources (those
of a report, or some URLs). `Locator` turns a record, capture or check into the file, offset,
capture and source URL a problem names; its look-ups are cached and shared between the
connections of one run (the log is checked on its own connection, in its own thread).
"""

from __future__ import annotations

from typing import Any

from ..queries import find_report, source_ids_of_any_version
from .sql import bindable, dict_rows, in_chunks


def report_sources(db: Any, report: str) -> set[int]:
    """Source ids cited by any version of a report, found as every command finds one (id, title or path)."""
    return source_ids_of_any_version(db, find_report(db, report)["id"])  # UsageError for an unknown report


class Scope:
    """The sources a run covers (None: all of them) and what follows from them, set by load()."""

    def __init__(self, source_ids: set[int] | None) -> None:
        self.source_ids = source_ids
        self.captures: set[int] | None = None  # None: the whole archive
        self.checks: set[int] = set()
        self.files: dict[str, dict[str, Any]] = {}  # warc_files rows in scope
        self.files_with_checks: set[str] = set()  # fast mode: files holding a check's evidence

    def load(self, db: Any, deep: bool) -> None:
        """Only what every run needs; rows are fetched when a check needs them."""
        self.captures = None
        self.checks = set()
        wanted_files: set[str] | None = None
        if self.source_ids is not None:
            self.captures = set()
            for part, marks in in_chunks(sorted(self.source_ids)):
                self.captures.update(r[0] for r in db.execute(
                    f"SELECT id FROM captures WHERE source_id IN ({marks})", part))
                self.checks.update(r[0] for r in db.execute(
                    f"SELECT id FROM checks WHERE source_id IN ({marks})", part))
            wanted_files = set()
            for part, marks in in_chunks(sorted(self.captures)):
                wanted_files.update(r[0] for r in db.execute(
                    f"SELECT warc_file FROM capture_records WHERE capture_id IN ({marks}) UNION "
                    f"SELECT warc_file FROM captures WHERE id IN ({marks}) AND warc_file IS NOT NULL", part + part))
            for part, marks in in_chunks(sorted(self.checks)):
                wanted_files.update(r[0] for r in db.execute(
                    f"SELECT warc_file FROM check_records WHERE check_id IN ({marks})", part))
        self.files = {r["name"]: r for r in dict_rows(db, "SELECT * FROM warc_files ORDER BY name")
                      if wanted_files is None or r["name"] in wanted_files}
        if not deep:
            self.files_with_checks = {r[0] for r in db.execute("SELECT DISTINCT warc_file FROM check_records")}

    def in_scope(self, table: str, key: Any, current: dict[str, Any] | None) -> bool:
        """Is the row an entry vouches for part of this run? `current` is the row found by its key."""
        if self.source_ids is None:
            return True
        assert self.captures is not None
        if table == "captures":
            return key in self.captures
        if table == "capture_records":
            return current is not None and current["capture_id"] in self.captures
        if table == "warc_files":
            return key in self.files
        if table == "checks":
            return key in self.checks
        if table == "check_records":
            return current is not None and current["check_id"] in self.checks
        return False


class LocatorCache:
    """Look-ups kept for the whole run: problems about one capture come in groups."""

    def __init__(self) -> None:
        self.captures: dict[int, dict[str, Any] | None] = {}
        self.check_urls: dict[int, str | None] = {}


class Locator:
    """file/offset/record/capture (or check)/source URL for a problem, read through `db`."""

    def __init__(self, db: Any, scope: Scope, cache: LocatorCache | None = None) -> None:
        self.db = db
        self.scope = scope
        self.cache = cache if cache is not None else LocatorCache()

    def on(self, db: Any) -> Locator:
        """The same locator reading through another connection (of the same snapshot)."""
        return Locator(db, self.scope, self.cache)

    def capture(self, capture_id: Any) -> dict[str, Any] | None:
        """A capture row with its source URL."""
        if not bindable(capture_id):
            return None
        if capture_id not in self.cache.captures:
            rows = dict_rows(self.db, "SELECT c.id, c.source_id, c.status, c.url_requested, s.url AS source_url "
                                      "FROM captures c LEFT JOIN sources s ON s.id = c.source_id WHERE c.id = ?",
                             [capture_id])
            self.cache.captures[capture_id] = rows[0] if rows else None
        return self.cache.captures[capture_id]

    def capture_in_scope(self, capture_id: Any) -> bool:
        if self.scope.captures is None:
            return self.capture(capture_id) is not None
        return capture_id in self.scope.captures

    def record(self, record: dict[str, Any] | None, capture_id: int | None = None) -> dict[str, Any]:
        """file/offset/record/capture (or check)/url for a problem about a catalogued record."""
        where: dict[str, Any] = {}
        if record is not None:
            where.update(file=record["warc_file"], offset=record["offset"], record_id=record["record_id"])
            capture_id = record.get("capture_id")
            if record.get("check_id") is not None:
                where.update(self.check(record["check_id"]))
        if capture_id is not None:
            where["capture_id"] = capture_id
            cap = self.capture(capture_id) if self.capture_in_scope(capture_id) else None
            if cap is not None:
                where["url"] = cap["source_url"] if cap["source_url"] is not None else cap["url_requested"]
        return where

    def check(self, check_id: Any) -> dict[str, Any]:
        """check/url for a problem about a live check's row or evidence."""
        where: dict[str, Any] = {"check_id": check_id}
        if bindable(check_id):
            urls = self.cache.check_urls
            if check_id not in urls:
                found = self.db.execute("SELECT s.url FROM checks k JOIN sources s ON s.id = k.source_id "
                                        "WHERE k.id = ?", [check_id]).fetchone()
                urls[check_id] = found[0] if found else None
            if urls[check_id] is not None:
                where["url"] = urls[check_id]
        return where

    def row(self, table: str, key: Any, current: dict[str, Any] | None,
            expected: dict[str, Any]) -> dict[str, Any]:
        """Where a row a log entry vouches for lies (`current`: the row as found, if it was)."""
        if table == "captures":
            return self.record(None, key)
        if table == "capture_records":
            rec = current or {"warc_file": expected.get("warc_file"), "offset": expected.get("offset"),
                              "record_id": key, "capture_id": expected.get("capture_id")}
            return self.record(rec) if rec.get("capture_id") else {"file": rec["warc_file"],
                                                                     "offset": rec["offset"],
                                                                     "record_id": key}
        if table == "warc_files":
            return {"file": key}
        if table == "checks":
            return self.check(key)
        if table == "check_records" and current is not None:
            return self.record(current)
        return {}
