"""A capture run whose pages are loaded by Chromium through the recording proxy: one browser per
run, a fresh context (and proxy listener) per page, at most ``tabs`` pages at once."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..archive import Archive
from ..capture import CaptureOutcome, CaptureRun, CaptureSettings, StorageError, build_client
from ..catalogue import ensure_source, ensure_sources, find_source, format_time, last_good_capture, to_json
from ..errors import CouldNotRunError, first_line
from ..urls import validate_url
from ..warcwriter import WrittenRecord
from .accounting import account, comparable_bodies
from .engine import CHROMIUM_ARGS, BrowserSettings, find_chromium
from .evidence import PageEvidence, page_chain, page_failure, wall_of
from .page import PageDriver, PageResult, close_quietly
from .processes import PID_FILE, RUN_MARK, forget_mark, kill_all, processes_marked, TreeMemory, with_descendants

if TYPE_CHECKING:  # the proxy (and its X.509 machinery) loads only when the browser engine runs
    from ..mitm import ProxySession, RunAuthority

# Share of the memory bound under which another page may open: a page of a heavy site adds a few
# hundred MB, and a page cut at the bound loses what had not loaded yet.
ADMIT_SHARE = 0.7


@dataclass
class BrowserOutcome(CaptureOutcome):
    engine: str = "browser"
    wall: str | None = None
    artefacts: list[str] = field(default_factory=list)


class BrowserCaptureRun(CaptureRun):
    """A capture run whose pages are loaded by Chromium through the recording proxy."""

    driver_class = PageDriver  # a subclass may time or watch the steps (bench/browser.py --breakdown, tests)

    def __init__(self, archive: Archive, settings: CaptureSettings, browser_settings: BrowserSettings,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> None:
        super().__init__(archive, settings, on_result)
        self.browser_settings = browser_settings
        self.writer.warcinfo["browser-settings"] = browser_settings.public()
        self.run_mark = secrets.token_hex(8)
        self.evidence: PageEvidence | None = None  # once Chromium runs (its version is evidence)
        self.drivers: set[PageDriver] = set()
        self.pages_open = 0
        self.memory_mb = 0.0  # the watchdog's last sample
        self.memory_sampled = asyncio.Condition()

    async def run(self, urls: list[str]) -> list[CaptureOutcome]:
        from playwright.async_api import async_playwright

        from ..mitm import RunAuthority, refuse_cookies

        self.run_id = self._start_run_row(len(urls))
        self.source_ids = ensure_sources(self.db, urls)
        authority = RunAuthority()
        pid_file = self.archive.locks_dir / PID_FILE
        with open(pid_file, "a", encoding="ascii") as fh:
            fh.write(self.run_mark + "\n")
        outcomes: list[CaptureOutcome] = []
        try:
            async with build_client(self.settings) as client, async_playwright() as pw:
                client.headers = {}  # the browser's own headers go upstream, not the defaults
                refuse_cookies(client)
                browser = await self._launch(pw, authority)
                self.evidence = PageEvidence(self.writer, self.settings, self.browser_settings,
                                             browser.version)
                tabs = asyncio.Semaphore(self.browser_settings.tabs)
                self.memory_mb = await asyncio.to_thread(self.measure_memory, os.getpid())

                async def one_url(url: str) -> None:
                    async with tabs:
                        await self._room_for_a_page()
                        self.pages_open += 1
                        try:
                            outcome = await self.capture_page(browser, client, authority, url)
                        finally:
                            self.pages_open -= 1
                            async with self.memory_sampled:  # the last page out lets the next in
                                self.memory_sampled.notify_all()
                    outcomes.append(outcome)  # reported (on_result) when committed, as by the HTTP engine

                tasks = [asyncio.ensure_future(one_url(u)) for u in urls]
                watchdog = asyncio.ensure_future(self._watch_memory())
                try:
                    await asyncio.gather(*tasks)
                except StorageError as exc:
                    for task in tasks:
                        task.cancel()
                    await asyncio.gather(*tasks, return_exceptions=True)
                    committed = self._abandon_storage()
                    raise CouldNotRunError(
                        f"writing the archive failed ({exc.__cause__}); {committed} captures of this "
                        "run are safely committed, the rest were not. Free space (or fix the problem) "
                        "and run `evarchive capture --pending` to finish.") from exc
                except BaseException:
                    self._finish()
                    raise
                finally:
                    watchdog.cancel()
                    await close_quietly(browser)
                self._finish()
        finally:
            kill_all(with_descendants(processes_marked(RUN_MARK + self.run_mark)))  # never outlive the run
            authority.close()
            forget_mark(pid_file, self.run_mark)
        order = {u: i for i, u in enumerate(urls)}
        return sorted(outcomes, key=lambda o: order.get(o.url, 0))

    # MB of a process tree (readings keyed by process, so one for all runs); a test may read its own
    measure_memory = staticmethod(TreeMemory().mb)

    async def _room_for_a_page(self) -> None:
        """Another page opens only while the tree is under ADMIT_SHARE of the memory bound, so
        that more tabs never mean pages cut at the bound. One page always runs."""
        admit = self.browser_settings.max_memory_mb * ADMIT_SHARE
        async with self.memory_sampled:
            await self.memory_sampled.wait_for(lambda: self.pages_open == 0 or self.memory_mb <= admit)

    async def _watch_memory(self) -> None:
        """Keep the whole process tree under the memory bound by cutting the pages in progress."""
        limit = self.browser_settings.max_memory_mb
        while True:
            await asyncio.sleep(1.0)
            used = self.memory_mb = await asyncio.to_thread(self.measure_memory, os.getpid())
            async with self.memory_sampled:
                self.memory_sampled.notify_all()
            if used <= limit:
                continue
            reason = (f"cut: evarchive and its browser used {used:.0f} MB, over the bound of "
                      f"{limit} MB; what had loaded is kept")
            for driver in list(self.drivers):
                await driver.cut(reason)

    async def _launch(self, pw: Any, authority: RunAuthority) -> Any:
        from playwright.async_api import Error as PlaywrightError

        try:
            return await pw.chromium.launch(
                executable_path=self.browser_settings.chromium, headless=True,
                args=self._chromium_args(authority), chromium_sandbox=os.geteuid() != 0,
                proxy={"server": "http://127.0.0.1:9"})  # contexts set their own; 9 is discard
        except PlaywrightError as exc:
            self._finish()
            raise CouldNotRunError(f"Chromium ({self.browser_settings.chromium}) did not start: "
                                   f"{first_line(exc, 300)}") from None

    def _chromium_args(self, authority: RunAuthority) -> list[str]:
        return [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={authority.leaf_spki_sha256_b64}",
                RUN_MARK + self.run_mark]

    async def capture_page(self, browser: Any, client: Any, authority: RunAuthority,
                           url: str) -> CaptureOutcome:
        from ..mitm import ProxySession

        source_id = self.source_ids.get(url) or ensure_source(self.db, url)
        started = format_time(self.settings.clock())
        session = ProxySession(client, self.settings, self.archive.tmp_dir, authority,
                               self.settings.clock)
        user_agent = None if self.settings.user_agent.startswith("evarchive/") else self.settings.user_agent
        driver = self.driver_class(browser, self.browser_settings, user_agent,
                            lambda: comparable_bodies(session.exchanges))
        page = driver.result
        self.drivers.add(driver)
        try:
            port = await session.start()
            try:
                async with asyncio.timeout(self.settings.total_timeout):
                    await driver.capture(url, port)
            except TimeoutError:
                page.steps.append(f"the capture was cut at the total timeout "
                                  f"({self.settings.total_timeout:g} s)")
            except Exception as exc:  # noqa: BLE001 - a crashed or cut tab: keep what was recorded
                page.steps.append(f"the browser failed: {first_line(exc, 300)}")
            finally:
                self.drivers.discard(driver)
                await session.close()
            try:
                return self._record_page(url, source_id, started, session, page)
            except (OSError, sqlite3.Error) as exc:
                raise StorageError() from exc
        finally:
            session.release_bodies()

    def _record_page(self, url: str, source_id: int, started: str, session: ProxySession,
                     page: PageResult) -> CaptureOutcome:
        ended = format_time(self.settings.clock())
        chain = page_chain(url, session.exchanges)
        if not chain:  # the browser may spell the URL differently: its first navigation
            first = next((r.url for r in page.requests if r.navigation), None)
            chain = page_chain(first, session.exchanges) if first else []
        hops = [ex.hop for ex in chain if ex.hop is not None]
        failure = page_failure(url, chain, hops)
        rows, findings = account(page.requests, session.exchanges, page.bodies)
        findings += [f"the proxy refused a browser request: {why}" for why in session.refused]
        wall, verdict = wall_of(hops, page) if hops and failure is None else (None, None)
        records: list[WrittenRecord] = []
        artefact_rows: list[dict[str, Any]] = []
        if hops:
            assert self.evidence is not None
            records, artefact_rows = self.evidence.write_page(
                url, started, ended, session, chain, page, rows, findings, wall)
        extra = {"engine": "browser", "findings": to_json(findings) if findings else None,
                 "wall": wall, "content_verdict": verdict, "steps": to_json(page.steps) if page.steps else None}
        def completed(outcome: CaptureOutcome) -> BrowserOutcome:
            # The wire's findings (surplus bytes, conflicting framing) and the accounting's, together.
            return BrowserOutcome(**{**asdict(outcome), "findings": outcome.findings + findings}, wall=wall,
                                  artefacts=[a["kind"] for a in artefact_rows])

        return self._queue(url, source_id, started, ended, hops, records, failure, None,
                           artefacts=artefact_rows, row_extra=extra, completed=completed)


async def recapture_by_engine(archive: Archive, settings: CaptureSettings,
                              urls: list[str]) -> list[CaptureOutcome]:
    """Capture ``urls`` anew, each with the engine of its source's last good capture.

    A source last captured by the browser falls back to the HTTP engine only when Chromium is
    gone; that capture's engine column says so.
    """
    by_engine: dict[str, list[str]] = {"http": [], "browser": []}
    for url in urls:
        source = find_source(archive.db, url)
        last = last_good_capture(archive.db, source["id"]) if source else None
        by_engine["browser" if last and last.get("engine") == "browser" else "http"].append(url)
    chromium = find_chromium()
    if chromium is None:
        by_engine["http"] += by_engine.pop("browser")
    outcomes: list[CaptureOutcome] = []
    if by_engine["http"]:
        outcomes += await CaptureRun(archive, settings).run(by_engine["http"])
    if by_engine.get("browser"):
        assert chromium is not None
        run = BrowserCaptureRun(archive, settings, BrowserSettings(chromium=chromium))
        outcomes += await run.run(by_engine["browser"])
    return outcomes


def capture_with_browser(archive: Archive, urls: list[str], settings: CaptureSettings,
                         browser_settings: BrowserSettings,
                         on_result: Callable[[CaptureOutcome], None] | None = None
                         ) -> list[CaptureOutcome]:
    """Capture ``urls`` with Chromium (blocking); every attempt lands in the catalogue."""
    from .. import client

    for url in urls:
        validate_url(url)
    client.validate_proxy(settings.proxy)
    unique = list(dict.fromkeys(urls))
    run = BrowserCaptureRun(archive, settings, browser_settings, on_result)
    return asyncio.run(run.run(unique))


__all__ = ["BrowserCaptureRun", "BrowserOutcome", "capture_with_browser", "recapture_by_engine"]
