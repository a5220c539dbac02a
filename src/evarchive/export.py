"""Citation bundles for a court: the evidence, an exhibit index a judge can read, and what a
clerk needs to verify it all without evarchive.

``export_bundle`` writes a directory (or, for an ``OUT`` ending in ``.zip``, a zip of that
directory) holding:

* ``evidence.wacz``: a WACZ 1.1.1 package whose WARC files hold the selected records *byte for
  byte*: every record's gzip member is copied unchanged from the archive, so its SHA-256 is the
  ``member_sha256`` the catalogue and the custody log recorded at capture time. Each bundle WARC
  starts with a new ``warcinfo`` record and holds the excerpts of one archive WARC, in their
  original order (request/response pairs stay adjacent, as replay indexers expect).
* ``exhibits.html`` (self-contained), ``exhibits.txt`` and ``exhibits.csv``: per claim, the
  exhibits supporting it, with provenance, hashes and record locations.
* ``bundle.json``: the same, for machines; ``custody/``: the custody-log entries that vouch for
  the exhibits (by default every entry from the first of them to the head, so the hash chain can
  be recomputed), the head, public keys and RFC 3161 tokens; ``verify_bundle.py`` (standard
  library only) and ``VERIFY.md``; ``SHA256SUMS`` over every other file.

The archive is only read; the export itself is recorded in the custody log (``export`` event,
with the SHA-256 of ``SHA256SUMS``) once the bundle is complete and before it appears at OUT,
then its outcome (``publishing.py``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import hashlib
import html
import io
import json
import os
import re
import shutil
import struct
import textwrap
import uuid
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from . import __version__, custody, publishing, waczsigning
from .archive import Archive
from .catalogue import one, to_json
from .errors import CouldNotRunError, UsageError, shown
from .queries import find_report, latest_version, not_support_reason
from .robustlinks import robust_link
from .witness import latest_public_copy
from .viewer import PAGE as VIEWER_PAGE
from .viewer import Viewer, find_viewer, replay_link, write_viewer
from .warcwriter import warc_digest, warc_fields

WACZ_NAME = "evidence.wacz"
MANIFEST_NAME = "SHA256SUMS"
VERIFY_SCRIPT = "verify_bundle.py"
ZIP_STAGED = ".bundle.zip"  # OUT.zip as built in the staging folder, before it is linked into place
WACZ_VERSION = "1.1.1"
BUNDLE_FORMAT = "evarchive-bundle-1"
COPY_CHUNK = 1 << 20
HEAD_LIMIT = 256 << 10  # inflated bytes read at most to find a record's WARC and HTTP heads
HEAD_STEP = 16 << 10  # ... in steps of this much
ZIP64_LIMIT = (1 << 31) - (1 << 20)  # announce ZIP64 before the 2 GiB boundary, with margin
# The decoded content of a content-coded page is hashed up to this size (streamed, so memory stays
# small; the cap bounds the time a hostile gzip can take). verify_bundle.py uses the same cap.
DECODED_LIMIT = 64 << 20
CONTENT_CODINGS = ("gzip", "x-gzip", "deflate")
# Records replay tools index (as cdxj-indexer does by default): not requests, not warc-fields.
INDEXED_TYPES = ("response", "revisit", "resource", "metadata")


# --------------------------------------------------------------------------- the model

@dataclass
class Record:
    """One WARC record to export: where it is in the archive, and where it lands in the bundle."""

    record_id: str
    record_type: str
    target_uri: str
    warc_file: str
    offset: int
    length: int
    member_sha256: str
    block_sha256: str
    payload_sha256: str | None
    role: str | None = None  # a check's records: head, answer, probe, verdict
    warc_date: str | None = None
    http_status: str | None = None
    mime: str | None = None
    payload_digest: str | None = None  # the WARC-Payload-Digest header, as written
    warc_content_type: str | None = None
    content_encoding: str | None = None  # the HTTP Content-Encoding of a response, as served
    decoded_sha256: str | None = None  # SHA-256 of the payload with that coding undone
    decoded_note: str | None = None  # why the decoded SHA-256 was not computed
    bundle_file: str | None = None
    bundle_offset: int | None = None
    wacz_offset: int | None = None

    def as_dict(self) -> dict[str, Any]:
        keys = ("record_id", "record_type", "target_uri", "warc_date", "member_sha256", "block_sha256",
                "payload_sha256", "length", "bundle_file", "bundle_offset", "wacz_offset")
        out = {k: getattr(self, k) for k in keys}
        out["original_file"], out["original_offset"] = self.warc_file, self.offset
        if self.role:
            out["role"] = self.role
        return out


@dataclass
class Exhibit:
    """A capture (or a live check's evidence) offered to the court, with its records."""

    kind: str  # 'capture' | 'check'
    row: dict[str, Any]
    source: dict[str, Any]
    records: list[Record]
    entry: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    number: int = 0
    original_of: int | None = None  # for a revisit: the capture id holding its payload
    artefacts: list[dict[str, Any]] = field(default_factory=list)  # screenshots and PDF, as bundle files
    chromium_version: str | None = None  # of a browser capture, from its metadata record

    @property
    def key(self) -> tuple[str, int]:
        return self.kind, int(self.row["id"])

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def not_support(self) -> str | None:
        """Why this capture does not support a claim (a soft 404, a wall...); None when it does."""
        return not_support_reason(self.row) if self.kind == "capture" else None

    @property
    def main_record(self) -> Record | None:
        """The record a judge looks at: the last response/revisit (the final hop)."""
        for rec in reversed(self.records):
            if rec.record_type in ("response", "revisit"):
                return rec
        return self.records[-1] if self.records else None

    @property
    def first_uri(self) -> str:
        # The metadata record names the first hop of the cited document; a browser capture's
        # records begin with the page's sub-resources.
        meta = next((r for r in self.records if r.record_type == "metadata"), None)
        if meta is not None:
            return meta.target_uri
        return self.records[0].target_uri if self.records else self.source["url"]


@dataclass
class Plan:
    """Everything the bundle shows, read from the catalogue in one snapshot."""

    mode: str  # 'report' | 'urls' | 'all'
    report: dict[str, Any] | None
    version: dict[str, Any] | None
    claims: list[dict[str, Any]]
    sources: list[dict[str, Any]]
    exhibits: list[Exhibit]
    latest_checks: dict[int, dict[str, Any]]
    live: dict[int, dict[str, Any]]  # source id -> what its latest check says, and what vouches for it
    head: dict[str, Any] | None
    keys: list[dict[str, Any]]
    timestamps: list[dict[str, Any]]
    warc_files: dict[str, dict[str, Any]]
    created: str = ""
    log_scope: str = "chain"
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[int, dict[str, Any]] = field(default_factory=dict)  # source id -> its latest capture
    _exported: list[Exhibit] | None = field(default=None, repr=False)
    _by_source: dict[int, list[Exhibit]] | None = field(default=None, repr=False)
    _cited: dict[int, dict[str, None]] | None = field(default=None, repr=False)

    @property
    def exported(self) -> list[Exhibit]:
        """Numbered (intact) exhibits, in exhibit order."""
        if self._exported is None:
            self._exported = sorted((e for e in self.exhibits if e.number), key=lambda e: e.number)
        return self._exported

    def by_source(self, source_id: int, kind: str | None = None) -> list[Exhibit]:
        if self._by_source is None:
            self._by_source = {}
            for e in self.exported:
                self._by_source.setdefault(e.source["id"], []).append(e)
        return [e for e in self._by_source.get(source_id, []) if kind is None or e.kind == kind]

    def cited_as(self, source_id: int) -> list[str]:
        """The spellings the report's citations use for a source."""
        if self._cited is None:
            self._cited = {}
            for claim in self.claims:
                for c in claim["citations"]:
                    self._cited.setdefault(c["source_id"], {})[c["url"]] = None
        return list(self._cited.get(source_id, {}))

    @property
    def unsupported(self) -> list[dict[str, Any]]:
        return [c for c in self.claims if not c["supporting"]]

    @property
    def unpreserved_sources(self) -> list[dict[str, Any]]:
        """Without a report: selected sources left without an intact capture in the bundle."""
        if self.mode == "report":
            return []
        kept = {e.source["id"] for e in self.exported if e.kind == "capture" and e.not_support is None}
        return [s for s in self.sources if s["id"] not in kept]


@dataclass
class ExportResult:
    path: Path
    exhibits: int
    records: int
    claims: int
    unsupported: list[dict[str, Any]]
    unpreserved_sources: list[dict[str, Any]]
    not_exported: list[dict[str, Any]]
    manifest_sha256: str
    wacz_sha256: str
    log_seq: int | None
    head: dict[str, Any] | None
    files: list[str]
    housekeeping: list[str] = field(default_factory=list)  # interrupted exports settled, leftovers removed

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "exhibits": self.exhibits, "records": self.records,
                "claims": self.claims, "unsupported_claims": self.unsupported,
                "unpreserved_sources": self.unpreserved_sources,
                "not_exported": self.not_exported, "manifest_sha256": self.manifest_sha256,
                "wacz_sha256": self.wacz_sha256, "export_log_seq": self.log_seq,
                "log_head": {"seq": self.head["seq"], "entry_hash": self.head["entry_hash"]}
                if self.head else None, "files": self.files, "housekeeping": self.housekeeping}


# --------------------------------------------------------------------------- entry point

def export_bundle(archive: Archive, out: Path, *, report: str | None = None, urls: Iterable[str] = (),
                  latest: bool = False, checks: bool = False, redact_log: bool = False,
                  viewer: Path | None = None) -> ExportResult:
    """Write the bundle to `out` (a new directory, or a .zip) and log the export.

    Unusable input (unknown report, URL without capture, existing `out`) raises UsageError
    before anything is written. The caller decides what an unsupported claim means (exit 1).
    `viewer` is the folder of ReplayWeb.page's npm package, copied into the bundle to replay it.
    """
    urls = list(urls)
    replay_viewer = find_viewer(viewer) if viewer is not None else None
    if report and urls:
        raise UsageError("give URLs or --report, not both")
    is_zip = _check_out(out)
    plan = select(archive, report, urls, latest, checks)
    plan.log_scope = "entries" if redact_log else "chain"
    check_integrity(archive, plan)
    number_exhibits(plan)
    plan.created = _now_seconds()
    housekeeping = ([] if archive.read_only else publishing.reconcile(archive.db)) + \
        publishing.remove_abandoned_in(out.parent)
    staging = publishing.make_staging(out)
    try:
        manifest_sha, wacz_sha, files = build(archive, plan, staging.path, replay_viewer)
        publishing.pause_point("built")
        if is_zip:  # zipped before the entry: between entry and publishing only a link is made
            _zip_dir(staging.path, staging.path / ZIP_STAGED, out.stem)
        _check_out(out)  # again: building took a while, and an entry for a refused bundle is noise
        if archive.read_only:  # a read-only mount: the bundle is written, no entry can be
            entry = None
            _publish(staging.path, out, is_zip)
        else:
            # The entry is committed before the bundle appears at OUT, so no bundle ever sits there
            # unknown to the log; its outcome entry follows (or the next export records it).
            entry = publishing.log_prepared(archive.db, shown(out.name),
                                            _export_details(out, plan, manifest_sha, wacz_sha), staging.path, out)
            publishing.pause_point("before-publish")
            try:
                _publish(staging.path, out, is_zip)
            except BaseException:
                publishing.log_outcome(archive.db, entry["seq"], later_run=False)  # it says what is at OUT
                raise
            publishing.pause_point("after-publish")
            publishing.log_outcome(archive.db, entry["seq"], later_run=False)
    finally:
        staging.close()
    return ExportResult(out, len(plan.exported), sum(len(e.records) for e in plan.exported),
                        len(plan.claims), plan.unsupported, plan.unpreserved_sources, _not_exported(plan),
                        manifest_sha, wacz_sha, entry["seq"] if entry else None, plan.head, files, housekeeping)


def _check_out(out: Path) -> bool:
    """OUT must not exist (nothing is ever overwritten) and its parent must. True for a .zip."""
    if out.exists() or out.is_symlink():
        raise UsageError(f"{out} already exists; an export never overwrites anything")
    if not out.parent.is_dir():
        raise UsageError(f"{out.parent} is not a directory")
    if out.suffix.lower() == ".wacz":
        raise UsageError("OUT is the bundle (a directory, or NAME.zip); the WACZ is one file inside it")
    return out.suffix.lower() == ".zip"


def _now_seconds() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- selection

@contextlib.contextmanager
def _snapshot(db: sqlite_utils.Database) -> Iterator[None]:
    """One read transaction: a capture committed meanwhile is either wholly in or wholly out."""
    if db.conn.in_transaction:
        yield
        return
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


def select(archive: Archive, report: str | None, urls: list[str], latest: bool, checks: bool) -> Plan:
    db = archive.db
    with _snapshot(db):
        rep = version = None
        claims: list[dict[str, Any]] = []
        if report:
            rep, version, claims = _report_claims(db, report)
            source_ids = list(dict.fromkeys(s["source_id"] for c in claims for s in c["citations"]))
            mode = "report"
        elif urls:
            source_ids, mode = _url_sources(db, urls), "urls"
        else:
            source_ids, mode = [r["id"] for r in db.query("SELECT id FROM sources ORDER BY id")], "all"
        sources = _rows_by_id(db, "sources", source_ids)
        exhibits = _capture_exhibits(db, source_ids, latest)
        if mode == "all":
            captured = {e.source["id"] for e in exhibits}
            sources = [s for s in sources if s["id"] in captured]
            if not exhibits:
                raise UsageError("nothing to export: the archive has no successful capture")
        if checks:
            exhibits += _check_exhibits(db, source_ids)
        _attach_entries(db, exhibits)
        latest_checks = _latest_checks(db, source_ids)
        live_entries = _check_entries(db, [c["id"] for c in latest_checks.values()])
        live = {sid: live_status(check, live_entries.get(check["id"])) for sid, check in latest_checks.items()}
        return Plan(mode, rep, version, claims, sources, exhibits, latest_checks, live,
                    custody.head(db), _keys(db), _timestamps(db),
                    {r["name"]: r for r in db.query("SELECT * FROM warc_files")},
                    attempts=_latest_attempts(db, source_ids))


def _latest_attempts(db: sqlite_utils.Database, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    """Each source's latest capture attempt, so an index can say why a claim has no exhibit."""
    found: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(source_ids):
        marks = ",".join("?" * len(chunk))
        for row in db.query(f"""
                SELECT c.source_id, c.status, c.started_at, c.http_status, c.error_class, c.error_message
                FROM captures c JOIN (SELECT source_id, MAX(id) AS id FROM captures
                                      WHERE source_id IN ({marks}) GROUP BY source_id) last ON last.id = c.id""",
                            chunk):
            found[row["source_id"]] = row
    return found


def why_no_exhibit(attempt: dict[str, Any] | None) -> str:
    """Why a cited source has no intact capture in the bundle, in a clerk's words."""
    if attempt is None:
        return "never captured"
    if attempt["status"] != "ok":
        status = f" (HTTP {attempt['http_status']})" if attempt.get("http_status") else ""
        return (f"the latest capture, {attempt['started_at']}, failed{status}: {attempt['error_class']}: "
                f"{attempt['error_message']}")
    return "its captures did not pass the integrity check at export (see 'not exported')"


def _report_claims(db: sqlite_utils.Database, ref: str) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    rep = find_report(db, ref)  # UsageError for an unknown report
    version = latest_version(db, rep["id"])
    if version is None:
        raise UsageError(f"report {ref!r} has no imported version")
    claims = {row["id"]: {**row, "citations": [], "exhibits": [], "checks": []} for row in db.query(
        "SELECT id, ordinal, text, sha256, scope, paragraph, page, line, offset FROM claims "
        "WHERE version_id = ? ORDER BY ordinal", [version["id"]])}
    for row in db.query("SELECT claim_id, url, via, note, source_id, paragraph, offset FROM citations "
                        "WHERE version_id = ? ORDER BY claim_id, ordinal", [version["id"]]):
        claims[row["claim_id"]]["citations"].append(row)
    return rep, version, list(claims.values())


def _url_sources(db: sqlite_utils.Database, urls: list[str]) -> list[int]:
    from .catalogue import find_source

    ids = []
    for url in urls:
        source = find_source(db, url)
        if source is None:
            raise UsageError(f"no source {url!r} in the catalogue: nothing to export for it")
        if one(db, "SELECT 1 AS x FROM captures WHERE source_id = ? AND status = 'ok'", [source["id"]]) is None:
            raise UsageError(f"{url} has no successful capture: nothing to export for it")
        ids.append(source["id"])
    return list(dict.fromkeys(ids))


def _rows_by_id(db: sqlite_utils.Database, table: str, ids: list[int]) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for part in _chunks(ids):
        marks = ",".join("?" for _ in part)
        rows.update({r["id"]: r for r in db.query(f"SELECT * FROM [{table}] WHERE id IN ({marks})", part)})
    return [rows[i] for i in ids if i in rows]


def _chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _capture_exhibits(db: sqlite_utils.Database, source_ids: list[int], latest: bool) -> list[Exhibit]:
    """Every good capture of the sources (or the latest one), plus the originals revisits need."""
    sources = {s["id"]: s for s in _rows_by_id(db, "sources", source_ids)}
    captures: dict[int, dict[str, Any]] = {}
    for part in _chunks(source_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT * FROM captures WHERE status = 'ok' AND source_id IN ({marks}) "
                            "ORDER BY id", part):
            captures[row["id"]] = row
    if latest:
        last = {row["source_id"]: row for row in captures.values()}
        captures = {row["id"]: row for row in last.values()}
    wanted = {row["refers_to_capture_id"] for row in captures.values() if row["refers_to_capture_id"]}
    for row in _rows_by_id(db, "captures", sorted(wanted - set(captures))):
        captures[row["id"]] = row
        sources.setdefault(row["source_id"], one(db, "SELECT * FROM sources WHERE id = ?", [row["source_id"]]))
    records = _records(db, "capture_records", "capture_id", sorted(captures))
    out = []
    for cid in sorted(captures):
        row = captures[cid]
        exhibit = Exhibit("capture", row, sources[row["source_id"]], records.get(cid, []))
        exhibit.original_of = row["refers_to_capture_id"]
        out.append(exhibit)
    return out


def _records(db: sqlite_utils.Database, table: str, owner: str, ids: list[int]) -> dict[int, list[Record]]:
    out: dict[int, list[Record]] = {}
    role = ", role" if table == "check_records" else ""
    for part in _chunks(ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT {owner} AS owner, warc_file, offset, length, record_id, record_type, "
                            f"target_uri, block_sha256, payload_sha256, member_sha256{role} FROM [{table}] "
                            f"WHERE {owner} IN ({marks}) ORDER BY warc_file, offset", part):
            owner_id = row.pop("owner")
            out.setdefault(owner_id, []).append(Record(**row))
    return out


def _check_exhibits(db: sqlite_utils.Database, source_ids: list[int]) -> list[Exhibit]:
    """Live checks of the sources that kept what the server answered as WARC evidence."""
    if "checks" not in db.table_names():
        return []
    sources = {s["id"]: s for s in _rows_by_id(db, "sources", source_ids)}
    rows: list[dict[str, Any]] = []
    for part in _chunks(source_ids):
        marks = ",".join("?" for _ in part)
        rows += db.query(f"SELECT * FROM checks WHERE source_id IN ({marks}) AND id IN "
                         "(SELECT check_id FROM check_records) ORDER BY id", part)
    records = _records(db, "check_records", "check_id", [r["id"] for r in rows])
    return [Exhibit("check", r, sources[r["source_id"]], records.get(r["id"], [])) for r in rows]


def _attach_entries(db: sqlite_utils.Database, exhibits: list[Exhibit]) -> None:
    """The custody entry that vouches for each exhibit (the capture's, or the check batch's)."""
    cols = ", ".join(f"l.{c}" for c in custody.ENTRY_COLUMNS)
    by_capture: dict[int, dict[str, Any]] = {}
    capture_ids = [e.row["id"] for e in exhibits if e.kind == "capture"]
    check_ids = [e.row["id"] for e in exhibits if e.kind == "check"]
    for part in _chunks(capture_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT {cols}, json_extract(l.details, '$.capture_id') AS owner FROM custody_log l "
                            f"WHERE l.event = 'capture' AND json_extract(l.details, '$.capture_id') IN ({marks}) "
                            "ORDER BY l.seq", part):
            by_capture.setdefault(row.pop("owner"), row)
    by_check = _check_entries(db, check_ids)
    for exhibit in exhibits:
        found = (by_capture if exhibit.kind == "capture" else by_check).get(exhibit.row["id"])
        exhibit.entry = found


def _check_entries(db: sqlite_utils.Database, check_ids: list[int]) -> dict[int, dict[str, Any]]:
    """check id -> the custody entry of the batch that committed it."""
    cols = ", ".join(f"l.{c}" for c in custody.ENTRY_COLUMNS)
    out: dict[int, dict[str, Any]] = {}
    for part in _chunks(check_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT {cols}, json_extract(j.value, '$.check_id') AS owner FROM custody_log l, "
                            "json_each(l.details, '$.checks') j WHERE l.event = 'check' AND "
                            f"json_extract(j.value, '$.check_id') IN ({marks}) ORDER BY l.seq", part):
            out.setdefault(row.pop("owner"), row)
    return out


def _latest_checks(db: sqlite_utils.Database, source_ids: list[int]) -> dict[int, dict[str, Any]]:
    if "checks" not in db.table_names():
        return {}
    out: dict[int, dict[str, Any]] = {}
    for part in _chunks(source_ids):
        marks = ",".join("?" for _ in part)
        for row in db.query(f"SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
                            f"WHERE source_id IN ({marks}) GROUP BY source_id) m ON k.id = m.id", part):
            out[row["source_id"]] = row
    return out


def _keys(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    if "signing_keys" not in db.table_names():
        return []
    return list(db.query("SELECT key_id, algorithm, public_key_pem, created_at, retired_at FROM signing_keys "
                         "ORDER BY created_at"))


def _timestamps(db: sqlite_utils.Database) -> list[dict[str, Any]]:
    if "timestamps" not in db.table_names():
        return []
    return list(db.query("SELECT * FROM timestamps ORDER BY covers_seq, id"))


# --------------------------------------------------------------------------- integrity

def check_integrity(archive: Archive, plan: Plan) -> None:
    """Mark every exhibit whose rows, custody entry or bytes disagree: such evidence is named in
    the index but never exported, since the bundle asserts that every byte in it is as captured."""
    for exhibit in plan.exhibits:
        exhibit.problems += _entry_problems(exhibit)
    for exhibit in plan.exhibits:  # bytes only for what the rows still vouch for
        if not exhibit.problems:
            exhibit.problems += _byte_problems(archive, exhibit)
    by_capture = {e.row["id"]: e for e in plan.exhibits if e.kind == "capture"}
    for exhibit in plan.exhibits:
        original = by_capture.get(exhibit.original_of) if exhibit.original_of else None
        if exhibit.original_of and (original is None or not original.intact) and exhibit.intact:
            exhibit.problems.append(f"it is a revisit of capture {exhibit.original_of}, whose payload "
                                    "is not intact")


def _entry_problems(exhibit: Exhibit) -> list[str]:
    entry, what = exhibit.entry, f"{exhibit.kind} {exhibit.row['id']}"
    if not exhibit.records:
        return [f"{what} has no WARC records in the catalogue"]
    if entry is None:
        return [f"no custody-log entry vouches for {what}"]
    if custody.entry_hash(entry["seq"], entry["at"], entry["event"], entry["subject"], entry["details"],
                          entry["prev_hash"]) != entry["entry_hash"]:
        return [f"custody-log entry {entry['seq']} for {what} was edited (its hash no longer matches)"]
    details = json.loads(entry["details"])
    if exhibit.kind == "check":
        return _check_entry_problems(exhibit, details)
    problems = [f"captures.{k} differs from custody-log entry {entry['seq']}"
                for k, v in (details.get("capture") or {}).items() if exhibit.row.get(k) != v]
    vouched = {r.get("record_id"): r for r in details.get("records") or []}
    for rec in exhibit.records:
        expected = vouched.pop(rec.record_id, None)
        if expected is None:
            problems.append(f"record {rec.record_id} is not in custody-log entry {entry['seq']}")
            continue
        problems += [f"capture_records.{k} of {rec.record_id} differs from custody-log entry {entry['seq']}"
                     for k, v in expected.items() if getattr(rec, k, v) != v]
    problems += [f"record {rid} of custody-log entry {entry['seq']} is missing from the catalogue"
                 for rid in vouched]
    return problems


def _check_entry_problems(exhibit: Exhibit, details: dict[str, Any]) -> list[str]:
    """A check's entry carries the SHA-256 of its whole row and of each record it wrote."""
    mine = next((c for c in details.get("checks") or [] if c.get("check_id") == exhibit.row["id"]), {})
    problems = [] if mine.get("row_sha256") == hashlib.sha256(to_json(exhibit.row).encode()).hexdigest() else [
        f"checks row {exhibit.row['id']} differs from its custody-log entry {exhibit.entry['seq']}"]  # type: ignore[index]
    vouched = list(mine.get("records") or [])
    return problems + [f"record {r.record_id} of check {exhibit.row['id']} is not vouched for by its "
                       "custody-log entry" for r in exhibit.records if r.member_sha256 not in vouched]


def _byte_problems(archive: Archive, exhibit: Exhibit) -> list[str]:
    """Hash every member as it is on disk now, and read the heads the index needs."""
    problems = []
    by_file: dict[str, list[Record]] = {}
    for rec in exhibit.records:
        by_file.setdefault(rec.warc_file, []).append(rec)
    for name, recs in by_file.items():
        path = archive.warcs_dir / name
        try:
            with open(path, "rb", buffering=0) as fh:
                for rec in recs:
                    digest, head = _inspect_member(fh.fileno(), rec.offset, rec.length)
                    if digest != rec.member_sha256:
                        problems.append(f"record {rec.record_id} in {name} at offset {rec.offset}: its bytes "
                                        "differ from the SHA-256 recorded at capture")
                    else:
                        _parse_heads(rec, head)
                        if exhibit.kind == "capture" and rec is exhibit.main_record:
                            _decode_payload(fh.fileno(), rec)
        except OSError as exc:
            problems.append(f"WARC file {name} cannot be read ({exc.strerror or exc})")
    return problems


def _read_span(fd: int, offset: int, length: int) -> Iterator[bytes]:
    pos, end = offset, offset + length
    while pos < end:
        chunk = os.pread(fd, min(COPY_CHUNK, end - pos), pos)
        if not chunk:
            return  # the file is shorter than the catalogue says: the hash will not match
        pos += len(chunk)
        yield chunk


def _inspect_member(fd: int, offset: int, length: int) -> tuple[str, bytes]:
    """SHA-256 of the member's exact bytes, and its first inflated bytes: enough for the WARC
    head and an HTTP head (inflating whole bodies would double the cost of an export)."""
    digest = hashlib.sha256()
    inflater = zlib.decompressobj(wbits=31)
    head = b""
    for chunk in _read_span(fd, offset, length):
        digest.update(chunk)
        pending = chunk
        while pending and not _heads_complete(head) and not inflater.eof:
            try:
                head += inflater.decompress(pending, HEAD_STEP)
            except zlib.error:
                head, pending = head or b"-", b""
                break
            pending = inflater.unconsumed_tail
    return digest.hexdigest(), head


def _heads_complete(head: bytes) -> bool:
    """Both heads in hand (the WARC head and, if any, the HTTP head after it), or the limit hit."""
    return len(head) >= HEAD_LIMIT or head.count(b"\r\n\r\n") >= 2


def _parse_heads(rec: Record, data: bytes) -> None:
    """WARC-Date, payload digest and, for HTTP records, status and MIME type (for the CDXJ index)."""
    warc_head, _, block = data.partition(b"\r\n\r\n")
    fields = _fields(warc_head.decode("utf-8", "replace").split("\r\n")[1:])
    rec.warc_date = fields.get("warc-date")
    rec.payload_digest = fields.get("warc-payload-digest")
    rec.warc_content_type = fields.get("content-type")
    if rec.record_type in ("response", "revisit") and (rec.warc_content_type or "").startswith("application/http"):
        http_head = block.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        parts = http_head[0].split(" ", 2)
        rec.http_status = parts[1] if len(parts) > 1 and parts[1].isdigit() else None
        http_fields = _fields(http_head[1:])
        rec.mime = _mime(http_fields.get("content-type"))
        rec.content_encoding = http_fields.get("content-encoding")
    else:
        rec.mime = _mime(rec.warc_content_type)
    if rec.record_type == "revisit":
        rec.mime = "warc/revisit"


def _decode_payload(fd: int, rec: Record) -> None:
    """The SHA-256 of the page as a browser (or someone saving it) sees it: the payload with its
    gzip/deflate coding undone. Only content-coded responses are inflated: for the rest the
    decoded content is the payload as served, whose SHA-256 the catalogue already has."""
    coding = (rec.content_encoding or "").strip().lower()
    if rec.record_type != "response" or coding in ("", "identity"):
        rec.decoded_sha256 = rec.payload_sha256
        return
    if coding not in CONTENT_CODINGS:
        rec.decoded_note = f"not computed: evarchive does not decode the {coding!r} content coding"
        return
    rec.decoded_sha256, rec.decoded_note = decoded_sha256(_payload_chunks(fd, rec), coding)


def _payload_chunks(fd: int, rec: Record) -> Iterator[bytes]:
    """The HTTP payload of a response record, inflated from its gzip member piece by piece."""
    member = zlib.decompressobj(wbits=31)
    head, left = b"", -1  # payload bytes still to come (-1: the heads are not read yet)
    for chunk in _read_span(fd, rec.offset, rec.length):
        pending = chunk
        while pending and not member.eof:
            data = member.decompress(pending, COPY_CHUNK)
            pending = member.unconsumed_tail
            if left < 0:
                head += data
                warc_end = head.find(b"\r\n\r\n")
                http_end = head.find(b"\r\n\r\n", warc_end + 4) if warc_end >= 0 else -1
                if http_end < 0:
                    if len(head) > HEAD_LIMIT:
                        return
                    continue
                block = int(_fields(head[:warc_end].decode("latin-1").split("\r\n")[1:]).get("content-length", 0))
                left = block - (http_end - warc_end)
                data, head = head[http_end + 4:], b""
            take = data[:left]
            left -= len(take)
            if take:
                yield take


def decoded_sha256(chunks: Iterable[bytes], coding: str, limit: int = DECODED_LIMIT) -> tuple[str | None, str | None]:
    """(SHA-256 of the content with its gzip/deflate coding undone, None) or (None, why not).
    Streamed; stops once the content passes ``limit``. Deflate is zlib-wrapped when its first two
    bytes are a zlib header, raw otherwise (servers send both). verify_bundle.py follows the same rules."""
    digest, produced, decoder = hashlib.sha256(), 0, None
    try:
        for chunk in chunks:
            if decoder is None:
                decoder = zlib.decompressobj(_coding_wbits(coding, chunk))
            pending = chunk
            while pending:
                if decoder.eof:
                    return None, f"not computed: bytes follow the end of the {coding} stream"
                out = decoder.decompress(pending, COPY_CHUNK)
                pending = decoder.unconsumed_tail or decoder.unused_data
                produced += len(out)
                if produced > limit:
                    return None, f"not computed: larger than {limit >> 20} MiB decoded"
                digest.update(out)
    except zlib.error as exc:
        return None, f"not computed: the body does not decode as {coding} ({exc})"
    if decoder is None or not decoder.eof:
        return None, f"not computed: the {coding} stream is incomplete"
    return digest.hexdigest(), None


def _coding_wbits(coding: str, start: bytes) -> int:
    if coding != "deflate":
        return 31
    zlib_header = len(start) >= 2 and start[0] & 0x0F == 8 and ((start[0] << 8) | start[1]) % 31 == 0
    return 15 if zlib_header else -15


def _fields(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out


def _mime(value: str | None) -> str | None:
    return re.split(r"[;\s]", value.strip(), maxsplit=1)[0] if value and value.strip() else None


# --------------------------------------------------------------------------- numbering and claims

def number_exhibits(plan: Plan) -> None:
    """Exhibit numbers in the order a reader meets them: claim by claim, each source's captures
    oldest first (a revisit's original just before it), then the live-check evidence."""
    by_source: dict[int, list[Exhibit]] = {}
    for exhibit in plan.exhibits:
        by_source.setdefault(exhibit.source["id"], []).append(exhibit)
    by_capture = {e.row["id"]: e for e in plan.exhibits if e.kind == "capture"}
    order = ([s["source_id"] for c in plan.claims for s in c["citations"]] if plan.mode == "report"
             else [s["id"] for s in plan.sources])
    counter = iter(range(1, len(plan.exhibits) + 1))
    for kind in ("capture", "check"):
        for source_id in dict.fromkeys(order):
            for exhibit in by_source.get(source_id, []):
                if exhibit.kind != kind or not exhibit.intact or exhibit.number:
                    continue
                original = by_capture.get(exhibit.original_of) if exhibit.original_of else None
                if original is not None and not original.number:
                    original.number = next(counter)
                exhibit.number = next(counter)
    for claim in plan.claims:
        chosen = [e for sid in dict.fromkeys(s["source_id"] for s in claim["citations"])
                  for e in plan.by_source(sid)]
        claim["exhibits"] = sorted(e.number for e in chosen if e.kind == "capture")
        claim["supporting"] = sorted(e.number for e in chosen if e.kind == "capture" and e.not_support is None)
        claim["checks"] = sorted(e.number for e in chosen if e.kind == "check")


def _not_exported(plan: Plan) -> list[dict[str, Any]]:
    return [{"kind": e.kind, "id": e.row["id"], "url": e.source["url"], "problems": e.problems}
            for e in plan.exhibits if not e.number]


# --------------------------------------------------------------------------- writing

def build(archive: Archive, plan: Plan, staging: Path, viewer: Viewer | None = None) -> tuple[str, str, list[str]]:
    """Write every file of the bundle into `staging`; returns the SHA-256 of the manifest and
    of the WACZ, and the bundle's file names."""
    _write_wacz(archive, plan, staging / WACZ_NAME)
    _write_custody(archive.db, plan, staging / "custody")
    _write_artefacts(archive, plan, staging)
    data = bundle_data(plan)
    if viewer is not None:
        write_viewer(viewer, staging, WACZ_NAME, data["exhibits"])
        data["viewer"] = {"page": VIEWER_PAGE, "software": f"ReplayWeb.page {viewer.version}",
                          "licence": viewer.licence}
    _write_text(staging / "bundle.json", _readable_json(data))
    _write_text(staging / "exhibits.html", render_html(data))
    _write_text(staging / "exhibits.txt", render_text(data))
    _write_text(staging / "exhibits.csv", render_csv(data))
    _write_text(staging / "VERIFY.md", render_verify(data))
    if data["claims"]:
        _write_text(staging / REPORT_PAGE, render_report(data, _witness_copies(archive.db, plan)))
    shutil.copyfile(Path(__file__).with_name(VERIFY_SCRIPT), staging / VERIFY_SCRIPT)
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    manifest = "".join(f"{_file_sha256(staging / name)}  {name}\n" for name in files)
    _write_text(staging / MANIFEST_NAME, manifest)
    wacz_sha = next(line.split()[0] for line in manifest.splitlines() if line.endswith("  " + WACZ_NAME))
    return hashlib.sha256(manifest.encode()).hexdigest(), wacz_sha, [*files, MANIFEST_NAME]


REPORT_PAGE = "report.html"


def _witness_copies(db: sqlite_utils.Database, plan: Plan) -> dict[int, dict[str, Any]]:
    """Each source's latest public copy made by an independent witness, if any."""
    copies = {source["id"]: latest_public_copy(db, source["id"]) for source in plan.sources}
    return {source_id: copy for source_id, copy in copies.items() if copy}


def render_report(data: dict[str, Any], witnesses: dict[int, dict[str, Any]]) -> str:
    """The report's claims with every citation as a Robust Link: href and data-originalurl the URL
    as cited, data-versionurl its exhibit in this bundle, data-versiondate the capture's date; a
    public copy made by an independent witness is linked beside it (Robust Links, as the
    exhibit index's evidence stands behind each one)."""
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    title = (data.get("report") or {}).get("title") or "Report"
    parts = ["<!DOCTYPE html><html><head><meta charset=\"utf-8\">",
             f"<title>{_h(title)}: citations as Robust Links</title></head><body>", f"<h1>{_h(title)}</h1>"]
    for claim in data["claims"]:
        links = []
        for cit in claim["citations"]:
            number = next(iter(cit["exhibits"]), None)
            exhibit = exhibits.get(number) if number is not None else None
            links.append(robust_link(cit["url"], cit["url"], f"exhibits.html#exhibit-{number}" if exhibit else None,
                                     (exhibit["captured_at"] or "")[:10] if exhibit else None))
            copy = witnesses.get(cit["source_id"])
            if copy:
                made = _h((copy["archived_at"] or "")[:10])
                links.append(f"(<a href=\"{_h(copy['memento_url'])}\">public copy, {made}</a>)")
        parts.append(f"<p id=\"claim-{claim['claim']}\">{_h(claim['text'])} {' '.join(links)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _readable_json(data: dict[str, Any]) -> str:
    """One top-level key a line and one list item (exhibit, claim...) a line: readable in any
    editor, and written by the C encoder (json's indent= falls back to pure Python: 10x slower)."""
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            inner = ",\n  ".join(dump(v) for v in value)
            parts.append(f" {dump(key)}: [\n  {inner}\n ]")
        else:
            parts.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8", newline="") as fh:
        fh.write(text)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _publish(staging: Path, out: Path, is_zip: bool) -> None:
    """Move the finished bundle into place without ever replacing something at OUT."""
    if is_zip:
        tmp = staging / ZIP_STAGED
        try:
            os.link(tmp, out)  # atomic, and fails if OUT appeared meanwhile: never overwrite
        except FileExistsError:
            raise UsageError(f"{out} already exists; an export never overwrites anything") from None
        except OSError:  # no hard links here (FAT/exFAT media): copy, still refusing to overwrite
            _copy_exclusive(tmp, out)
        return
    if out.exists():
        raise UsageError(f"{out} already exists; an export never overwrites anything")
    staging.rename(out)


def _copy_exclusive(src: Path, dest: Path) -> None:
    try:
        with open(src, "rb") as fin, open(dest, "xb") as fout:
            shutil.copyfileobj(fin, fout, COPY_CHUNK)
            fout.flush()
            os.fsync(fout.fileno())
    except FileExistsError:
        raise UsageError(f"{dest} already exists; an export never overwrites anything") from None
    except BaseException:
        dest.unlink(missing_ok=True)  # ours, half written
        raise


def _zip_dir(src: Path, dest: Path, top: str) -> None:
    """A plain zip (stored: the WACZ inside is already compressed) with one top-level folder."""
    with zipfile.ZipFile(dest, "x", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for path in sorted(p for p in src.rglob("*") if p.is_file() and p != dest):
            zf.write(path, f"{top}/{path.relative_to(src).as_posix()}")


# --------------------------------------------------------------------------- the WACZ

@dataclass
class _OutWarc:
    name: str
    source: str
    records: list[Record]
    head: bytes = b""

    @property
    def size(self) -> int:
        return len(self.head) + sum(r.length for r in self.records)


def _plan_warcs(plan: Plan) -> list[_OutWarc]:
    """One bundle WARC per archive WARC that holds exported records, records in file order."""
    groups: dict[str, list[Record]] = {}
    for exhibit in plan.exported:
        for rec in exhibit.records:
            groups.setdefault(rec.warc_file, []).append(rec)
    outs = []
    for name in sorted(groups):
        recs = sorted({r.record_id: r for r in groups[name]}.values(), key=lambda r: r.offset)
        stem = name[:-8] if name.endswith(".warc.gz") else name
        outs.append(_OutWarc(f"{stem}.excerpt.warc.gz", name, recs))
    return outs


def _warcinfo(out: _OutWarc, plan: Plan, source_row: dict[str, Any] | None) -> bytes:
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"), ("format", "WARC File Format 1.1"),
        ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
        ("description", "Excerpt for a citation bundle: every record after this one is a gzip member "
                        "copied byte for byte from the archive WARC file named in source-warc, so its "
                        "SHA-256 is the one the custody log recorded at capture"),
        ("source-warc", out.source), ("exported", plan.created), ("records", str(len(out.records)))]
    if source_row and source_row.get("sha256"):
        fields.append(("source-warc-sha256", source_row["sha256"]))
    body = warc_fields(fields)
    head = "\r\n".join([
        "WARC/1.1", "WARC-Type: warcinfo", f"WARC-Record-ID: <urn:uuid:{uuid.uuid4()}>",
        f"WARC-Date: {plan.created}", f"WARC-Filename: {out.name}", "Content-Type: application/warc-fields",
        f"WARC-Block-Digest: {warc_digest(hashlib.sha256(body).hexdigest())}",
        f"Content-Length: {len(body)}"]) + "\r\n\r\n"
    packer = zlib.compressobj(6, zlib.DEFLATED, 31)
    return packer.compress(head.encode() + body + b"\r\n\r\n") + packer.flush()


def _zipinfo(name: str, created: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=tuple(int(x) for x in re.findall(r"\d+", created)[:6]))
    info.compress_type = zipfile.ZIP_STORED  # WACZ: archive/ and indexes must be stored
    info.external_attr = 0o644 << 16
    return info


def _write_wacz(archive: Archive, plan: Plan, path: Path) -> None:
    outs = _plan_warcs(plan)
    resources: list[dict[str, Any]] = []
    with zipfile.ZipFile(path, "x", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for out in outs:
            out.head = _warcinfo(out, plan, plan.warc_files.get(out.source))
            resources.append(_copy_warc(archive, zf, out, plan.created))
        pages = _pages_jsonl(plan, archive)
        for name, data in (("indexes/index.cdx", _cdxj(outs)), ("pages/pages.jsonl", pages)):
            zf.writestr(_zipinfo(name, plan.created), data)
            resources.append(_resource(name, data))
        package = _datapackage(plan, resources)
        zf.writestr(_zipinfo("datapackage.json", plan.created), package)
        zf.writestr(_zipinfo("datapackage-digest.json", plan.created),
                    waczsigning.digest_file(archive, package, plan.created))
    offsets = zip_data_offsets(path)
    for out in outs:
        for rec in out.records:
            rec.wacz_offset = offsets[f"archive/{out.name}"] + (rec.bundle_offset or 0)


def _copy_warc(archive: Archive, zf: zipfile.ZipFile, out: _OutWarc, created: str) -> dict[str, Any]:
    """Stream the warcinfo and then each member unchanged; every member is hashed again on the
    way, so bytes that changed since the integrity pass stop the export instead of shipping."""
    name = f"archive/{out.name}"
    digest = hashlib.sha256(out.head)
    with zf.open(_zipinfo(name, created), "w", force_zip64=out.size > ZIP64_LIMIT) as dest, \
            open(archive.warcs_dir / out.source, "rb", buffering=0) as src:
        dest.write(out.head)
        pos = len(out.head)
        for rec in out.records:
            member = hashlib.sha256()
            for chunk in _read_span(src.fileno(), rec.offset, rec.length):
                member.update(chunk)
                digest.update(chunk)
                dest.write(chunk)
            if member.hexdigest() != rec.member_sha256:
                raise CouldNotRunError(f"record {rec.record_id} in {out.source} changed while it was being "
                                       "exported; nothing was written. Run `evarchive verify`.")
            rec.bundle_file, rec.bundle_offset = name, pos
            pos += rec.length
    return {"name": out.name.lower(), "path": name, "hash": "sha256:" + digest.hexdigest(), "bytes": out.size}


def _resource(path: str, data: bytes) -> dict[str, Any]:
    return {"name": path.rsplit("/", 1)[-1].lower(), "path": path,
            "hash": "sha256:" + hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def zip_data_offsets(path: Path) -> dict[str, int]:
    """Where each stored entry's bytes start in the zip (after its local header): with it a
    record can be cut out of the .wacz with dd or tail/head, no unzip needed."""
    out = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            out[info.filename] = info.header_offset + 30 + name_len + extra_len
    return out


def _cdxj(outs: list[_OutWarc]) -> bytes:
    """A sorted CDXJ index as pywb and ReplayWeb.page read it (`indexes/index.cdx`, plain text:
    ReplayWeb.page loads .cdx/.cdxj directly but ignores a .cdx.gz without a ZipNum .idx)."""
    import surt

    lines = []
    for out in outs:
        for rec in out.records:
            if rec.record_type not in INDEXED_TYPES or (rec.warc_content_type or "").startswith(
                    "application/warc-fields"):
                continue
            url = rec.target_uri
            if rec.role == "head":  # a HEAD answer must never be replayed for a GET of the page
                url += ("&" if "?" in url else "?") + "__wb_method=head"
            try:
                key = surt.surt(url)
            except Exception:  # what cdxj-indexer does with a URL surt cannot parse
                key = url
            entry = {"url": rec.target_uri, "mime": rec.mime, "status": rec.http_status,
                     "digest": rec.payload_digest, "length": str(rec.length),
                     "offset": str(rec.bundle_offset), "filename": out.name}
            if rec.role == "head":
                entry["method"] = "HEAD"
            entry = {k: v for k, v in entry.items() if v is not None}
            lines.append(f"{key} {_cdx_timestamp(rec.warc_date)} {json.dumps(entry)}\n")
    return "".join(sorted(lines)).encode("utf-8")


def _cdx_timestamp(warc_date: str | None) -> str:
    digits = re.sub(r"\D", "", warc_date or "")
    return digits[:14].ljust(14, "0")


def _pages_jsonl(plan: Plan, archive: Archive | None = None) -> bytes:
    """One page per captured exhibit, at its first request URL and capture time; a browser
    capture adds the page's title and visible text (from its artefact records)."""
    lines = [json.dumps({"format": "json-pages-1.0", "id": "pages", "title": "Exhibits"})]
    for exhibit in sorted(plan.exported, key=lambda e: e.number):
        if exhibit.kind != "capture":
            continue
        page = {"id": f"exhibit-{exhibit.number}", "url": exhibit.first_uri,
                "ts": exhibit.row["warc_date"] or exhibit.row["started_at"],
                "title": f"Exhibit {exhibit.number}: {exhibit.source['url']}"}
        artefacts = _text_artefacts(archive, exhibit) if archive is not None else {}
        if artefacts.get("title"):
            page["title"] += f" ({artefacts['title']})"
        if artefacts.get("text"):
            page["text"] = artefacts["text"]
        lines.append(json.dumps(page, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _text_artefacts(archive: Archive, exhibit: Exhibit) -> dict[str, str]:
    """The title and text artefacts of a browser capture, read from their resource records."""
    found = {}
    for rec in exhibit.records:
        kind = rec.target_uri.split(":")[2] if rec.target_uri.startswith("urn:evarchive:") else ""
        if rec.record_type != "resource" or kind not in ("title", "text"):
            continue
        with open(archive.warcs_dir / rec.warc_file, "rb") as fh:
            fh.seek(rec.offset)
            member = zlib.decompress(fh.read(rec.length), wbits=31)
        head, _, rest = member.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
        found[kind] = rest[:length].decode("utf-8", "replace")
    return found


def _record_block(archive: Archive, rec: Record) -> bytes:
    """A record's block (for a resource record: the artefact's bytes), read from its archive WARC."""
    with open(archive.warcs_dir / rec.warc_file, "rb") as fh:
        fh.seek(rec.offset)
        member = zlib.decompress(fh.read(rec.length), wbits=31)
    head, _, rest = member.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    return rest[:length]


# Artefacts the exhibit index shows and links to, with the extension of their bundle file.
SHOWN_ARTEFACTS = {"screenshot-viewport": "png", "screenshot-full": "png", "pdf": "pdf"}


def _write_artefacts(archive: Archive, plan: Plan, folder: Path) -> None:
    """Each browser capture's screenshots and PDF as plain files in artefacts/, cut out of their
    resource records, so the exhibit index shows and links them with no replay tool; the bytes
    are checked against the record's block digest on the way, as every exported record is."""
    browser = [e for e in plan.exported if e.kind == "capture" and e.row.get("engine") == "browser"]
    for exhibit in browser:
        by_id = {r.record_id: r for r in exhibit.records}
        rows = archive.db.query("SELECT * FROM capture_artefacts WHERE capture_id = ? ORDER BY id",
                                [exhibit.row["id"]])
        for row in sorted(rows, key=lambda r: list(SHOWN_ARTEFACTS).index(r["kind"])
                          if r["kind"] in SHOWN_ARTEFACTS else len(SHOWN_ARTEFACTS)):
            rec = by_id.get(row["record_id"])
            if row["kind"] not in SHOWN_ARTEFACTS or rec is None:
                continue
            data = _record_block(archive, rec)
            if hashlib.sha256(data).hexdigest() != row["sha256"] or row["sha256"] != rec.block_sha256:
                raise CouldNotRunError(f"the {row['kind']} of capture {exhibit.row['id']} ({rec.record_id}) does "
                                       "not match its recorded SHA-256; nothing was written. Run `evarchive verify`.")
            name = f"artefacts/exhibit-{exhibit.number}-{row['kind']}.{SHOWN_ARTEFACTS[row['kind']]}"
            (folder / "artefacts").mkdir(exist_ok=True)
            with open(folder / name, "xb") as fh:
                fh.write(data)
            exhibit.artefacts.append({"kind": row["kind"], "file": name, "sha256": row["sha256"],
                                      "size": row["size"], "content_type": row["content_type"],
                                      "width": row["width"], "height": row["height"],
                                      "record_id": rec.record_id})
        exhibit.chromium_version = _metadata_field(archive, exhibit, "browser-chromium-version")


def _metadata_field(archive: Archive, exhibit: Exhibit, name: str) -> str | None:
    """One field of a capture's provenance (its metadata record, application/warc-fields)."""
    meta = next((r for r in exhibit.records if r.record_type == "metadata"), None)
    if meta is None:
        return None
    for line in _record_block(archive, meta).decode("utf-8", "replace").split("\r\n"):
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


def _datapackage(plan: Plan, resources: list[dict[str, Any]]) -> bytes:
    title = (f"Exhibits for {plan.report['title']} (version {plan.version['version']})" if plan.report
             else "Exhibits")
    first = next((e for e in plan.exported if e.kind == "capture"), None)
    package: dict[str, Any] = {
        "profile": "data-package", "wacz_version": WACZ_VERSION, "title": title,
        "description": "Web evidence exported by evarchive for a citation bundle. Every WARC record in "
                       "archive/ after each file's first (warcinfo) record is a byte-for-byte copy of the "
                       "archived record; see exhibits.html beside this file.",
        "created": plan.created, "software": f"evarchive {__version__}", "resources": resources}
    if first is not None:
        package["mainPageURL"] = first.first_uri
        package["mainPageDate"] = first.row["warc_date"] or first.row["started_at"]
    return (json.dumps(package, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


# --------------------------------------------------------------------------- custody files

def _write_custody(db: sqlite_utils.Database, plan: Plan, folder: Path) -> None:
    folder.mkdir()
    plan.log_entries = _log_entries(db, plan)
    _write_text(folder / "log.jsonl", "".join(
        json.dumps({c: row[c] for c in custody.ENTRY_COLUMNS}, ensure_ascii=False) + "\n"
        for row in plan.log_entries))
    head = plan.head or {"seq": 0, "entry_hash": custody.GENESIS_HASH}
    _write_text(folder / "head.txt", f"{head['seq']} {head['entry_hash']}\n")
    for key in plan.keys:
        _write_text(folder / "keys" / f"{key['key_id']}.pem", key["public_key_pem"])
    for ts in _covering_timestamps(plan):
        (folder / "timestamps").mkdir(exist_ok=True)
        (folder / "timestamps" / f"{ts['id']}.tsr").write_bytes(ts["token"])
        _write_text(folder / "timestamps" / f"{ts['id']}-chain.pem", "".join(json.loads(ts["tsa_chain_pem"])))


def _covering_timestamps(plan: Plan) -> list[dict[str, Any]]:
    """For each exhibit's entry, the earliest token over a log head at or after it: it proves
    the capture existed no later than that token's time."""
    seqs = {e.entry["seq"] for e in plan.exported if e.entry}
    chosen: dict[int, dict[str, Any]] = {}
    for seq in seqs:
        ts = next((t for t in plan.timestamps if t["covers_seq"] >= seq), None)
        if ts is not None:
            chosen[ts["id"]] = ts
    return [chosen[k] for k in sorted(chosen)]


def _log_entries(db: sqlite_utils.Database, plan: Plan) -> list[dict[str, Any]]:
    """'chain': every entry from the first vouching one to the head, so the chain can be
    recomputed up to a head anchored elsewhere. 'entries': only the entries the bundle cites
    (vouching, timestamps and what they cover, keys, head): other captures stay undisclosed."""
    cols = ", ".join(custody.ENTRY_COLUMNS)
    vouching = {e.entry["seq"] for e in plan.exported if e.entry}
    vouching |= {live["custody_seq"] for live in plan.live.values() if live.get("vouched")}
    if plan.version is not None:  # the import entry vouches for the claims the index shows
        found = _import_entry_seq(db, plan)
        vouching |= {found} if found is not None else set()
    if not vouching or plan.head is None:
        return []
    head_seq = plan.head["seq"]
    if plan.log_scope == "chain":
        return list(db.query(f"SELECT {cols} FROM custody_log WHERE seq >= ? AND seq <= ? ORDER BY seq",
                             [min(vouching), head_seq]))
    stamps = _covering_timestamps(plan)
    wanted = vouching | {t["covers_seq"] for t in stamps} | {head_seq}
    wanted |= {r["seq"] for r in db.query(
        "SELECT seq FROM custody_log WHERE seq <= ? AND (event = 'keys-generate' OR (event = 'timestamp' "
        "AND json_extract(details, '$.timestamp_id') IN (SELECT value FROM json_each(?))))",
        [head_seq, json.dumps([t["id"] for t in stamps])])}
    return _rows_by_seq(db, cols, sorted(wanted))


def _import_entry_seq(db: sqlite_utils.Database, plan: Plan) -> int | None:
    """The custody entry that recorded the import of the report version the bundle shows."""
    row = one(db, "SELECT seq FROM custody_log WHERE event = 'report-imported' "
                  "AND json_extract(details, '$.report_id') = ? AND json_extract(details, '$.version') = ? "
                  "ORDER BY seq DESC LIMIT 1", [plan.report["id"], plan.version["version"]])
    return row["seq"] if row else None


def _rows_by_seq(db: sqlite_utils.Database, cols: str, seqs: list[int]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in _chunks(seqs):
        marks = ",".join("?" for _ in part)
        rows += db.query(f"SELECT {cols} FROM custody_log WHERE seq IN ({marks}) ORDER BY seq", part)
    return rows


def _export_details(out: Path, plan: Plan, manifest_sha: str, wacz_sha: str) -> dict[str, Any]:
    """The export is itself an event: which evidence left the archive, when, in which bundle."""
    return {
        "bundle": shown(out.resolve()), "manifest_sha256": manifest_sha, "wacz_sha256": wacz_sha,
        "selection": plan.mode, "report_id": plan.report["id"] if plan.report else None,
        "version_id": plan.version["id"] if plan.version else None,
        "captures": [e.row["id"] for e in plan.exported if e.kind == "capture"],
        "checks": [e.row["id"] for e in plan.exported if e.kind == "check"],
        "not_exported": [[e.kind, e.row["id"]] for e in plan.exhibits if not e.number],
        "unsupported_claims": [c["id"] for c in plan.unsupported],
        "log_head_seq": plan.head["seq"] if plan.head else 0, "log_scope": plan.log_scope}


# --------------------------------------------------------------------------- the exhibit index data

def bundle_data(plan: Plan) -> dict[str, Any]:
    """The bundle's content as one JSON document: the index files are renderings of it."""
    head = plan.head or {"seq": 0, "entry_hash": custody.GENESIS_HASH}
    return {
        "format": BUNDLE_FORMAT, "created": plan.created, "software": f"evarchive {__version__}",
        "selection": plan.mode, "report": _report_data(plan),
        "claims": [_claim_data(c, plan) for c in plan.claims],
        "sources": [_source_data(s, plan) for s in plan.sources],
        "exhibits": [_exhibit_data(e, plan) for e in sorted(plan.exported, key=lambda e: e.number)],
        "not_exported": _not_exported(plan),
        "unpreserved_sources": [{"source_id": u["id"], "url": u["url"]} for u in plan.unpreserved_sources],
        "wacz": WACZ_NAME,
        "custody": {"log": "custody/log.jsonl", "scope": plan.log_scope,
                    "entries": len(plan.log_entries), "head": {"seq": head["seq"], "entry_hash": head["entry_hash"]},
                    "keys": [{"key_id": k["key_id"], "file": f"custody/keys/{k['key_id']}.pem",
                              "created_at": k["created_at"], "retired_at": k["retired_at"]} for k in plan.keys],
                    "timestamps": [_timestamp_data(t) for t in _covering_timestamps(plan)]},
    }


def _report_data(plan: Plan) -> dict[str, Any] | None:
    if not plan.report or not plan.version:
        return None
    v = plan.version
    return {"id": plan.report["id"], "title": plan.report["title"], "version": v["version"],
            "file": Path(v["path"]).name, "format": v["format"], "sha256": v["sha256"], "size": v["size"],
            "imported_at": v["imported_at"]}


def where(claim: dict[str, Any]) -> str:
    """A claim's position for people: page and paragraph, and the line in text files."""
    place = f"p. {claim['page']}, para. {claim['paragraph']}" if claim.get("page") else f"para. {claim['paragraph']}"
    return f"{place}, line {claim['line']}" if claim.get("line") else place


def _claim_data(claim: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {"claim": claim["ordinal"], "where": where(claim), "text": claim["text"], "sha256": claim["sha256"],
            "paragraph": claim["paragraph"], "offset": claim["offset"],
            "citations": [_citation_data(c, plan) for c in claim["citations"]],
            "exhibits": claim["exhibits"], "check_exhibits": claim["checks"],
            "supporting_exhibits": claim["supporting"], "supported": bool(claim["supporting"])}


def _citation_data(cited: dict[str, Any], plan: Plan) -> dict[str, Any]:
    captures = plan.by_source(cited["source_id"], "capture")
    exhibits = [e.number for e in captures]
    data = {"url": cited["url"], "source_id": cited["source_id"], "via": cited["via"], "note": cited["note"],
            "paragraph": cited["paragraph"], "offset": cited["offset"], "exhibits": exhibits}
    if not exhibits:
        data["why_no_exhibit"] = why_no_exhibit(plan.attempts.get(cited["source_id"]))
    elif all(e.not_support for e in captures):
        data["why_no_exhibit"] = "captured, but not the cited page: " + "; ".join(
            f"exhibit {e.number}: {e.not_support}" for e in captures)
    return data


def _source_data(source: dict[str, Any], plan: Plan) -> dict[str, Any]:
    return {"source_id": source["id"], "url": source["url"],
            "exhibits": [e.number for e in plan.by_source(source["id"])],
            "live": _live(plan, source["id"]), "latest_check": plan.latest_checks.get(source["id"])}


def _live(plan: Plan, source_id: int) -> dict[str, Any]:
    return plan.live.get(source_id) or live_status(None, None)


def _exhibit_data(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    main = exhibit.main_record
    entry = exhibit.entry or {}
    base = {"exhibit": exhibit.number, "kind": exhibit.kind, "source_id": exhibit.source["id"],
            "source_url": exhibit.source["url"], "cited_as": _cited_as(exhibit, plan),
            "custody_seq": entry.get("seq"), "custody_entry_hash": entry.get("entry_hash"),
            "main_record": main.record_id if main else None,
            "records": [r.as_dict() for r in exhibit.records],
            "live": _live(plan, exhibit.source["id"])}
    if exhibit.kind == "check":
        return {**base, **_check_fields(exhibit.row)}
    return {**base, **_capture_fields(exhibit, plan)}


def _cited_as(exhibit: Exhibit, plan: Plan) -> list[str]:
    return plan.cited_as(exhibit.source["id"]) or [exhibit.source["url"]]


def _capture_fields(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    row = exhibit.row
    original = next((e.number for e in plan.by_source(exhibit.source["id"], "capture")
                     if e.row["id"] == exhibit.original_of), None) if exhibit.original_of else None
    if exhibit.original_of and original is None:  # a revisit of another source's capture (rare)
        original = next((e.number for e in plan.exported if e.kind == "capture" and e.row["id"] == exhibit.original_of),
                        None)
    return {"capture_id": row["id"], "captured_at": row["started_at"], "capture_ended_at": row["ended_at"],
            "warc_date": row["warc_date"], "url_requested": row["url_requested"], "final_url": row["final_url"],
            "redirect_chain": json.loads(row["redirect_chain"]) if row["redirect_chain"] else [],
            "http_status": row["http_status"], "http_version": row["http_version"],
            "server_ip": row["server_ip"], "server_port": row["server_port"],
            "proxy_used": bool(row["proxy_used"]), "content_type": row["content_type"],
            "payload_size": row["payload_size"], "payload_sha256": row["payload_sha256"],
            "truncated": bool(row["truncated"]), "revisit_of_exhibit": original,
            "kind_of_record": row["kind"], "tls": _tls(row), **_decoded_fields(exhibit, plan),
            "content_verdict": row.get("content_verdict"), "wall": row.get("wall"),
            "supports": exhibit.not_support is None, "not_support_reason": exhibit.not_support,
            "engine": row.get("engine") or "http", "chromium_version": exhibit.chromium_version,
            "artefacts": exhibit.artefacts}


def _decoded_fields(exhibit: Exhibit, plan: Plan) -> dict[str, Any]:
    """The content coding the page was served with and the SHA-256 of its decoded content (a
    revisit's body is its original's: same payload, so the same decoded content)."""
    main = exhibit.main_record
    holder = main
    if exhibit.original_of:
        original = next((e for e in plan.exhibits if e.kind == "capture" and e.row["id"] == exhibit.original_of), None)
        holder = original.main_record if original else None
    return {"content_encoding": main.content_encoding if main else None,
            "decoded_sha256": holder.decoded_sha256 if holder else None,
            "decoded_note": holder.decoded_note if holder else "not computed: the original capture is missing"}


def _check_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {"check_id": row["id"], "checked_at": row["checked_at"], "verdict": row["verdict"],
            "confirmed": bool(row["confirmed"]), "reason": row["reason"], "http_status": row["http_status"],
            "final_url": row["final_url"],
            "redirect_chain": json.loads(row["redirect_chain"]) if row["redirect_chain"] else [],
            "server_ip": row["server_ip"], "payload_sha256": row["payload_sha256"],
            "similarity": row["similarity"], "check_row": row}


def _tls(row: dict[str, Any]) -> dict[str, Any] | None:
    if not row["tls_version"] and not row["cert_sha256"]:
        return None
    tls: dict[str, Any] = {"version": row["tls_version"], "cipher": row["tls_cipher"],
                           "cert_sha256": row["cert_sha256"],
                           "validated": {1: True, 0: False}.get(row["cert_validated"]),
                           "insecure": bool(row["insecure"])}
    chain = json.loads(row["cert_chain_pem"]) if row["cert_chain_pem"] else []
    if chain:
        tls.update(_certificate(chain[0]))
    return tls


def _certificate(pem: str) -> dict[str, Any]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return {}
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_before": cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _timestamp_data(ts: dict[str, Any]) -> dict[str, Any]:
    return {"id": ts["id"], "token": f"custody/timestamps/{ts['id']}.tsr",
            "chain": f"custody/timestamps/{ts['id']}-chain.pem", "tsa_url": ts["tsa_url"],
            "tsa_subject": ts["tsa_subject"], "gen_time": ts["gen_time"], "covers_seq": ts["covers_seq"],
            "digest": ts["digest"], "token_sha256": ts["token_sha256"], "serial": ts["serial"]}


LIVE_WORDS = {
    "ok": "live page unchanged",
    "drifted": "live page has CHANGED since capture",
    "moved": "live page has MOVED (permanent redirect)",
    "gone": "live page has VANISHED",
    "soft-404": "live page has VANISHED (the site answers 'not found')",
    "blocked": "live page could not be seen (blocked)",
    "unreachable": "live site unreachable",
}


def live_status(check: dict[str, Any] | None, entry: dict[str, Any] | None) -> dict[str, Any]:
    """What the latest live check said about the source, in words a judge can read, and whether
    the custody log vouches for that check (its entry carries the SHA-256 of the whole row)."""
    if check is None:
        return {"state": "unchecked", "text": "not re-checked since capture"}
    words = LIVE_WORDS.get(check["verdict"], check["verdict"])
    extra = []
    if check["verdict"] in ("gone", "soft-404", "unreachable"):
        extra.append("confirmed" if check["confirmed"] else f"not yet confirmed ({check['strikes']} failing "
                                                            "check(s) in a row)")
    if check["similarity"] is not None and check["verdict"] == "drifted":
        extra.append(f"main-text similarity {check['similarity']:.2f}")
    vouched = _check_vouched(check, entry)
    if not vouched:
        extra.append("UNVERIFIED: this check does not match the custody log")
    text = f"{words} at last check {check['checked_at'][:19].replace('T', ' ')} UTC"
    if extra:
        text += " (" + "; ".join(extra) + ")"
    return {"state": check["verdict"], "text": text, "checked_at": check["checked_at"], "check_id": check["id"],
            "reason": check["reason"], "http_status": check["http_status"], "confirmed": bool(check["confirmed"]),
            "vouched": vouched, "custody_seq": entry["seq"] if entry else None}


def _check_vouched(check: dict[str, Any], entry: dict[str, Any] | None) -> bool:
    if entry is None or custody.entry_hash(entry["seq"], entry["at"], entry["event"], entry["subject"],
                                           entry["details"], entry["prev_hash"]) != entry["entry_hash"]:
        return False
    mine = [c for c in json.loads(entry["details"]).get("checks") or [] if c.get("check_id") == check["id"]]
    return bool(mine) and mine[0].get("row_sha256") == hashlib.sha256(to_json(check).encode()).hexdigest()


# --------------------------------------------------------------------------- renderings

CSV_COLUMNS = ("claim", "where", "claim_text", "cited_url", "exhibit", "kind", "captured_utc", "final_url",
               "redirect_chain", "http_status", "server_ip", "tls_cert_sha256", "tls_validated",
               "tls_not_before", "tls_not_after", "content_type", "payload_bytes", "payload_sha256",
               "content_encoding", "decoded_sha256",
               "warc_file", "warc_offset", "record_id", "record_sha256", "original_warc_file",
               "original_offset", "custody_seq", "live_now", "counts_as_support")


def _main(ex: dict[str, Any]) -> dict[str, Any]:
    return next((r for r in ex["records"] if r["record_id"] == ex["main_record"]), ex["records"][-1])


def _chain_text(chain: list[dict[str, Any]]) -> str:
    return " -> ".join(f"{hop['url']} [{hop['status']}]" for hop in chain)


def _csv_row(claim: dict[str, Any] | None, cited: str, ex: dict[str, Any] | None, why: str = "") -> list[Any]:
    head = [claim["claim"], claim["where"], claim["text"]] if claim else ["", "", ""]
    if ex is None:
        return [*head, cited, "", f"NO INTACT CAPTURE: {why}"] + [""] * (len(CSV_COLUMNS) - 6)
    rec, tls = _main(ex), ex.get("tls") or {}
    return [*head, cited, ex["exhibit"], ex["kind"] if ex["kind"] == "capture" else f"check: {ex['verdict']}",
            ex.get("captured_at") or ex.get("checked_at"), ex["final_url"] or "",
            _chain_text(ex["redirect_chain"]), ex["http_status"] or "", ex["server_ip"] or "",
            tls.get("cert_sha256") or "", "" if not tls else {True: "yes", False: "NO"}.get(tls.get("validated"), ""),
            tls.get("not_before", ""), tls.get("not_after", ""), ex.get("content_type") or "",
            ex.get("payload_size") if ex.get("payload_size") is not None else "", ex["payload_sha256"] or "",
            ex.get("content_encoding") or "", ex.get("decoded_sha256") or ex.get("decoded_note") or "",
            rec["bundle_file"], rec["bundle_offset"], rec["record_id"], rec["member_sha256"],
            rec["original_file"], rec["original_offset"], ex["custody_seq"], ex["live"]["text"],
            _support_words(ex) if ex["kind"] == "capture" else ""]


# A cell starting with one of these is a formula to spreadsheet programs (=HYPERLINK(...) in a
# claim would run on opening the file): such cells get a leading apostrophe, which spreadsheets
# show as text and verify_bundle.py removes again before comparing.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def render_csv(data: dict[str, Any]) -> str:
    """One row per claim and exhibit (a claim without evidence gets a row saying so). UTF-8 with a
    byte-order mark: spreadsheet programs otherwise garble non-ASCII claims and URLs."""
    buf = io.StringIO()
    buf.write("\ufeff")
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    rows = []
    if data["claims"]:
        for claim in data["claims"]:
            for cit in claim["citations"]:
                numbers = cit["exhibits"] + [n for n in claim["check_exhibits"]
                                             if exhibits[n]["source_id"] == cit["source_id"]]
                rows += [_csv_row(claim, cit["url"], exhibits.get(n) if n else None, cit.get("why_no_exhibit", ""))
                         for n in numbers or [None]]
    else:
        rows = [_csv_row(None, ex["source_url"], ex) for ex in data["exhibits"]]
    writer.writerows([csv_cell(cell) for cell in row] for row in rows)
    return buf.getvalue()


def _exhibit_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs shared by the HTML and text renderings of one exhibit."""
    rec = _main(ex)
    rows: list[tuple[str, str]] = [("URL as cited", "; ".join(ex["cited_as"]))]
    if ex["kind"] == "capture":
        rows.append(("Counts as support", _support_words(ex)))
        rows += [("Captured (UTC)", f"{ex['captured_at']} to {ex['capture_ended_at']}"),
                 ("Requested URL", ex["url_requested"]), ("Final URL", ex["final_url"] or "-"),
                 ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", f"{ex['http_status']} ({ex['http_version']})"),
                 ("Server IP", f"{ex['server_ip']}:{ex['server_port']}" if ex["server_ip"]
                  else ("not known (captured through a proxy)" if ex["proxy_used"] else "-"))]
        rows += _tls_lines(ex.get("tls"))
        rows += [("Content type", ex["content_type"] or "-"),
                 ("Payload", f"{ex['payload_size']} bytes"
                  + (" (TRUNCATED at the size limit)" if ex["truncated"] else ""))]
        rows += _hash_lines(ex)
        if ex["revisit_of_exhibit"]:
            rows.append(("Revisit", f"payload identical to exhibit {ex['revisit_of_exhibit']}; this capture "
                                    "stores the response head, the body is in that exhibit"))
        rows += _artefact_lines(ex)
    else:
        rows += [("Checked (UTC)", ex["checked_at"]),
                 ("Verdict", ex["verdict"] + (" (confirmed)" if ex["confirmed"] else "") + f": {ex['reason']}"),
                 ("Final URL", ex["final_url"] or "-"), ("Redirect chain", _chain_text(ex["redirect_chain"]) or "-"),
                 ("HTTP status", str(ex["http_status"] or "-")), ("Server IP", ex["server_ip"] or "-"),
                 ("Payload SHA-256", ex["payload_sha256"] or "-")]
    rows += [("WARC file (bundle)", f"{WACZ_NAME} > {rec['bundle_file']}"),
             ("Record offset", f"{rec['bundle_offset']} in that file ({rec['wacz_offset']} in {WACZ_NAME}), "
                               f"{rec['length']} bytes"),
             ("WARC-Record-ID", rec["record_id"]), ("Record SHA-256", rec["member_sha256"]),
             ("Archive original", f"{rec['original_file']} at offset {rec['original_offset']}"),
             ("Custody-log entry", f"{ex['custody_seq']} ({ex['custody_entry_hash']})"),
             ("Live page now", ex["live"]["text"])]
    return rows


ARTEFACT_LABELS = {"screenshot-full": "Screenshot, full page", "screenshot-viewport": "Screenshot, viewport",
                   "pdf": "PDF print"}


def _artefact_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    if ex.get("engine") != "browser":
        return []
    rows = [("Engine", f"browser: Chromium {ex.get('chromium_version') or '(version not recorded)'}, "
                       f"page loaded and its artefacts made during the capture, {ex['captured_at']} (UTC)")]
    for art in ex.get("artefacts", []):
        size = f"{art['width']}x{art['height']} px, " if art.get("width") else ""
        rows.append((ARTEFACT_LABELS.get(art["kind"], art["kind"]),
                     f"{art['file']} ({size}{art['size']} bytes), SHA-256 {art['sha256']}, "
                     f"record {art['record_id']}"))
    return rows


def _html_artefacts(ex: dict[str, Any]) -> str:
    """A thumbnail of the page as captured (the viewport screenshot, scaled by the browser),
    linking to the full-page screenshot and the PDF: files of the bundle, so it works offline."""
    files = {a["kind"]: a["file"] for a in ex.get("artefacts", [])}
    thumb = files.get("screenshot-viewport") or files.get("screenshot-full")
    if not thumb:
        return ""
    links = " &middot; ".join(f"<a href=\"{_h(files[k])}\">{label}</a>" for k, label in
                              (("screenshot-full", "full-page screenshot (PNG)"), ("pdf", "PDF print"))
                              if k in files)
    return (f"<figure class=\"shot\"><a href=\"{_h(files.get('screenshot-full', thumb))}\">"
            f"<img src=\"{_h(thumb)}\" width=\"320\" alt=\"Screenshot of exhibit {ex['exhibit']} as captured\">"
            f"</a><figcaption>As captured {_h(ex['captured_at'])} (UTC) by Chromium "
            f"{_h(ex.get('chromium_version') or '(version not recorded)')}: {links}</figcaption></figure>")


def _html_replay(ex: dict[str, Any]) -> str:
    if ex["kind"] != "capture":
        return ""
    return (f"<p class=\"small\"><a href=\"{_h(replay_link(ex))}\">Replay this exhibit</a> in the viewer "
            f"of this bundle (serve the folder first: see VERIFY.md, section 6)</p>")


def _support_words(ex: dict[str, Any]) -> str:
    if not ex["supports"]:
        return f"NO: this capture is not the cited page ({ex['not_support_reason']})"
    if ex.get("content_verdict") is None:
        return "yes (not classified: captured before evarchive checked captures for soft 404s and walls)"
    return "yes"


def _hash_lines(ex: dict[str, Any]) -> list[tuple[str, str]]:
    """The two hashes of a page, each saying which bytes it is of: a saved copy of the page matches
    the decoded one, never the served one when the server compressed the page."""
    coding = ex.get("content_encoding")
    served = ex["payload_sha256"] or "-"
    if coding:
        served += f" (the body's bytes as served, with Content-Encoding: {coding})"
    else:
        served += " (the body's bytes as served, with no Content-Encoding)"
    if ex.get("decoded_sha256"):
        decoded = ex["decoded_sha256"] + (f" (the content with the {coding} coding undone: what a browser shows "
                                          "and a saved copy of the page hashes to)" if coding
                                          else " (no content coding: the same bytes as served)")
    else:
        decoded = ex.get("decoded_note") or "not computed"
    return [("SHA-256 as served", served), ("SHA-256 decoded", decoded)]


def _tls_lines(tls: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not tls:
        return [("TLS", "none (plain HTTP)")]
    valid = {True: "validated", False: "NOT validated"}.get(tls["validated"], "validation unknown")
    if tls["insecure"]:
        valid += " (captured with --insecure)"
    rows = [("TLS", f"{tls['version']} {tls['cipher']}"),
            ("Certificate SHA-256", f"{tls['cert_sha256']} ({valid})")]
    if tls.get("not_before"):
        rows.append(("Certificate validity", f"{tls['not_before']} to {tls['not_after']}; "
                                             f"subject {tls['subject']}; issuer {tls['issuer']}"))
    return rows


def _headline(data: dict[str, Any]) -> str:
    rep = data["report"]
    if rep:
        return f"Exhibit index: {rep['title']} (version {rep['version']})"
    return "Exhibit index"


def _summary_lines(data: dict[str, Any]) -> list[tuple[str, str]]:
    head = data["custody"]["head"]
    rows = []
    if data["report"]:
        rep = data["report"]
        rows += [("Report", f"{rep['title']}, version {rep['version']}, file {rep['file']} ({rep['format']})"),
                 ("Report SHA-256", rep["sha256"]), ("Imported (UTC)", rep["imported_at"])]
        supported = sum(c["supported"] for c in data["claims"])
        rows.append(("Claims", f"{len(data['claims'])}, of which {supported} supported by at least one exhibit"))
    rows += [("Exhibits", str(len(data["exhibits"]))), ("Bundle created (UTC)", data["created"]),
             ("Custody-log head", f"entry {head['seq']}, {head['entry_hash']}"),
             ("Software", data["software"])]
    return rows


def render_text(data: dict[str, Any]) -> str:
    """The plain-text twin of exhibits.html."""
    out = [_headline(data), "=" * len(_headline(data)), ""]
    out += [f"{label}: {value}" for label, value in _summary_lines(data)] + [""]
    exhibits = {e["exhibit"]: e for e in data["exhibits"]}
    if data["claims"]:
        out += ["CLAIMS", "------", ""]
        for claim in data["claims"]:
            out += textwrap.wrap(f"Claim {claim['claim']} ({claim['where']}): {claim['text']}", 100,
                                 subsequent_indent="    ")
            for cit in claim["citations"]:
                ex_text = ", ".join(f"exhibit {n}" for n in cit["exhibits"])
                why = cit.get("why_no_exhibit", "")
                ex_text = f"{ex_text} (DOES NOT COUNT: {why})" if ex_text and why else \
                    (ex_text or f"NO INTACT CAPTURE: {why}")
                out.append(f"    cited: {cit['url']}  ->  {ex_text}")
            if not claim["supported"]:
                out.append("    !! NOT SUPPORTED: no intact capture of the cited page from any source this claim cites")
            out.append("")
    out += ["EXHIBITS", "--------", ""]
    for n in sorted(exhibits):
        ex = exhibits[n]
        out.append(f"Exhibit {n}: {ex['source_url']}" + ("" if ex["kind"] == "capture" else " (live-check evidence)"))
        out += [f"    {label}: {value}" for label, value in _exhibit_lines(ex)] + [""]
    out += _not_exported_text(data)
    out += ["VERIFYING", "---------", "", "See VERIFY.md: sha256sum -c SHA256SUMS, then python3 verify_bundle.py", ""]
    return "\n".join(out)


def _not_exported_text(data: dict[str, Any]) -> list[str]:
    out = []
    if data["unpreserved_sources"]:
        out += ["SOURCES WITHOUT AN INTACT CAPTURE", "-" * 33, ""]
        out += [f"    {u['url']}" for u in data["unpreserved_sources"]] + [""]
    if data["not_exported"]:
        out += ["NOT EXPORTED (evidence that failed its integrity check)", "-" * 55, ""]
        for item in data["not_exported"]:
            out.append(f"{item['kind']} {item['id']} of {item['url']}:")
            out += [f"    {p}" for p in item["problems"]]
        out.append("")
    return out


HTML_STYLE = """
body{font-family:Georgia,'Times New Roman',serif;max-width:60rem;margin:2rem auto;padding:0 1rem;
 color:#111;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #999;margin-top:2rem}
h3{font-size:1.05rem;margin-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0 1rem}
td,th{border:1px solid #bbb;padding:.25rem .4rem;vertical-align:top;text-align:left}
th{background:#f2f2f2;width:13rem;font-weight:normal}
code,.hash{font-family:'DejaVu Sans Mono',Consolas,monospace;font-size:.85em;word-break:break-all}
.claim{margin:.8rem 0;padding:.5rem .7rem;border-left:4px solid #2a6}
.claim.unsupported{border-color:#c22;background:#fff4f4}
.bad{color:#b00;font-weight:bold}.small{font-size:.9em;color:#444}
figure.shot{margin:.3rem 0}figure.shot img{border:1px solid #999;height:auto;max-width:100%}
figcaption{font-size:.9em;color:#444}
@media print{body{margin:0;max-width:none}.exhibit{page-break-inside:avoid}}
"""


def _h(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def render_html(data: dict[str, Any]) -> str:
    """One page that prints well: no scripts, nothing from outside the bundle (a browser capture's
    thumbnail is the bundle's own artefacts/ file)."""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_h(_headline(data))}</title>"
             f"<style>{HTML_STYLE}</style></head><body>\n<h1>{_h(_headline(data))}</h1>",
             _html_table(_summary_lines(data))]
    if data["claims"]:
        parts.append("<h2>Claims and the exhibits supporting them</h2>")
        parts += [_html_claim(c) for c in data["claims"]]
    parts.append("<h2>Exhibits</h2>")
    for ex in data["exhibits"]:
        label = "" if ex["kind"] == "capture" else " (live-check evidence)"
        parts.append(f"<div class=\"exhibit\" id=\"exhibit-{ex['exhibit']}\"><h3>Exhibit {ex['exhibit']}: "
                     f"<code>{_h(ex['source_url'])}</code>{label}</h3>{_html_artefacts(ex)}"
                     f"{_html_replay(ex) if data.get('viewer') else ''}"
                     f"{_html_table(_exhibit_lines(ex))}</div>")
    if data["unpreserved_sources"]:
        parts.append("<h2>Sources without an intact capture</h2><ul>")
        parts += [f"<li class=\"bad\"><code>{_h(u['url'])}</code></li>" for u in data["unpreserved_sources"]]
        parts.append("</ul>")
    if data["not_exported"]:
        parts.append("<h2>Not exported: evidence that failed its integrity check</h2><ul>")
        parts += [f"<li>{_h(i['kind'])} {_h(i['id'])} of <code>{_h(i['url'])}</code>: "
                  f"<span class=\"bad\">{_h('; '.join(i['problems']))}</span></li>" for i in data["not_exported"]]
        parts.append("</ul>")
    parts.append("<h2>Verifying this bundle</h2><p>Every file of the bundle is listed with its SHA-256 in "
                 "<code>SHA256SUMS</code>. <code>VERIFY.md</code> gives the steps, with standard tools only: "
                 "<code>sha256sum -c SHA256SUMS</code>, then <code>python3 verify_bundle.py</code>, which "
                 "re-hashes every file and every exhibit record and checks them against the custody log "
                 "and this index.</p></body></html>\n")
    return "\n".join(parts)


def _html_table(rows: list[tuple[str, str]]) -> str:
    hashes = re.compile(r"^[0-9a-f]{64}$|^<urn:|sha256", re.I)
    mono = ' class="hash"'
    cells = "".join(f"<tr><th>{_h(k)}</th><td{mono if hashes.search(str(v)) else ''}>{_h(v)}</td></tr>"
                    for k, v in rows)
    return f"<table>{cells}</table>"


def _html_claim(claim: dict[str, Any]) -> str:
    items = []
    for cit in claim["citations"]:
        links = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in cit["exhibits"])
        missing = f'<span class="bad">no intact capture: {_h(cit.get("why_no_exhibit", ""))}</span>'
        if links and cit.get("why_no_exhibit"):
            links += f' <span class="bad">does not count: {_h(cit["why_no_exhibit"])}</span>'
        items.append(f"<li>cited: <code>{_h(cit['url'])}</code> &rarr; {links or missing}</li>")
    checks = ", ".join(f"<a href=\"#exhibit-{n}\">Exhibit {n}</a>" for n in claim["check_exhibits"])
    if checks:
        items.append(f"<li>live-check evidence: {checks}</li>")
    status = ("" if claim["supported"] else
              "<p class=\"bad\">NOT SUPPORTED: no intact capture of the cited page from any source this claim "
              "cites.</p>")
    css = "claim" if claim["supported"] else "claim unsupported"
    return (f"<div class=\"{css}\"><strong>Claim {claim['claim']}</strong> <span class=\"small\">"
            f"({_h(claim['where'])}; text SHA-256 <span class=\"hash\">{_h(claim['sha256'])}</span>)</span>"
            f"<p>{_h(claim['text'])}</p><ul>{''.join(items)}</ul>{status}</div>")


def render_verify(data: dict[str, Any]) -> str:
    """VERIFY.md: step by step, with standard tools, and concrete commands for these exhibits."""
    head = data["custody"]["head"]
    lines = [VERIFY_INTRO.format(head_seq=head["seq"], head_hash=head["entry_hash"], wacz=WACZ_NAME)]
    for ex in data["exhibits"][:200]:
        rec = _main(ex)
        lines.append(f"# exhibit {ex['exhibit']}: {rec['record_id']} (expect {rec['member_sha256']})\n"
                     f"tail -c +{rec['wacz_offset'] + 1} {WACZ_NAME} | head -c {rec['length']} | sha256sum")
    if len(data["exhibits"]) > 200:
        lines.append(f"# ... exhibits.csv gives the offset and length of the other {len(data['exhibits']) - 200}")
    lines.append("```\n")
    lines.append(VERIFY_CUSTODY.format(head_seq=head["seq"], head_hash=head["entry_hash"],
                                       scope=("every entry from the first exhibit's entry to the head: the "
                                              "chain can be recomputed link by link"
                                              if data["custody"]["scope"] == "chain" else
                                              "only the entries that vouch for the exhibits (and the "
                                              "timestamps, keys and head): each entry's own hash and "
                                              "signature can be checked, the links between them cannot")))
    for ts in data["custody"]["timestamps"]:
        lines.append(f"openssl ts -verify -token_in -in {ts['token']} -digest {ts['digest']} \\\n"
                     f"    -CAfile YOUR-TRUSTED-TSA-ROOT.pem -untrusted {ts['chain']}\n"
                     f"# token {ts['id']}: {ts['tsa_subject']} at {ts['gen_time']}, covers log entry "
                     f"{ts['covers_seq']}")
    if not data["custody"]["timestamps"]:
        lines.append("# (this archive had no RFC 3161 timestamp covering these exhibits at export time)")
    lines.append("```\n")
    lines.append(VERIFY_REPLAY.format(wacz=WACZ_NAME))
    if data.get("viewer"):
        lines.append(VERIFY_VIEWER.format(page=data["viewer"]["page"], software=data["viewer"]["software"],
                                          licence=data["viewer"]["licence"]))
    return "\n".join(lines)


VERIFY_INTRO = """# Verifying this citation bundle

Everything here can be checked with standard tools: `sha256sum` (coreutils; on macOS
`shasum -a 256`; on Windows PowerShell's `Get-FileHash`), Python 3.8 or later (nothing to
install; on Windows from python.org, run as `py`), and optionally `openssl`. Nothing needs
evarchive, and nothing needs the network. Open a terminal in this folder first.

## 1. Every file is as exported

Linux:

```sh
sha256sum -c SHA256SUMS
```

macOS:

```sh
shasum -a 256 -c SHA256SUMS
```

Windows (PowerShell):

```powershell
Get-Content SHA256SUMS | ForEach-Object {{
  $hash, $name = $_ -split '  ', 2
  $found = (Get-FileHash -Algorithm SHA256 -LiteralPath $name).Hash
  if ($found -eq $hash.ToUpper()) {{ "OK      $name" }} else {{ "FAILED  $name" }}
}}
```

Every line must say `OK`. `SHA256SUMS` itself is vouched for by the archive: its SHA-256 is in
the custody-log entry that recorded this export (ask the archive holder for
`evarchive log --json`, event `export`).

## 2. Every exhibit record, the custody log and the index agree

```sh
python3 verify_bundle.py        # Windows: py verify_bundle.py
```

It re-hashes every file, checks the WACZ package ({wacz}: its `datapackage.json` hashes),
cuts every exhibit record out of the WARC files inside it and checks its SHA-256 and its WARC
block and payload digests, checks each screenshot and PDF in `artefacts/` against the block of
its record, undoes each page's gzip/deflate content coding to recompute the
SHA-256 of its decoded content (the hash a saved copy of the page matches; the index shows it
beside the hash of the body as served), checks that each record is the one the custody log
recorded at capture (same record id, same SHA-256) and that whether it counts as support
follows from the verdict recorded at capture (a soft 404 or a wall never does), recomputes
every custody-log entry hash and the chain up to the head, checks signatures and timestamp
imprints, checks that the live state shown for each source is its latest check as the custody
log recorded it, and checks that `exhibits.csv`, `exhibits.html` and `exhibits.txt` state the
same hashes and locations, and that each exhibit's time is its WARC record's own `WARC-Date`.
It prints `FAIL` with the file and record for anything that does not match, and exits 1.

A bundle can only prove itself against facts from outside it: keys and timestamps inside it
prove nothing against someone who rebuilt it whole. Without anchors the last line reads
`BUNDLE CONSISTENT, NOT ANCHORED`. Give it what the archive published or handed over separately,
and it reads `BUNDLE VERIFIED AND ANCHORED`, naming each anchor (`--require-anchor` makes an
unanchored bundle exit 1):

```sh
python3 verify_bundle.py --head {head_seq}:{head_hash}   # the head the archive published
python3 verify_bundle.py --public-key their-key.pem            # the archive's key, obtained out of band
python3 verify_bundle.py --tsa-root tsa-root.pem               # also run openssl on each timestamp
```

## 3. One record by hand

A WACZ is a zip whose WARC files are stored uncompressed, so each record's exact bytes sit at
a fixed offset of `{wacz}` (column `warc_offset` plus the entry's start; `bundle.json` gives
`wacz_offset`). Each command prints the record's SHA-256; it must equal the `Record SHA-256` in
the exhibit index and the `member_sha256` in the custody-log entry. Add `| gunzip | head -c 2000`
instead of `| sha256sum` to read the record's headers.

```sh"""

VERIFY_CUSTODY = """## 4. The custody log

`custody/log.jsonl` holds {scope}. Each entry's `entry_hash` is the SHA-256 of the JSON object
`{{"at","details","event","prev_hash","seq","subject"}}` (keys sorted, no spaces, `details`
parsed from the stored text); `prev_hash` is the previous entry's hash. The head at export was
entry {head_seq}:

    {head_hash}

Compare it with the head the archive holder published or wrote down before the dispute
(`evarchive log --head`). A capture entry (`event` = `capture`) carries the capture row and,
for each record, `record_id`, `warc_file`, `offset`, `length` and `member_sha256`: the values
the exhibit index shows. A signature (`ed25519:<key id>:<base64>`) signs the bytes
`evarchive custody entry v1\\n` followed by the entry hash in hex, with the key in
`custody/keys/<key id>.pem`; `verify_bundle.py` checks it, or with OpenSSL 3:

```sh
printf 'evarchive custody entry v1\\n%s' ENTRY_HASH > msg
echo BASE64_SIGNATURE | base64 -d > sig
openssl pkeyutl -verify -pubin -inkey custody/keys/KEY_ID.pem -rawin -in msg -sigfile sig
```

## 5. Trusted timestamps (RFC 3161)

Each token in `custody/timestamps/` is a TSA's signed statement that a custody-log head existed
at its time; the log entries before that head (and so the captures they vouch for) existed then.
The token's imprint is the entry hash itself (SHA-256). Verify each with your own trusted copy of
the TSA's root certificate:

```sh"""

VERIFY_REPLAY = """## 6. Seeing the pages

`{wacz}` is a WACZ 1.1.1 web archive (it passes `wacz validate -f {wacz}`). Open it in
ReplayWeb.page (https://replayweb.page, "Choose File": the file is read in your browser, not
uploaded), or with pywb:

```sh
wb-manager init bundle && wb-manager add --unpack-wacz bundle {wacz} && wayback
```

Pages are listed as "Exhibit N". Replay shows the response bytes exactly as archived.
"""

VERIFY_VIEWER = """This bundle also carries a replay viewer, {software} ({licence}; its licence is in
`viewer/LICENSE`), which needs no network. Serve this folder on your own computer only:

```sh
python3 -m http.server --bind 127.0.0.1 8000     # Windows: py -m http.server --bind 127.0.0.1 8000
```

then open `http://127.0.0.1:8000/{page}` in Chrome, Edge or Firefox (a service worker reads the
WACZ inside the browser, which is why the page must come from a local server, not a file).
Each exhibit in `exhibits.html` links to its replay.
"""
