"""One verification run: what runs when, on which connection, reading one snapshot.

The file checks (`files`) run on a thread pool while the log checks (`log`: chain,
signatures, vouched rows, timestamps) run in one more thread on a second read-only
connection; both connections read the same snapshot of the catalogue (see
`Verifier._snapshot`), so rows, log entries and WARC bytes committed by a capture running
meanwhile are left to the next run. A file still open is judged only by the records the
snapshot references. Verification never writes to `warcs/`; it records its run (row and
custody entry) at the end.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sqlite_utils

from .. import custody
from ..catalogue import find_source, insert, read_only_connection, to_json, transaction, utc_now, writer_connection
from ..custody import catalogue_path
from ..errors import CouldNotRunError, UsageError
from .artefacts import ArtefactChecks
from .decodedhashes import DecodedChecks
from .files import FileChecks
from .findings import Findings, Problem, VerifyResult, attach_claims
from .log import LogChecks
from .scan import WORKERS
from .scope import Locator, Scope, report_sources


class Verifier:
    """One verification run over the whole archive or a scope of sources."""

    def __init__(
        self,
        archive: Any,
        *,
        deep: bool = False,
        source_ids: set[int] | None = None,
        scope: dict[str, Any] | None = None,
        tsa_roots: list[Any] | None = None,
        public_keys: list[Any] | None = None,
        workers: int = WORKERS,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.archive = archive
        self.db = archive.db
        self.deep = deep
        self.tsa_roots = tsa_roots
        self.public_keys = public_keys
        self.result = VerifyResult("deep" if deep else "fast", scope or {"all": True})
        self.catalogue_file = catalogue_path(self.db)
        self.scope = Scope(source_ids)
        self.where = Locator(self.db, self.scope)
        findings = Findings(self.result.problems)
        self.artefacts = ArtefactChecks(self.db, self.scope, self.where, findings)
        self.file_checks = FileChecks(archive, self.scope, self.where, findings, self.artefacts, deep=deep,
                                      workers=workers, progress=progress)
        self.decoded = DecodedChecks(self.db, archive.warcs_dir, self.scope, findings, workers)

    def load(self) -> None:
        self.scope.load(self.db, self.deep)

    def log_checks(self, db: Any) -> LogChecks:
        """The log's checks, reading through `db` (a connection of this run's snapshot)."""
        return LogChecks(db, self.scope, self.where.on(db), public_keys=self.public_keys, tsa_roots=self.tsa_roots)

    def run(self) -> VerifyResult:
        started = time.perf_counter()
        # Listed before the snapshot is taken: a WARC file's row is committed before the file is
        # created, so every file listed here is known to the snapshot, and a file created later
        # (by a capture running meanwhile) is not judged.
        on_disk = self.file_checks.disk_files()
        # The log and token checks are Python work; file hashing and inflating run outside the
        # GIL on the pool. Overlap them so the catalogue checks cost (almost) no wall time. The
        # log thread uses its own read-only connection, reading the same snapshot.
        side = self._side_connection()
        try:
            with self._snapshot(side):
                self.load()
                log = self.log_checks(sqlite_utils.Database(side, execute_plugins=False)
                                      if side is not None else self.db)
                with ThreadPoolExecutor(max_workers=1) as pool:
                    log_job = pool.submit(log.run)
                    self.file_checks.check_files(on_disk)
                    self.file_checks.check_records_point_at_files()
                    if self.deep:
                        self.artefacts.rows()
                        self.decoded.run()
                    log_problems = log_job.result()
                self.result.problems.extend(log_problems)
                self.result.log_head = log.log_head
                attach_claims(self.db, self.where, self.result.failures)
        finally:
            if side is not None:
                side.close()
        self.result.files, self.result.bytes, self.result.records = (
            self.file_checks.files, self.file_checks.bytes, self.file_checks.records)
        self.result.seconds = time.perf_counter() - started
        return self.result

    def _side_connection(self) -> sqlite3.Connection | None:
        if self.catalogue_file is None:
            return None
        return read_only_connection(self.catalogue_file, check_same_thread=False)

    @contextlib.contextmanager
    def _snapshot(self, side: sqlite3.Connection | None) -> Iterator[None]:
        """Every catalogue query of the run reads one state of the catalogue.

        Each connection reads inside one read transaction, which WAL pins to the state at its
        first read. Both are pinned while this run holds the write lock, so no commit falls
        between them: rows and log entries committed later (a capture running meanwhile) are
        never judged, and neither are the bytes they reference."""
        conns = [self.db.conn] + ([side] if side is not None else [])
        barrier = self._write_barrier()
        try:
            for conn in conns:
                if not conn.in_transaction:
                    conn.execute("BEGIN")
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # pins the snapshot
        finally:
            if barrier is not None:
                barrier.execute("ROLLBACK")
                barrier.close()
        try:
            yield
        finally:
            for conn in conns:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _write_barrier(self) -> sqlite3.Connection | None:
        """The catalogue's write lock, held while the snapshots are pinned (None when the
        catalogue cannot be written at all: then nothing can commit between them either)."""
        if self.catalogue_file is None or getattr(self.archive, "read_only", False):
            return None
        conn = writer_connection(self.catalogue_file)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                return None
            raise CouldNotRunError(f"the catalogue stayed locked by another run ({exc}); try again") from None
        return conn


# ------------------------------------------------------------------ entry point


def verify_archive(
    archive: Any,
    *,
    deep: bool = False,
    report: str | None = None,
    urls: Iterable[str] = (),
    tsa_roots: list[Any] | None = None,
    public_keys: list[Any] | None = None,
    workers: int = WORKERS,
    record: bool = True,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Verify the archive (or the evidence of a report / some URLs) and record the run."""
    urls = list(urls)
    source_ids: set[int] | None = None
    scope: dict[str, Any] = {"all": True}
    if report is not None or urls:
        source_ids = set()
        scope = {}
        if report is not None:
            source_ids |= report_sources(archive.db, report)
            scope["report"] = report
        if urls:
            for url in urls:
                src = find_source(archive.db, url)
                if src is None:
                    raise UsageError(f"{url} is not a known source")
                source_ids.add(src["id"])
            scope["urls"] = urls
    # A read-only archive (a mount) is verified all the same; only the run cannot be recorded.
    unrecordable = record and getattr(archive, "read_only", False)
    record = record and not unrecordable
    started_at = utc_now()
    verifier = Verifier(archive, deep=deep, source_ids=source_ids, scope=scope, tsa_roots=tsa_roots,
                        public_keys=public_keys, workers=workers, progress=progress)
    result = verifier.run()
    if unrecordable:
        result.problems.append(Problem(
            "run-not-recorded", "the archive is read-only: this verification run was not recorded "
            "(neither in verification_runs nor in the custody log)", severity="note"))
    if record:
        result.run_id = record_run(archive.db, started_at, result)
    return result


def record_run(db: Any, started_at: str, result: VerifyResult) -> int:
    """The run's row and its custody entry, in one transaction; the entry carries the whole row,
    so that a later edit of it (its time, its result) is found like any other."""
    kinds: dict[str, int] = {}
    for p in result.failures:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    row = {
        "started_at": started_at, "ended_at": utc_now(), "mode": result.mode, "scope": to_json(result.scope),
        "result": "intact" if result.intact else "problems", "problems": len(result.failures),
        "notes": len(result.notes), "files": result.files, "bytes": result.bytes, "records": result.records,
        "log_seq": 0, "log_head": result.log_head, "summary": to_json(kinds),
    }
    with transaction(db):
        head = custody.head(db)
        row["log_seq"] = head["seq"] if head else 0
        run_id = insert(db, "verification_runs", row)
        custody.append(db, "verify", f"run {run_id}", {
            "run_id": run_id, "run": row, "mode": result.mode, "scope": result.scope, "result": row["result"],
            "problems": row["problems"], "by_kind": kinds, "files": result.files,
            "bytes": result.bytes, "log_head_checked": result.log_head})
    return run_id
