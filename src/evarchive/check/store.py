"""What a check run keeps: WARC evidence of what servers answered, then catalogue rows and
custody entries, committed in batches so that a run killed at any point leaves whole checks.

Every check is a catalogue row. What the server answered for a failing or changed source (the
404 page, the redirect, the soft-404 page and the random-path probe it was compared with) is
written to the archive's WARC files, because "this page was removed on date X" is itself
evidence. Earlier captures are never touched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import httpx

from .. import __version__, custody
from ..archive import Archive
from ..capture import write_hop_records
from ..catalogue import insert, to_json, transaction, update, utc_now
from ..errors import ArchiveWriteError
from ..records import record_intact
from ..urls import request_url
from ..warcwriter import RecordBlock, RecordSpec, WarcWriter, WrittenRecord, recover_interrupted, warc_fields
from .results import CheckReport, CheckResult, judged_result, stamp, state_of
from .settings import CheckSettings
from .strikes import StrikeState, looks_offline
from .verdicts import Baseline, Observation, Verdict

# Checks are committed in batches: one fsync per batch, not per source. A run
# killed mid-batch loses only that batch, which the next run simply redoes.
COMMIT_EVERY = 500
SHIP_INTERVAL = 0.25  # seconds between a worker's batches to its parent


@dataclass
class PendingCheck:
    """A judged check whose evidence is written, waiting for its commit."""

    row: dict[str, Any]
    records: list[tuple[str, WrittenRecord]]
    result: CheckResult
    prev_state: StrikeState
    host: str
    heard: bool = False  # a server answered this check (the run-wide offline rule)


@dataclass
class Shipment:
    """What a worker process sends its parent: judged checks whose evidence is on disk
    (fsynced), and baseline texts to cache. The parent commits both."""

    checks: list[PendingCheck]
    cache_rows: list[dict[str, Any]]


class CheckStore:
    """Judged checks in, evidence and committed rows out; one per process and run.

    In a worker process (``ship`` given) judged checks go to the parent, which commits them
    and alone decides the run-wide offline rule; otherwise this store commits them itself."""

    def __init__(self, archive: Archive, settings: CheckSettings, run_id: int,
                 on_result: Callable[[CheckResult], None] | None = None,
                 ship: Callable[[Shipment], None] | None = None) -> None:
        self.archive = archive
        self.db = archive.db
        self.settings = settings
        self.run_id = run_id
        self.on_result = on_result
        self.ship = ship
        self.writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db,
                                 max_size=settings.network.max_warc_size,
                                 warcinfo={"purpose": "evarchive check: live answers kept as "
                                                      "evidence of link rot and drift",
                                           "httpx": httpx.__version__,
                                           "settings": settings.public()},
                                 prefix="EVA-CHECK")
        self.last_checks: dict[int, dict[str, Any]] = {}  # each source's latest check row
        self.pending: list[PendingCheck] = []
        self.cache_rows: list[dict[str, Any]] = []  # baseline texts to cache at next commit
        self.heard = False  # has any server answered during this run?
        self.offline_batches = 0
        self.committed = 0  # checks this store committed (or shipped)
        self.received: list[CheckResult] = []  # parent of workers: every result sent to it
        self._last_commit = time.monotonic()

    def load_last_checks(self, source_ids: Iterable[int]) -> None:
        """The latest check of every source about to be checked, in one query."""
        wanted = set(source_ids)
        for row in self.db.query(
                "SELECT k.* FROM checks k JOIN (SELECT source_id, MAX(id) AS id FROM checks "
                "GROUP BY source_id) m ON k.id = m.id"):
            if row["source_id"] in wanted:
                self.last_checks[row["source_id"]] = row

    def keep_text(self, row: dict[str, Any]) -> None:
        """A baseline's main text, cached in the catalogue with the next commit."""
        self.cache_rows.append(row)

    # ------------------------------------------------------------ one check
    def add(self, source: dict[str, Any], host: str, started: dt.datetime, obs: Observation,
            probe: Observation | None, baseline: Baseline | None, verdict: Verdict,
            elapsed_ms: float, stable_digest: str | None) -> CheckResult:
        """A judged check: its result, its evidence written, its row waiting for the commit."""
        prev_row = self.last_checks.get(source["id"])
        result, text_sha = judged_result(source, started, obs, baseline, verdict, elapsed_ms,
                                         stable_digest, prev_row, self.settings.rule)
        records = self._write_evidence(source, obs, probe, verdict, result)
        result.evidence_warc = records[0][1].warc_file if records else None
        row = check_row(result, obs, probe, text_sha, self.run_id, self.settings.clock())
        self.pending.append(PendingCheck(row, records, result, state_of(prev_row), host,
                                         heard=bool(obs.hops)))
        if self.ship is not None:
            if time.monotonic() - self._last_commit >= SHIP_INTERVAL:
                self.commit_pending()
            return result
        self.heard = self.heard or bool(obs.hops)
        # Until some server has answered, checks are held back: if none ever
        # does, this machine is offline and they must not count as strikes.
        due = time.monotonic() - self._last_commit >= self.settings.commit_interval
        if len(self.pending) >= COMMIT_EVERY or (due and self.heard):
            self.commit_pending()
        return result

    def _write_evidence(self, source: dict[str, Any], obs: Observation, probe: Observation | None,
                        verdict: Verdict, result: CheckResult) -> list[tuple[str, WrittenRecord]]:
        """What the server answered, as WARC records: every exchange of the
        check (HEAD and GET), the random-path probe when the verdict rests on
        it, and a metadata record stating the verdict and its evidence."""
        if verdict.verdict == "ok" and self.settings.evidence != "all":
            return []
        date = result.checked_at
        self.writer.begin_capture()
        out: list[tuple[str, WrittenRecord]] = []
        for hop in obs.extra_raw_hops:
            out += [("head", r) for r in write_hop_records(self.writer, hop, date, None)]
        for hop in obs.raw_hops:
            out += [("answer", r) for r in write_hop_records(self.writer, hop, date, None)]
        if probe is not None and verdict.detail in ("probe", "generic-redirect"):
            for hop in probe.raw_hops:
                out += [("probe", r) for r in write_hop_records(self.writer, hop, date, None)]
        answer = [r for role, r in out if role == "answer" and r.record_type == "response"]
        headers = [("WARC-Refers-To", answer[-1].record_id)] if answer else []
        body = warc_fields(metadata_fields(result, obs, probe, source))
        out.append(("verdict", self.writer.write(RecordSpec(
            "metadata", request_url(source["url"]), date, RecordBlock(body),
            content_type="application/warc-fields", headers=headers))))
        return out

    # ------------------------------------------------------------ commits
    def receive(self, shipments: list[Shipment]) -> None:
        """Checks from workers: held and committed by the same rule as in one process."""
        for shipment in shipments:
            for item in shipment.checks:
                self.pending.append(item)
                self.received.append(item.result)
                self.heard = self.heard or item.heard
            self.cache_rows.extend(shipment.cache_rows)
        # Until some server has answered (in any worker) checks are held back, to the end of
        # the run if none ever does: then the offline rule judges them all at once.
        due = time.monotonic() - self._last_commit >= self.settings.commit_interval
        if self.heard and (due or len(self.pending) >= COMMIT_EVERY):
            self.commit_pending()

    def commit_pending(self) -> None:
        """fsync the evidence, then commit the waiting checks, their records
        and one custody entry in a single transaction: a run killed at any
        point leaves whole checks or none, never half of one."""
        if not self.pending and not self.cache_rows:
            return
        if self.ship is not None:
            self._ship_pending()
            return
        self.writer.sync()
        batch, self.pending = self.pending, []
        cache, self.cache_rows = self.cache_rows, []
        if self.settings.offline_guard and not self.heard and looks_offline(
                (item.host, item.row["verdict"], item.row["detail"]) for item in batch):
            self.offline_batches += 1
            for item in batch:
                _uncount(item)
        with transaction(self.db):
            digests = self._insert_checks(batch)
            if cache:
                self.db.conn.executemany(
                    "INSERT OR IGNORE INTO check_baselines (capture_id, extractor_version, "
                    "text_sha256, title, h1, paragraphs) VALUES (?, ?, ?, ?, ?, ?)",
                    [list(row.values()) for row in cache])
            if digests:
                custody.append(self.db, "check", f"run:{self.run_id}",
                               {"run_id": self.run_id, "checks": digests})
        self.committed += len(batch)
        for item in batch:
            self.last_checks[item.result.source_id] = item.row
            if self.on_result:
                self.on_result(item.result)
        self._last_commit = time.monotonic()

    def _ship_pending(self) -> None:
        """A worker's commit: fsync the evidence, then send the checks to the parent."""
        assert self.ship is not None
        batch, self.pending = self.pending, []
        cache, self.cache_rows = self.cache_rows, []
        if any(item.records for item in batch):
            self.writer.sync()
        self.ship(Shipment(batch, cache))
        self.committed += len(batch)
        self._last_commit = time.monotonic()

    def _insert_checks(self, batch: list[PendingCheck]) -> list[dict[str, Any]]:
        """Insert a batch with one statement per table (ids assigned here,
        inside the write transaction, so records can point at their check)."""
        if not batch:
            return []
        first_id = (self.db.execute("SELECT COALESCE(MAX(id), 0) FROM checks").fetchone()[0]) + 1
        columns = ["id", *batch[0].row]
        records: list[list[Any]] = []
        ends: dict[str, int] = {}
        digests = []
        for offset, item in enumerate(batch):
            check_id = first_id + offset
            item.result.check_id = check_id
            item.row["id"] = check_id
            for role, rec in item.records:
                records.append([check_id, role, rec.warc_file, rec.offset, rec.length,
                                rec.record_id, rec.record_type, rec.target_uri,
                                rec.block_sha256, rec.payload_sha256, rec.member_sha256])
                ends[rec.warc_file] = max(ends.get(rec.warc_file, 0), rec.offset + rec.length)
            digests.append({"check_id": check_id, "source_id": item.row["source_id"],
                            "verdict": item.row["verdict"], "confirmed": item.row["confirmed"],
                            "row_sha256": hashlib.sha256(to_json(item.row).encode()).hexdigest(),
                            "records": [r.member_sha256 for _, r in item.records]})
        marks = ", ".join("?" for _ in columns)
        names = ", ".join(f"[{c}]" for c in columns)
        self.db.conn.executemany(f"INSERT INTO checks ({names}) VALUES ({marks})",
                                 [[item.row[c] for c in columns] for item in batch])
        if records:
            self.db.conn.executemany(
                "INSERT INTO check_records (check_id, role, warc_file, offset, length, record_id, "
                "record_type, target_uri, block_sha256, payload_sha256, member_sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)
        for name, end in ends.items():
            self.db.execute("UPDATE warc_files SET referenced_size = MAX(referenced_size, ?) "
                            "WHERE name = ?", [end, name])
        return digests

    def close(self) -> None:
        self.writer.close()

    def abandon(self) -> None:
        """After the archive's storage failed (a full disk): keep only what is provably whole.

        A waiting check is committed (or shipped) only once its evidence is fsynced and reads
        back whole at the offsets it names; any other is dropped, to be checked by the next run.
        Nothing of the failed check itself is kept: a full disk is not the site's failure. The
        file is sealed as interrupted (by the parent, for a worker). If even the catalogue
        cannot be written, the next run seals the file.
        """
        try:
            self.writer.sync()
            self.pending = [item for item in self.pending if all(
                record_intact(self.archive.warcs_dir, rec.as_row()) for _, rec in item.records)]
            self.commit_pending()
        except (OSError, sqlite3.Error):
            self.pending = []
        self.writer.abandon()
        if self.ship is None:
            with contextlib.suppress(OSError, sqlite3.Error):
                recover_interrupted(self.archive.warcs_dir, self.db)


def stopped_by_storage(reason: str, committed: int, total: int) -> ArchiveWriteError:
    """The exit-3 error of a check run that the archive's storage stopped."""
    return ArchiveWriteError(
        f"writing the archive failed ({reason}); {committed} of the {total} checks of this run "
        "are committed, the rest were not checked this time and no source is blamed for it. "
        "Free space (or fix the problem) and run the check again.", reason)


# ------------------------------------------------------------ rows

def check_row(result: CheckResult, obs: Observation, probe: Observation | None,
               text_sha: str | None, run_id: int, ended: dt.datetime) -> dict[str, Any]:
    chain = [{"url": h.url, "status": h.status, "location": h.location} for h in obs.hops]
    return {
        "source_id": result.source_id, "run_id": run_id, "checked_at": result.checked_at,
        "ended_at": stamp(ended), "verdict": result.verdict, "detail": result.detail,
        "reason": result.reason, "method": result.method, "http_status": obs.status,
        "final_url": obs.final_url, "redirect_chain": to_json(chain) if chain else None,
        "server_ip": obs.server_ip, "content_type": obs.content_type,
        "payload_size": len(obs.body) if obs.hops and obs.method != "HEAD" else None,
        "payload_sha256": obs.payload_sha256 if obs.method != "HEAD" else None,
        "text_sha256": text_sha, "similarity": result.similarity,
        "baseline_capture_id": result.baseline_capture_id,
        "probe_url": probe.url if probe else None, "probe_status": probe.status if probe else None,
        "elapsed_ms": result.elapsed_ms, "strikes": result.strikes,
        "first_failure_at": result.first_failure_at, "confirmed": int(result.confirmed),
        "counted": int(result.counted), "change": result.change,
        "newly_failed": int(result.newly_failed), "warc_file": result.evidence_warc,
        "error_message": obs.error_message,
    }


def metadata_fields(result: CheckResult, obs: Observation, probe: Observation | None,
                     source: dict[str, Any]) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = [
        ("software", f"evarchive/{__version__}"), ("event", "live check"),
        ("cited-url", source["url"]), ("checked-at", result.checked_at),
        ("verdict", result.verdict), ("detail", result.detail), ("reason", result.reason),
        ("method", result.method or ""),
        ("redirect-chain", [{"url": h.url, "status": h.status, "location": h.location}
                            for h in obs.hops]),
    ]
    if obs.status is not None:
        fields.append(("http-status", str(obs.status)))
    if obs.final_url:
        fields.append(("final-url", obs.final_url))
    if obs.server_ip:
        fields.append(("server-ip", obs.server_ip))
    if obs.error_kind:
        fields += [("error-kind", obs.error_kind), ("error-message", obs.error_message or "")]
    if result.similarity is not None:
        fields.append(("similarity-to-last-capture", f"{result.similarity:.4f}"))
    if result.baseline_capture_id:
        fields.append(("compared-with-capture", str(result.baseline_capture_id)))
    if probe is not None:
        fields += [("probe-url", probe.url), ("probe-status", str(probe.status or ""))]
    fields += [("strikes", str(result.strikes)), ("confirmed", str(result.confirmed).lower())]
    for hop in [*obs.extra_raw_hops, *obs.raw_hops]:  # what was wrong on the wire (wire.py)
        fields += [("finding", f"{hop.url}: {text}") for text in hop.findings]
    return fields


def _uncount(item: PendingCheck) -> None:
    prev = item.prev_state
    item.result.counted = False
    item.result.strikes, item.result.confirmed = prev.strikes, prev.confirmed
    item.result.first_failure_at = stamp(prev.first_failure_at) if prev.first_failure_at else None
    item.result.change, item.result.newly_failed = None, False
    item.result.strike_note = "not counted: no host answered (is this machine offline?)"
    item.row.update({"strikes": prev.strikes, "confirmed": int(prev.confirmed),
                     "first_failure_at": item.result.first_failure_at, "counted": 0,
                     "change": None, "newly_failed": 0})


def start_run_row(db: Any, count: int, settings: CheckSettings) -> int:
    with transaction(db):
        return insert(db, "runs", {
            "command": f"check ({count} sources)", "started_at": utc_now(),
            "tool_version": __version__, "settings": to_json(settings.public()),
            "pid": os.getpid()})


def end_run_row(db: Any, run_id: int, report: CheckReport) -> None:
    counts: dict[str, int] = {}
    for r in report.results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    with transaction(db):
        update(db, "runs", run_id, {"ended_at": utc_now()})
        custody.append(db, "check-run", f"run:{run_id}", {
            "run_id": run_id, "verdicts": counts, "offline": report.offline,
            "newly_failed": len(report.newly_failed),
            "recaptured": len(report.recaptured)})


def record_recaptures(db: Any, results: list[CheckResult], outcomes: list[Any]) -> None:
    """Link each drifted or moved check to the capture made anew of its source."""
    by_url = {o.url: o for o in outcomes}
    with transaction(db):
        for result in results:
            outcome = by_url.get(result.url)
            if outcome is None or outcome.capture_id is None or result.check_id is None:
                continue
            result.recapture_id = outcome.capture_id
            insert(db, "check_recaptures", {"check_id": result.check_id,
                                            "capture_id": outcome.capture_id})
            custody.append(db, "check-recapture", result.url, {
                "check_id": result.check_id, "capture_id": outcome.capture_id,
                "capture_status": outcome.status})
