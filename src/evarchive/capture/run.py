"""A capture run: URLs fetched under limits, their records written, then committed in groups.

Flow for one URL: refuse what may not be fetched; fetch hop by hop (each redirect is its own
request/response pair); spool each body to disk while hashing it; hand the page to the one task
that records (its host's slot is then free for the next request); write the records; then, once
the bytes are fsynced, commit the capture to the catalogue together with its custody-log
entry. Captures are committed in small groups so that a run of a thousand pages does not pay a
thousand fsyncs, and a kill at any moment leaves only an unreferenced tail, never a catalogue
row that points at missing bytes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from .. import __version__, client, custody, decoded, parallel
from ..archive import Archive
from ..catalogue import ensure_source, ensure_sources, format_time, insert, to_json, transaction, update, utc_now
from ..errors import ArchiveWriteError, storage_failure
from ..records import record_intact
from ..urls import host_of, validate_url
from ..warcwriter import RecordBlock, RecordSpec, WarcWriter, WrittenRecord, recover_interrupted, warc_fields
from .fetch import CapturedHop, Fetcher, StorageError, build_client, classify_exception
from .records import chain_of, content_verdict, provenance_fields, revisit_target, write_hop_records
from .settings import CaptureSettings


@dataclass
class CaptureOutcome:
    """What happened to one URL; ``status`` is captured, revisited or failed."""

    url: str
    status: str
    source_id: int | None = None
    capture_id: int | None = None
    http_status: int | None = None
    final_url: str | None = None
    payload_sha256: str | None = None
    payload_size: int | None = None
    warc_file: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    truncated: bool = False
    findings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

@dataclass
class PendingCapture:
    """A capture whose records are written but not yet committed to the catalogue."""

    row: dict[str, Any]
    records: list[WrittenRecord]
    outcome: CaptureOutcome
    end_offset: int | None
    artefacts: list[dict[str, Any]] = field(default_factory=list)  # browser engine only
    decoded_contents: dict[str, decoded.Decoded] = field(default_factory=dict)  # see decoded.py

@dataclass
class Fetched:
    """One URL's exchanges as fetched (bodies spooled, not yet written), or why they stopped."""

    url: str
    source_id: int
    started: str
    ended: str
    hops: list[CapturedHop]
    failure: tuple[str, str] | None  # (error class, message); None: the fetch ended normally


def _close_bodies(hops: list[CapturedHop]) -> None:
    for hop in hops:
        hop.body.close()


# Fetched pages waiting to be recorded, at most; past it a fetch keeps its host's slot until the
# page has a place (so that spooled bodies cannot pile up when recording is the slower side).
RECORD_BACKLOG = 16
# A fetched page, and the future its task waits on for the outcome of recording it
Backlog = asyncio.Queue[tuple[Fetched, "asyncio.Future[CaptureOutcome]"]]


def _drop_backlog(backlog: Backlog) -> None:
    """Pages a stopped run will not record: their spooled bodies are closed."""
    while not backlog.empty():
        fetched, recorded = backlog.get_nowait()
        _close_bodies(fetched.hops)
        recorded.cancel()

# --------------------------------------------------------------------------- the run

class CaptureRun:
    """Captures a list of URLs into one archive; one instance per process and run."""

    def __init__(self, archive: Archive, settings: CaptureSettings,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> None:
        self.archive = archive
        self.db = archive.db
        self.settings = settings
        self.on_result = on_result
        self.writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db,
                                 max_size=settings.max_warc_size,
                                 warcinfo={"httpx": httpx.__version__,
                                           "settings": settings.public()})
        self.pending: list[PendingCapture] = []
        self._last_commit = time.monotonic()
        self.run_id: int | None = None
        self.source_ids: dict[str, int] = {}
        self.committed: list[CaptureOutcome] = []  # in commit order; only what the catalogue holds
        self._stopped: BaseException | None = None  # the storage failure that ended the run

    # ----------------------------------------------------------------- orchestration
    async def run(self, urls: list[str]) -> list[CaptureOutcome]:
        try:
            self.run_id = self._start_run_row(len(urls))
            self.source_ids = ensure_sources(self.db, urls)
        except (OSError, sqlite3.Error) as exc:
            if storage_failure(exc) is None:
                raise
            raise self._stopped_error(exc, len(urls)) from exc
        global_limit = asyncio.Semaphore(self.settings.concurrency)
        host_limits: dict[str, asyncio.Semaphore] = {}
        async with build_client(self.settings) as client:
            fetcher = Fetcher(client, self.settings, self.archive.tmp_dir)
            backlog: Backlog = asyncio.Queue(RECORD_BACKLOG)

            async def one_url(url: str) -> None:
                host = host_of(url)
                limit = host_limits.setdefault(host, asyncio.Semaphore(self.settings.per_host))
                # The host slot first: a task waiting for its host must not hold a global slot.
                async with limit, global_limit:
                    fetched = await self.fetch(fetcher, url)
                    recorded = asyncio.get_running_loop().create_future()
                    try:  # a full backlog holds the slot: fetching waits for recording
                        await backlog.put((fetched, recorded))
                    except BaseException:
                        _close_bodies(fetched.hops)
                        raise
                await recorded  # the outcome, or the recording's storage failure

            recorder = asyncio.ensure_future(self._record_in_turn(backlog))
            tasks = [asyncio.ensure_future(one_url(u)) for u in urls]
            try:
                await asyncio.gather(*tasks)
                await self._stop_recorder(recorder, backlog)
                self._finish_or_stop()
            except StorageError as exc:
                # Stop every other task before anything else: none may write after the failure.
                self._stopped = self._stopped or exc.__cause__ or exc
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await self._stop_recorder(recorder, backlog)
                self._abandon_storage()
                raise self._stopped_error(self._stopped, len(urls)) from exc
            except BaseException:
                recorder.cancel()
                _drop_backlog(backlog)
                self._finish()  # Ctrl-C: keep what is complete, close the file cleanly
                raise
        order = {u: i for i, u in enumerate(urls)}
        return sorted(self.committed, key=lambda o: order.get(o.url, 0))

    def _finish(self) -> None:
        self.commit_pending()
        self.writer.close()
        self._end_run_row()

    def _finish_or_stop(self) -> None:
        try:
            self._finish()
        except (OSError, sqlite3.Error) as exc:
            raise StorageError() from exc

    def _stopped_error(self, cause: BaseException, total: int) -> ArchiveWriteError:
        reason = storage_failure(cause) or f"{type(cause).__name__}: {cause}"
        return stopped_by_storage(reason, len(self.committed), total)

    def _abandon_storage(self) -> None:
        """After a failed write: commit only what is provably on disk, then seal the file.

        A failed write may leave part of a gzip member in the file, so the writer never appends
        again; the file is sealed as interrupted and the partial member is its unreferenced tail.
        A waiting capture is committed only once its records are fsynced and read back whole at
        the offsets it names; any other is left uncommitted, for ``capture --pending``. If even
        the catalogue cannot be written (a full disk), the next run seals the file.
        """
        try:
            self.writer.sync()
            self.pending = [item for item in self.pending
                            if all(record_intact(self.archive.warcs_dir, r.as_row()) for r in item.records)]
            self.commit_pending()
        except (OSError, sqlite3.Error):
            self.pending = []
        self.writer.abandon()
        try:
            recover_interrupted(self.archive.warcs_dir, self.db)
            self._end_run_row()
        except (OSError, sqlite3.Error):
            pass

    async def fetch(self, fetcher: Fetcher, url: str) -> Fetched:
        """The URL's exchanges, hop by hop, or why they stopped; nothing is written yet."""
        source_id = self.source_ids.get(url) or ensure_source(self.db, url)
        started = format_time(self.settings.clock())
        hops: list[CapturedHop] = []
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                await fetcher.fetch_chain(url, hops)
        except BaseException as exc:
            if isinstance(exc, StorageError):
                self._stopped = self._stopped or exc.__cause__ or exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError, StorageError)):
                _close_bodies(hops)
                raise
            kind, message = classify_exception(exc)
            message = client.redact_proxy(message, self.settings.proxy)
            # The hops received before the failure are evidence too (the redirect that led there).
            return Fetched(url, source_id, started, format_time(self.settings.clock()), hops,
                           (kind, message))
        return Fetched(url, source_id, started, format_time(self.settings.clock()), hops, None)

    async def _record_in_turn(self, backlog: Backlog) -> None:
        """Write and judge the fetched pages one at a time, each in a turn of the event loop of its
        own. A host's slot bounds its requests in flight, and a fetched page's are over; recording
        is this process's CPU. Pages recorded as they arrive, a wave of answers at a time, would
        hold back the reading of every other answer and the next requests, and the hosts' latency
        and the CPU would add up. One page a turn lets the network's events and the requests that
        waited for a slot go first, so they overlap instead."""
        while True:
            fetched, recorded = await backlog.get()
            try:
                await asyncio.sleep(0)
            except BaseException:  # the run is stopping: this page is not recorded
                _close_bodies(fetched.hops)
                recorded.cancel()
                raise
            try:
                outcome = self._record_safely(fetched)
            except Exception as exc:  # noqa: BLE001 - handed to the page's task, which raises it
                if not recorded.done():
                    recorded.set_exception(exc)
            else:
                if not recorded.done():
                    recorded.set_result(outcome)

    async def _stop_recorder(self, recorder: asyncio.Future[None], backlog: Backlog) -> None:
        recorder.cancel()
        await asyncio.gather(recorder, return_exceptions=True)
        _drop_backlog(backlog)

    def _record_safely(self, fetched: Fetched) -> CaptureOutcome:
        if self._stopped is not None:  # a task that finishes after the failure records nothing
            _close_bodies(fetched.hops)
            raise StorageError() from self._stopped
        try:
            return self._record(fetched)
        except (OSError, sqlite3.Error) as exc:
            self._stopped = exc
            raise StorageError() from exc

    # ----------------------------------------------------------------- recording
    def _record(self, fetched: Fetched) -> CaptureOutcome:
        url, source_id, started, ended = fetched.url, fetched.source_id, fetched.started, fetched.ended
        hops, failure = fetched.hops, fetched.failure
        try:
            final = hops[-1] if hops else None
            if failure is None and final is not None and final.status >= 400:
                failure = ("HTTPStatus", f"HTTP {final.status} {final.reason}".strip())
            revisit_of = None
            if failure is None and final is not None and not final.truncated:
                revisit_of = revisit_target(self.db, source_id, final.payload_sha256,
                                             self.archive.warcs_dir)
            records: list[WrittenRecord] = []
            if hops:
                records = self._write_records(url, hops, started, ended, revisit_of)
            extra = content_verdict(hops) if failure is None and hops else None
            return self._queue(url, source_id, started, ended, hops, records, failure, revisit_of,
                               row_extra=extra)
        finally:
            _close_bodies(hops)

    def _write_records(self, url: str, hops: list[CapturedHop], started: str, ended: str,
                       revisit_of: dict[str, Any] | None) -> list[WrittenRecord]:
        self.writer.begin_capture()
        records: list[WrittenRecord] = []
        for index, hop in enumerate(hops):
            is_final = index == len(hops) - 1
            records += write_hop_records(self.writer, hop, started, revisit_of if is_final else None)
        response = records[-1]
        final = hops[-1]
        if final.tls and final.tls.get("chain_pem"):
            chain = "".join(final.tls["chain_pem"]).encode("ascii")
            records.append(self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:tls-certificate-chain:{final.tls['leaf_sha256']}",
                started, RecordBlock(chain), content_type="application/pem-certificate-chain",
                headers=[("WARC-Concurrent-To", response.record_id)])))
        fields = provenance_fields(url, hops, self.settings, started, ended, None, revisit_of)
        records.append(self.writer.write(RecordSpec(
            "metadata", hops[0].url, started, RecordBlock(warc_fields(fields)),
            content_type="application/warc-fields",
            headers=[("WARC-Refers-To", response.record_id)])))
        return records

    def _queue(self, url: str, source_id: int, started: str, ended: str, hops: list[CapturedHop],
               records: list[WrittenRecord], failure: tuple[str, str] | None,
               revisit_of: dict[str, Any] | None, artefacts: list[dict[str, Any]] | None = None,
               row_extra: dict[str, Any] | None = None,
               completed: Callable[[CaptureOutcome], CaptureOutcome] | None = None) -> CaptureOutcome:
        """Queue the capture for the next commit; ``completed`` turns its outcome into the whole
        one an engine reports (it is what the commit reports, so it must be whole by then)."""
        final = hops[-1] if hops else None
        tls = (final.tls if final else None) or {}
        status = "failed" if failure else ("revisited" if revisit_of else "captured")
        row = {
            "source_id": source_id, "run_id": self.run_id, "url_requested": url,
            "status": "failed" if failure else "ok",
            "kind": None if not records else ("revisit" if revisit_of else "response"),
            "started_at": started, "ended_at": ended, "warc_date": started if records else None,
            "final_url": final.url if final else None,
            "redirect_chain": to_json(chain_of(hops)) if hops else None,
            "http_status": final.status if final else None,
            "server_ip": final.server_ip if final else None,
            "server_port": final.server_port if final else None,
            "http_version": final.http_version if final else None,
            "tls_version": tls.get("version"), "tls_cipher": tls.get("cipher"),
            "cert_chain_pem": to_json(tls["chain_pem"]) if tls.get("chain_pem") else None,
            "cert_sha256": tls.get("leaf_sha256"),
            "cert_validated": int(tls["validated"]) if tls else None,
            "insecure": int(self.settings.insecure), "proxy_used": int(bool(self.settings.proxy)),
            "content_type": final.headers.get("content-type") if final else None,
            "payload_size": final.body_length if final else None,
            "payload_sha256": final.payload_sha256 if final else None,
            "truncated": int(bool(final and final.truncated)),
            "warc_file": records[0].warc_file if records else None,
            "error_class": failure[0] if failure else None,
            "error_message": failure[1] if failure else None,
            "refers_to_capture_id": revisit_of["capture"]["id"] if revisit_of else None,
            **(row_extra or {}),
        }
        outcome = CaptureOutcome(
            url=url, status=status, source_id=source_id, http_status=row["http_status"],
            final_url=row["final_url"], payload_sha256=row["payload_sha256"],
            payload_size=row["payload_size"], warc_file=row["warc_file"],
            error_class=row["error_class"], error_message=row["error_message"],
            truncated=bool(row["truncated"]),
            findings=[f"{h.url}: {text}" for h in hops for text in h.findings])
        if completed is not None:
            outcome = completed(outcome)
        end = (records[-1].offset + records[-1].length) if records else None
        # Computed now, while the page's body is still spooled: no export has to inflate it again.
        self.pending.append(PendingCapture(row, records, outcome, end, artefacts or [],
                                           decoded.at_capture(hops, records)))
        if (len(self.pending) >= self.settings.commit_every
                or time.monotonic() - self._last_commit >= self.settings.commit_interval):
            self.commit_pending()
        return outcome

    def commit_pending(self) -> None:
        """fsync the WARC, then commit the waiting captures and their custody entries at once."""
        if not self.pending:
            return
        self.writer.sync()
        batch = self.pending
        entries = []
        with transaction(self.db):
            for item in batch:
                capture_id = insert(self.db, "captures", item.row)
                item.outcome.capture_id = capture_id
                for record in item.records:
                    insert(self.db, "capture_records", {"capture_id": capture_id, **record.as_row()})
                for artefact in item.artefacts:
                    insert(self.db, "capture_artefacts", {"capture_id": capture_id, **artefact})
                decoded.store(self.db, item.decoded_contents)
                if item.end_offset is not None and item.row["warc_file"]:
                    self.db.execute(
                        "UPDATE warc_files SET referenced_size = MAX(referenced_size, ?) "
                        "WHERE name = ?", [item.end_offset, item.row["warc_file"]])
                details = {"capture_id": capture_id, "capture": item.row,
                           "records": [r.as_row() for r in item.records]}
                if item.outcome.findings:
                    details["findings"] = item.outcome.findings
                if item.artefacts:
                    details["artefacts"] = item.artefacts
                entries.append(("capture", item.row["url_requested"], details))
            custody.append_many(self.db, entries)
        self.pending = []  # only now: a batch whose transaction failed is still waiting
        self._last_commit = time.monotonic()
        self.committed.extend(item.outcome for item in batch)
        if self.on_result:
            for item in batch:
                self.on_result(item.outcome)

    # ----------------------------------------------------------------- run rows
    def _start_run_row(self, count: int) -> int:
        with transaction(self.db):
            return insert(self.db, "runs", {
                "command": f"capture ({count} URLs)", "started_at": utc_now(),
                "tool_version": __version__, "settings": to_json(self.settings.public()),
                "pid": _pid()})

    def _end_run_row(self) -> None:
        with transaction(self.db):
            update(self.db, "runs", self.run_id, {"ended_at": utc_now()})


def stopped_by_storage(reason: str, committed: int, total: int) -> ArchiveWriteError:
    """The exit-3 error of a capture run that the archive's storage stopped."""
    return ArchiveWriteError(
        f"writing the archive failed ({reason}); {committed} of the {total} captures of this run "
        "are committed, the rest were not. Free space (or fix the problem) and run "
        "`evarchive capture --pending` to finish.", reason)


def _pid() -> int:
    return os.getpid()
def recover(archive: Archive) -> list[Any]:
    """Seal WARC files left open by a killed run; returns what was found (for a notice)."""
    return recover_interrupted(archive.warcs_dir, archive.db)


def _capture_share(archive_path: Path, settings: Any) -> Callable[[list[str], parallel.ResultBatch], None]:
    def work(urls: list[str], batch: parallel.ResultBatch) -> None:
        archive = Archive.open(archive_path)
        run = CaptureRun(archive, settings, on_result=batch.add)
        asyncio.run(run.run(urls))
        batch.flush()
        archive.close()
    return work


def capture_in_workers(archive: Archive, urls: list[str], settings: Any, workers: int,
                       on_result: Callable[[Any], None] | None) -> list[Any]:
    """Run one ``CaptureRun`` per worker process (``parallel`` forks them) and gather their
    outcomes in URL order."""
    shares = parallel.split_by_host(urls, workers)
    per_worker = replace(settings, concurrency=max(1, settings.concurrency // len(shares)))
    outcomes: list[Any] = []

    def gather(payload: list[Any]) -> None:
        outcomes.extend(payload)
        if on_result:
            for outcome in payload:
                on_result(outcome)

    try:
        parallel.run_in_workers(shares, _capture_share(archive.path, per_worker), gather, "capture",
                                "run `evarchive capture --pending` to finish")
    except ArchiveWriteError as exc:
        # A worker counts only its own captures; every outcome gathered here is a committed one.
        raise stopped_by_storage(exc.reason, len(outcomes), len(urls)) from exc
    order = {u: i for i, u in enumerate(urls)}
    return sorted(outcomes, key=lambda o: order.get(o.url, 0))


def capture_urls(archive: Archive, urls: list[str], settings: CaptureSettings | None = None,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> list[CaptureOutcome]:
    """Capture ``urls`` into ``archive`` (blocking); every attempt lands in the catalogue."""
    settings = settings or CaptureSettings()
    for url in urls:
        validate_url(url)
    client.validate_proxy(settings.proxy)
    unique = list(dict.fromkeys(urls))
    workers = parallel.worker_count(settings.workers, unique)
    if workers > 1 and not parallel.threads_other_than_main():
        return capture_in_workers(archive, unique, settings, workers, on_result)
    run = CaptureRun(archive, settings, on_result)
    with parallel.fewer_collections():
        return asyncio.run(run.run(unique))
