"""A check run: which requests each source needs, in what order, over how many processes.

One source's check is an answer (HEAD first for non-HTML sources, then GET), judged
(``verdicts.py``); when the verdict could change, a random path next to it (the probe, once per
site section) and a second look at a page that seems to have drifted. ``SourceChecker`` does
that for every source of a share, through ``LiveWeb`` (``fetch.py``), and hands each judged
check to its ``CheckStore`` (``store.py``). ``check_sources`` holds the archive's check lock and
runs one share per process: one process, or one worker per core for a large run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..archive import Archive
from ..capture import CaptureSettings, build_client
from ..catalogue import ensure_sources
from ..errors import ArchiveLockedError, ArchiveWriteError, EvarchiveError, UsageError, storage_failure
from ..parallel import fewer_collections, run_in_workers, split_by_host, threads_other_than_main, worker_count
from ..queries import find_report, sources_of_latest_version
from ..urls import normalise_url, request_url, validate_url
from ..warcwriter import recover_interrupted
from .baselines import Baselines
from .fetch import LiveWeb, MethodFetcher, host_key, probe_key, probe_url
from .results import CheckReport, CheckResult, stamp
from .settings import CheckSettings
from .store import CheckStore, end_run_row, record_recaptures, start_run_row, stopped_by_storage
from .verdicts import (
    Baseline,
    Observation,
    Verdict,
    classify,
    head_conclusive,
    head_note,
    head_verdict,
    htmlish,
    known_wall,
    second_look_verdict,
    unjudged,
    wants_probe,
)

LOCK_NAME = "check.lock"


class SourceChecker:
    """Checks the sources of one share: asks ``web``, judges, and hands each check to ``store``."""

    def __init__(self, settings: CheckSettings, web: LiveWeb, baselines: Baselines,
                 store: CheckStore) -> None:
        self.settings = settings
        self.web = web
        self.baselines = baselines
        self.store = store
        self._probes: dict[tuple[str, str, str], asyncio.Future[Observation]] = {}

    async def check_all(self, sources: list[dict[str, Any]]) -> list[CheckResult]:
        """Every source at once (the limits are the web's); stops them all at the first storage
        failure, which is this machine's, not a site's."""
        results: list[CheckResult] = []

        async def one(source: dict[str, Any]) -> None:
            results.append(await self.check_one(source))

        tasks = [asyncio.ensure_future(one(s)) for s in sources]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # none may go on judging or writing after a failure
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return results

    async def check_one(self, source: dict[str, Any]) -> CheckResult:
        started = self.settings.clock()
        t0 = time.monotonic()
        capture_row, baseline = self.baselines.of(source["id"])
        obs = await self._observe(source["url"], capture_row)
        obs.known_wall = known_wall(obs, self.store.last_checks.get(source["id"]))
        try:
            verdict, probe, stable_digest = await self._judge(obs, baseline, capture_row)
        except Exception as exc:  # noqa: BLE001 - one page must never end the whole run
            if storage_failure(exc) is not None:
                raise
            obs.forget_page()
            verdict, probe, stable_digest = unjudged(obs, baseline, exc), None, None
        elapsed = (time.monotonic() - t0) * 1000
        result = self.store.add(source, host_key(source["url"]), started, obs, probe, baseline,
                                verdict, elapsed, stable_digest)
        # Written and judged: this source's bodies are done with (a probe is shared: kept to the end)
        self.web.release([*obs.extra_raw_hops, *obs.raw_hops])
        return result

    async def _judge(self, obs: Observation, baseline: Baseline | None,
                     capture_row: dict[str, Any] | None
                     ) -> tuple[Verdict, Observation | None, str | None]:
        """The verdict, the probe it rests on, and the stable-text digest of a volatile page."""
        threshold = self.settings.drift_threshold
        probe: Observation | None = None
        verdict = head_verdict(obs, capture_row) or classify(obs, baseline, None, threshold)
        if self.settings.probe and wants_probe(obs, verdict):
            probe = await self._probe(obs)
            verdict = classify(obs, baseline, probe, threshold)
        stable_digest = None
        if verdict.verdict == "drifted" and verdict.detail == "text" and self.settings.second_look:
            again = await self.web.fetch(obs.url, urgent=True)
            verdict, stable_digest = second_look_verdict(obs, again, baseline, verdict, threshold)
            self.web.release(again.raw_hops)  # only its text counted: not written as evidence
        return verdict, probe, stable_digest

    async def _observe(self, url: str, capture_row: dict[str, Any] | None) -> Observation:
        mode = self.settings.head
        head_first = mode == "always" or (
            mode == "auto" and capture_row is not None and not htmlish(capture_row["content_type"]))
        if not head_first:
            obs = await self.web.fetch(url)
            obs.method = "GET"
            return obs
        first = await self.web.fetch(url, "HEAD")
        first.method = "HEAD"
        if head_conclusive(first, capture_row):
            return first
        obs = await self.web.fetch(url, urgent=True)
        obs.method = "HEAD>GET"
        obs.head_note = head_note(first)
        obs.extra_raw_hops = first.raw_hops
        return obs

    async def _probe(self, obs: Observation) -> Observation:
        """The site's answer for a path that cannot exist, once per site
        section and run (shared by every source in it)."""
        key = probe_key(obs.url)
        future = self._probes.get(key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._probes[key] = future
            try:
                probe = await self.web.fetch(probe_url(request_url(obs.url)), urgent=True)
            except BaseException as exc:
                future.set_exception(exc)
                raise
            future.set_result(probe)
        return await asyncio.shield(future)


# ------------------------------------------------------------------ one share, one process

async def check_share(archive: Archive, settings: CheckSettings, store: CheckStore,
                      sources: list[dict[str, Any]]) -> list[CheckResult]:
    """Check a share of the sources with one client, then commit (or ship) what was judged.
    A storage failure stops the share: what is whole is kept, and ``ArchiveWriteError``
    (exit 3) says how much."""
    store.load_last_checks(s["id"] for s in sources)
    baselines = Baselines(archive, (s["id"] for s in sources), store.keep_text)
    net = settings.network
    try:
        async with build_client(net) as client:
            web = LiveWeb(net, MethodFetcher(client, net, archive.tmp_dir, "GET").fetch_chain,
                          MethodFetcher(client, net, archive.tmp_dir, "HEAD").fetch_chain)
            try:
                results = await SourceChecker(settings, web, baselines, store).check_all(sources)
            finally:
                web.close()
        store.commit_pending()
        store.close()
    except BaseException as exc:
        reason = storage_failure(exc)
        if reason is not None:
            store.abandon()
            raise stopped_by_storage(reason, store.committed, len(sources)) from exc
        # Also on Ctrl-C: the checks already judged are whole, so they are
        # committed; the rest simply were not checked this time.
        try:
            store.commit_pending()
        finally:
            store.close()
        raise
    return results


async def _run_here(archive: Archive, settings: CheckSettings, sources: list[dict[str, Any]],
                    on_result: Callable[[CheckResult], None] | None) -> CheckReport:
    store = CheckStore(archive, settings, start_run_row(archive.db, len(sources), settings),
                       on_result)
    results = await check_share(archive, settings, store, sources)
    return await _finish_run(archive, settings, store, results, sources)


def _run_in_workers(archive: Archive, settings: CheckSettings, sources: list[dict[str, Any]],
                    workers: int, on_result: Callable[[CheckResult], None] | None) -> CheckReport:
    """The run over worker processes (whole hosts each, as capture does): each worker
    checks its share with its own ``CheckStore``, WARC writer and catalogue connection, and
    ships its judged checks here, where they are committed exactly as in one process. So
    the offline rule sees every worker's checks: one worker whose hosts are all down
    while another's answer is not an offline machine. Call with no event loop running
    (it forks) and with the check lock held: the workers inherit it."""
    run_id = start_run_row(archive.db, len(sources), settings)
    store = CheckStore(archive, settings, run_id, on_result)
    shares = split_by_host(sources, workers, url_of=lambda s: s["url"])
    net = settings.network
    per_worker = replace(settings, recapture=False, network=replace(
        net, concurrency=max(1, net.concurrency // len(shares)), workers=1))
    archive_path = archive.path

    def work(share: list[dict[str, Any]], batch: Any) -> None:
        worker_archive = Archive.open(archive_path)
        worker_store = CheckStore(worker_archive, per_worker, run_id,
                                  ship=lambda shipment: batch.send([shipment]))
        asyncio.run(check_share(worker_archive, per_worker, worker_store, share))
        worker_archive.close()

    try:
        run_in_workers(shares, work, store.receive, "check",
                       "the checks it had sent are kept; run the check again to finish")
    except ArchiveWriteError as exc:
        # A worker counts only its own checks; every check committed here is counted here.
        store.abandon()
        raise stopped_by_storage(exc.reason, store.committed, len(sources)) from exc
    except BaseException:
        try:
            store.commit_pending()  # what the workers sent is whole: kept
        finally:
            store.close()
        raise
    store.commit_pending()
    store.close()
    return asyncio.run(_finish_run(archive, settings, store, store.received, sources))


async def _finish_run(archive: Archive, settings: CheckSettings, store: CheckStore,
                      results: list[CheckResult], sources: list[dict[str, Any]]) -> CheckReport:
    order = {s["id"]: i for i, s in enumerate(sources)}
    report = CheckReport(store.run_id, sorted(results, key=lambda r: order.get(r.source_id, 0)),
                         offline=store.offline_batches > 0)
    if settings.recapture:
        report.recaptured = await _recapture(archive, settings, report)
    end_run_row(archive.db, store.run_id, report)
    return report


async def _recapture(archive: Archive, settings: CheckSettings, report: CheckReport) -> list[Any]:
    """Capture anew every source that drifted or moved, so the archive
    holds every version; the earlier captures stay exactly as they were."""
    todo = [r for r in report.results if r.verdict in ("drifted", "moved") and r.counted]
    if not todo:
        return []
    net = settings.network
    recapture_net = settings.recapture_network or CaptureSettings(
        resolve=net.resolve, ca_file=net.ca_file, proxy=net.proxy, user_agent=net.user_agent,
        insecure=net.insecure, sleep=net.sleep, clock=net.clock)
    from ..browser import recapture_by_engine  # lazy: browser engine, only for --recapture

    outcomes = await recapture_by_engine(archive, recapture_net, [r.url for r in todo])
    record_recaptures(archive.db, todo, outcomes)
    return outcomes


# ------------------------------------------------------------------ the lock

class CheckLock:
    """One check run per archive at a time: an exclusive flock on
    ``locks/check.lock``, released by the kernel if the process dies, so a
    stale lock can never block the next night's run."""

    def __init__(self, locks_dir: Path) -> None:
        self.path = locks_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self, clock: Callable[[], dt.datetime]) -> None:
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise ArchiveLockedError(
                f"another evarchive check is already running on this archive ({holder}); "
                "this run did nothing") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {stamp(clock())}".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CheckLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()



# ------------------------------------------------------------------ public API

def check_sources(archive: Archive, sources: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]],
                  settings: CheckSettings | None = None,
                  on_result: Callable[[CheckResult], None] | None = None) -> CheckReport:
    """Check ``sources`` against the live web (blocking). Holds the archive's
    check lock for the whole run; a second run meanwhile raises
    ``ArchiveLockedError`` (exit 3) before doing anything. ``sources`` may be
    a function, called once the lock is held (selecting URLs adds new ones
    as sources: a run that exits at once must not have done even that)."""
    settings = settings or CheckSettings()
    with CheckLock(archive.locks_dir) as lock:
        lock.acquire(settings.clock)
        chosen = sources() if callable(sources) else sources
        recover_interrupted(archive.warcs_dir, archive.db)
        # A large run over several hosts is CPU-bound in one process: spread it over worker
        # processes, as capture does (never from a process with other threads: see parallel).
        workers = worker_count(settings.network.workers, [s["url"] for s in chosen])
        with fewer_collections():
            if workers > 1 and not threads_other_than_main():
                return _run_in_workers(archive, settings, chosen, workers, on_result)
            return asyncio.run(_run_here(archive, settings, chosen, on_result))


def select_sources(archive: Archive, urls: list[str] | None = None,
                   report: str | None = None) -> list[dict[str, Any]]:
    """The sources a check works on: the given URLs (added as sources when
    new), the sources a report cites, or every source."""
    db = archive.db
    if urls:
        refuse_bad_urls(urls)  # every URL first: a usage error must not add half of them
        ids = ensure_sources(db, list(urls))  # new ones in one transaction
        wanted = list(dict.fromkeys(ids[u] for u in urls))
        rows: dict[int, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows.update((r["id"], r) for r in db.query(
                f"SELECT * FROM sources WHERE id IN ({', '.join('?' for _ in chunk)})", chunk))
        return [rows[i] for i in wanted]
    if report is not None:
        return report_sources(archive, report)
    return list(db.query("SELECT * FROM sources ORDER BY id"))


def refuse_bad_urls(urls: list[str]) -> None:
    """Raise one UsageError naming every URL that cannot be checked (nothing is written)."""
    refused = []
    for url in urls:
        try:
            normalise_url(validate_url(url))
        except EvarchiveError as exc:
            refused.append(exc.message)
    if refused:
        raise UsageError("nothing was checked:\n  " + "\n  ".join(refused))


def report_sources(archive: Archive, report: str) -> list[dict[str, Any]]:
    """Sources cited by the latest version of a report (by id, title or path)."""
    return sources_of_latest_version(archive.db, find_report(archive.db, report)["id"])
