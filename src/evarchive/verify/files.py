"""The WARC files and records against the catalogue.

Every WARC file the catalogue knows must be present with the size and SHA-256 recorded when it
was sealed; a file the catalogue does not know is reported. Deep, every record on disk must be
the one the catalogue places there (offset, length, id, type, target, digests), and belong to a
capture or a check, be the file's warcinfo, or lie in the known tail of an interrupted run.
When a file's hash differs, each catalogued member is hashed so the problem names the record.
The bytes are read by `scan`; this module compares what it found with the rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import shown
from .artefacts import ArtefactChecks
from .findings import Findings
from .scan import (
    IN_FLIGHT,
    FileScan,
    Member,
    digest_matches,
    hash_file,
    member_hashes,
    plan_members,
    scan_file,
    scan_members,
    scan_span,
    scan_tail,
)
from .scope import Locator, Scope
from .sql import dict_rows

# Every catalogued record of one file (the warc_records view), its owner as capture_id or check_id.
_RECORDS_OF_FILE = ("SELECT CASE WHEN owner = 'capture' THEN owner_id END AS capture_id, "
                    "CASE WHEN owner = 'check' THEN owner_id END AS check_id, id, warc_file, offset, length, "
                    "record_id, record_type, target_uri, block_sha256, payload_sha256, member_sha256 "
                    "FROM warc_records WHERE warc_file = ? ORDER BY offset")


class FileChecks:
    """The file and record checks of one run; counts what it read in files/bytes/records."""

    def __init__(self, archive: Any, scope: Scope, where: Locator, findings: Findings, artefacts: ArtefactChecks,
                 *, deep: bool, workers: int, progress: Callable[[int], None] | None = None) -> None:
        self.archive = archive
        self.db = archive.db
        self.scope = scope
        self.where = where
        self.findings = findings
        self.add = self.findings.add
        self.note = self.findings.note
        self.artefacts = artefacts
        self.deep = deep
        self.workers = workers
        self.progress = progress
        self.files = 0
        self.bytes = 0
        self.records = 0

    def records_of(self, name: str) -> list[dict[str, Any]]:
        """The catalogued records of one file, by offset, whoever wrote them: captures and the
        evidence of live checks (fetched per file, when needed)."""
        return dict_rows(self.db, _RECORDS_OF_FILE, [name])

    def disk_files(self) -> dict[str, Path]:
        root = self.archive.warcs_dir
        found = {}
        for path in root.rglob("*"):
            if path.is_file() or path.is_symlink():
                found[path.relative_to(root).as_posix()] = path
        return found

    def check_files(self, on_disk: dict[str, Path] | None = None) -> None:
        if on_disk is None:
            on_disk = self.disk_files()
        if self.scope.source_ids is None:
            for name in sorted(set(on_disk) - set(self.scope.files)):
                self.add("unknown-file", f"{shown(name)} is in warcs/ but the catalogue does not know it",
                         file=name)
        tasks = []
        still_open = []
        for name, row in self.scope.files.items():
            path = on_disk.get(name)
            if path is None and (self.archive.warcs_dir / name).exists():
                path = self.archive.warcs_dir / name  # created after the listing, by the writer of its row
            if path is None and row["status"] == "open" and not row["referenced_size"]:
                self.note("file-open", f"{name} is registered but not written yet", file=name)
            elif path is None:
                self.file_missing(name, row)
            elif row["status"] == "open" or row["sha256"] is None:
                self.note("file-open", f"{name} is still open (being written, or left by a crashed run "
                          "not yet recovered); its records are checked, its hash once it is sealed", file=name)
                still_open.append((name, path))
            else:
                tasks.append((name, path, row))
        tasks.sort(key=lambda t: -(t[2]["size"] or 0))  # largest first, so the pool ends together
        # Files are handed to the pool ahead of the (Python) comparison, but in deep mode only
        # IN_FLIGHT bytes ahead: parsed members wait in memory until their file is compared.
        limit = IN_FLIGHT if self.deep else float("inf")
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            pending: deque[tuple[Path, dict[str, Any], Callable[[], FileScan]]] = deque()
            ahead = 0
            for name, path, row in tasks:
                pending.append((path, row, self._submit(pool, name, path)))
                ahead += row["size"] or 0
                while len(pending) > 1 and ahead > limit:
                    ahead -= self._collect(*pending.popleft())
            while pending:
                self._collect(*pending.popleft())
        for name, path in still_open:
            self.check_referenced(name, path)

    def check_referenced(self, name: str, path: Path) -> None:
        """Each catalogued record of the file by its member SHA-256 alone. For a file still open,
        only the records the snapshot references are judged: whatever a live writer appended
        after them belongs to later commits."""
        recs = self.records_of(name)
        try:
            hashes = member_hashes(path, [(r["offset"], r["length"]) for r in recs]) if recs else {}
        except OSError as exc:
            self.add("file-unreadable", f"{name}: {exc.strerror}", file=name)
            return
        self.files += 1  # counted with what was read of it, as a sealed file is
        self.bytes += sum(r["length"] for r in recs)
        if self.deep:
            self.records += len(recs)
        for rec in recs:
            got = hashes.get((rec["offset"], rec["length"]))
            if got is None:
                self.add("record-missing", f"the catalogue places record {rec['record_id']} at offset "
                         f"{rec['offset']} of {name}, but the file ends before it", **self.where.record(rec))
            elif got != rec["member_sha256"]:
                self.add("record-changed", f"the {rec['length']} bytes at offset {rec['offset']} of {name} are not "
                         f"those catalogued for record {rec['record_id']} ({rec['record_type']}): its member "
                         "SHA-256 differs", **self.where.record(rec))

    def _collect(self, path: Path, row: dict[str, Any], result: Callable[[], FileScan]) -> int:
        scan = result()
        self.files += 1
        self.bytes += scan.size
        self.compare_file(row, path, scan)
        if self.progress:
            self.progress(scan.size)
        return row["size"] or 0

    def _submit(self, pool: ThreadPoolExecutor, name: str, path: Path) -> Callable[[], FileScan]:
        """Queue the work for one file; returns what yields its FileScan once done."""
        if not self.deep:
            return pool.submit(hash_file, path, name).result
        spans = self.db.execute("SELECT offset, length FROM warc_records WHERE warc_file = ? ORDER BY offset",
                                [name]).fetchall()
        known = [offset for offset, _length in spans] + [0]
        try:
            size = path.stat().st_size
        except OSError:
            return pool.submit(scan_file, path, name, known).result
        plan = plan_members(self.scope.files[name].get("warcinfo_length"), spans, size)
        if plan is None:  # the catalogue does not describe the whole file: walk it
            return pool.submit(scan_file, path, name, known).result
        batches, tail = plan
        del spans
        hashed = pool.submit(hash_file, path, name)
        parsed = [pool.submit(scan_members, path, batch) for batch in batches]
        tail_job = pool.submit(scan_tail, path, name, tail, known) if tail is not None else None

        def result() -> FileScan:
            scan = hashed.result()
            groups = [job.result() for job in parsed]
            end = tail_job.result() if tail_job is not None else None
            if (scan.error or scan.size != size or any(g is None for g in groups)
                    or (end is not None and (end.error or end.size != size))):
                return scan_file(path, name, known)  # file and catalogue disagree: the sequential walk decides
            for group in groups:
                scan.members.extend(group or ())
            if end is not None:
                scan.members.extend(end.members)
                scan.damaged = end.damaged
            return scan

        return result

    def file_missing(self, name: str, row: dict[str, Any]) -> None:
        recs = self.records_of(name)
        self.add("file-missing", f"{name} is missing from warcs/ ({len(recs)} catalogued records lost)", file=name)
        self.records_lost(recs, f"its file {name} is missing")
        if self.deep:
            self.artefacts.bytes_of_file(name, [])

    def records_lost(self, recs: list[dict[str, Any]], why: str) -> None:
        """One problem per capture (or check) whose records are gone."""
        seen: set[tuple[str, int]] = set()
        for rec in recs:
            owner = ("capture", rec["capture_id"]) if rec.get("capture_id") is not None else ("check", rec["check_id"])
            if owner in seen:
                continue
            seen.add(owner)
            if owner[0] == "capture":
                self.add("capture-lost", f"capture {owner[1]} is lost: {why}", **self.where.record(rec))
            else:
                self.add("check-evidence-lost", f"the evidence of check {owner[1]} is lost: {why}",
                         **self.where.record(rec))

    def compare_file(self, row: dict[str, Any], path: Path, scan: FileScan) -> None:
        name = row["name"]
        if scan.error:
            self.add("file-unreadable", f"{name}: {scan.error}", file=name)
            return
        if row["status"] == "interrupted" and (row["size"] or 0) > row["referenced_size"]:
            self.note("interrupted-tail", f"{name}: {row['size'] - row['referenced_size']} bytes after offset "
                      f"{row['referenced_size']} are the known tail of an interrupted run",
                      file=name, offset=row["referenced_size"])
        intact = scan.size == row["size"] and scan.sha256 == row["sha256"]
        if intact and not self.deep:
            if name in self.scope.files_with_checks:
                # A check's entry vouches only for its records' member hashes: their offsets and
                # lengths are vouched for by finding those hashes there.
                self.check_referenced(name, path)
            return  # the common case needs no catalogue rows at all
        recs = self.records_of(name)
        if scan.size != row["size"]:
            self.size_changed(row, scan, recs)
        if scan.sha256 != row["sha256"]:
            self.add("file-hash", f"{name}: SHA-256 differs from the one recorded when it was closed",
                     file=name)
            self.localise(row, path, scan, recs)
        if self.deep:
            self.rescan_lost(path, scan, recs)
            self.records += len(scan.members)
            self.check_members(row, scan, recs)
            self.artefacts.bytes_of_file(name, scan.members)

    def rescan_lost(self, path: Path, scan: FileScan, recs: list[dict[str, Any]]) -> None:
        """Re-parse catalogued records the stream pass did not land on (after damage)."""
        if not scan.damaged:
            return
        found = {m.offset for m in scan.members} | {s for s, _e, _w in scan.damaged}
        for rec in recs:
            if rec["offset"] in found or rec["offset"] + rec["length"] > scan.size:
                continue
            extra = scan_span(path, scan.name, rec["offset"], rec["length"])
            scan.members.extend(m for m in extra.members if m.offset == rec["offset"])
            scan.damaged.extend(d for d in extra.damaged if d[0] == rec["offset"])
        scan.members.sort(key=lambda m: m.offset)

    def size_changed(self, row: dict[str, Any], scan: FileScan, recs: list[dict[str, Any]]) -> None:
        name, size, expected = row["name"], scan.size, row["size"]
        if size < expected:
            self.add("file-truncated", f"{name} is {size} bytes, {expected - size} fewer than recorded: "
                     f"truncated at offset {size}", file=name, offset=size)
            self.records_lost([r for r in recs if r["offset"] + r["length"] > size],
                              f"{name} was truncated at offset {size}")
        else:
            self.add("file-grown", f"{name} is {size} bytes, {size - expected} more than recorded: "
                     f"bytes were appended after offset {expected}", file=name, offset=expected)

    def localise(self, row: dict[str, Any], path: Path, scan: FileScan, recs: list[dict[str, Any]]) -> None:
        """Name the records whose bytes changed (each member has its own recorded SHA-256)."""
        spans = [(r["offset"], r["length"]) for r in recs]
        try:
            hashes = member_hashes(path, spans)
        except OSError as exc:
            self.add("file-unreadable", f"{row['name']}: {exc.strerror}", file=row["name"])
            return
        changed = 0
        for rec in recs:
            got = hashes.get((rec["offset"], rec["length"]))
            if got is None:
                continue  # past the end: reported as truncation
            if got != rec["member_sha256"]:
                changed += 1
                self.add("record-changed", f"the bytes of record {rec['record_id']} ({rec['record_type']}) "
                         f"at offset {rec['offset']} of {row['name']} changed", **self.where.record(rec))
        if changed == 0:
            gaps = uncovered(recs, min(scan.size, row["size"] or scan.size))
            where = ", ".join(f"{a}..{b}" + (" (warcinfo)" if a == 0 else "") for a, b in gaps) or "none"
            self.add("bytes-changed", f"{row['name']}: every catalogued record is intact; the change lies "
                     f"outside them, in bytes {where}", file=row["name"], offset=gaps[0][0] if gaps else None)

    # -- deep
    def check_members(self, row: dict[str, Any], scan: FileScan, recs: list[dict[str, Any]]) -> None:
        name = row["name"]
        rec_at = {r["offset"]: r for r in recs}
        for start, end, why in scan.damaged:
            if row["status"] == "interrupted" and start >= row["referenced_size"]:
                self.note("interrupted-tail", f"{name} at offset {start}: the interrupted run's last, "
                          f"uncommitted record is incomplete ({why})", file=name, offset=start)
                continue
            rec = rec_at.get(start)
            where = self.where.record(rec) if rec else {"file": name, "offset": start}
            self.add("record-corrupt", f"{name} at offset {start}: {why} (bytes {start}..{end} unreadable)", **where)
        for m in scan.members:
            rec = rec_at.get(m.offset)
            if rec is not None and self.member_agrees(rec, m):
                continue  # nearly every record: no problem, so no need to work out where it is
            if rec is not None:
                where = self.where.record(rec)
            else:  # a record the catalogue places elsewhere (its offset was edited) is still named as its own
                moved = next((r for r in recs if r["record_id"] == m.record_id), None) if m.record_id else None
                where = {**(self.where.record(moved) if moved else {}), "file": name, "offset": m.offset,
                         "record_id": m.record_id}
            self.check_record_digests(name, m, where)
            if rec is not None:
                self.compare_record(rec, m, where)
            elif not self.expected_uncatalogued(row, m):
                self.add("record-orphan", f"{name} at offset {m.offset}: record {m.record_id} ({m.record_type} "
                         f"{m.target_uri or ''}) belongs to no capture", **where)
        by_offset = {m.offset for m in scan.members}
        damaged_starts = {s for s, _e, _w in scan.damaged}
        for rec in recs:
            if rec["offset"] not in by_offset and rec["offset"] not in damaged_starts and rec["offset"] < scan.size:
                self.add("record-missing", f"the catalogue places record {rec['record_id']} at offset "
                         f"{rec['offset']} of {name}, but no record starts there", **self.where.record(rec))

    @staticmethod
    def member_agrees(rec: dict[str, Any], m: Member) -> bool:
        """True when check_record_digests and compare_record would both find nothing."""
        return (not m.errors and m.declared_block is not None
                and digest_matches(m.declared_block, m.block_sha256) is not False
                and not (m.declared_payload and m.payload_sha256
                         and digest_matches(m.declared_payload, m.payload_sha256) is False)
                and rec["length"] == m.length and rec["record_id"] == m.record_id
                and rec["record_type"] == m.record_type and (rec["target_uri"] or "") == (m.target_uri or "")
                and rec["block_sha256"] == m.block_sha256
                and not (rec["payload_sha256"] and m.payload_sha256 and rec["payload_sha256"] != m.payload_sha256))

    def check_record_digests(self, name: str, m: Member, where: dict[str, Any]) -> None:
        for err in m.errors:
            self.add("record-malformed", f"{name} at offset {m.offset}: {err}", **where)
        if m.declared_block is None:
            self.add("record-malformed", f"{name} at offset {m.offset}: no WARC-Block-Digest", **where)
        elif digest_matches(m.declared_block, m.block_sha256) is False:
            self.add("block-digest", f"{name} at offset {m.offset}: record {m.record_id} block digest does "
                     "not match its content", **where)
        if m.declared_payload and m.payload_sha256 and digest_matches(m.declared_payload, m.payload_sha256) is False:
            self.add("payload-digest", f"{name} at offset {m.offset}: record {m.record_id} payload digest "
                     "does not match its payload", **where)

    def compare_record(self, rec: dict[str, Any], m: Member, where: dict[str, Any]) -> None:
        checks = [
            ("length", rec["length"], m.length),
            ("record_id", rec["record_id"], m.record_id),
            ("record_type", rec["record_type"], m.record_type),
            ("target_uri", rec["target_uri"] or "", m.target_uri or ""),
            ("block_sha256", rec["block_sha256"], m.block_sha256),
        ]
        if rec["payload_sha256"] and m.payload_sha256:
            checks.append(("payload_sha256", rec["payload_sha256"], m.payload_sha256))
        for column, catalogued, found in checks:
            if catalogued != found:
                self.add("record-mismatch", f"capture_records.{column} of record {rec['record_id']} says "
                         f"{catalogued!r}, the WARC at offset {rec['offset']} has {found!r}",
                         table="capture_records", column=column, **where)

    def expected_uncatalogued(self, row: dict[str, Any], m: Member) -> bool:
        if m.offset == 0 and m.record_type == "warcinfo":
            if row.get("warcinfo_record_id") and m.record_id != row["warcinfo_record_id"]:
                return False
            return True
        return row["status"] == "interrupted" and m.offset >= row["referenced_size"]

    def check_records_point_at_files(self) -> None:
        """Records whose file warc_files does not list (one grouped query, not a row scan in Python)."""
        rows = self.db.execute(
            "SELECT warc_file, owner, owner_id FROM warc_records "
            "WHERE warc_file NOT IN (SELECT name FROM warc_files) ORDER BY warc_file, offset").fetchall()
        by_file: dict[str, list[tuple[str, int]]] = {}
        for name, owner, owner_id in rows:
            by_file.setdefault(name, []).append((owner, owner_id))
        for name, owners in by_file.items():
            if self.scope.captures is None or any(
                    i in (self.scope.captures if o == "capture" else self.scope.checks) for o, i in owners):
                self.add("file-uncatalogued", f"{len(owners)} records point at {name}, which warc_files does "
                         "not list", file=name)


def uncovered(recs: list[dict[str, Any]], size: int) -> list[tuple[int, int]]:
    """Byte ranges of a file that no catalogued record covers."""
    gaps, pos = [], 0
    for r in sorted(recs, key=lambda r: r["offset"]):
        if r["offset"] > pos:
            gaps.append((pos, r["offset"]))
        pos = max(pos, r["offset"] + r["length"])
    if pos < size:
        gaps.append((pos, size))
    return gaps

