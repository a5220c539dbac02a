"""The browser capture engine: load each URL in headless Chromium, record every request it makes
through evarchive's own recording path (``mitm``), and keep what the reader saw.

Per capture: a fresh browser context (its own cookies, cache and storage: Chromium's
off-the-record profile) whose proxy is a loopback listener of its own, so every exchange belongs
to exactly one capture. The page is loaded, left to go quiet, scrolled to the end, then
screenshotted, printed and serialised; those artefacts are WARC ``resource`` records beside the
recorded exchanges. Everything the browser reports loading is compared with what the proxy
recorded, and any difference is a finding.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import os
import platform
import secrets
import shutil
import signal
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .archive import Archive
from .capture import (
    CaptureOutcome,
    CaptureRun,
    CaptureSettings,
    CapturedHop as Hop,
    StorageError,
    build_client,
    provenance_fields,
    write_hop_records,
)
from .catalogue import ensure_source, format_time, to_json
from .errors import CouldNotRunError
from .urls import request_url, validate_url
from .warcwriter import RecordBlock as Block, RecordSpec, WrittenRecord, warc_fields

if TYPE_CHECKING:  # the proxy (and its X.509 machinery) loads only when the browser engine runs
    from .mitm import Exchange, ProxySession, RunAuthority

ENGINES = ("auto", "browser", "http")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = ("install Chromium (Debian/Ubuntu: `apt-get install chromium`; macOS: "
                "`brew install --cask chromium`) or point --chromium / EVARCHIVE_CHROMIUM at it")
NO_BROWSER_LINE = ("Chromium not found: captured with the HTTP engine only, so no screenshot, PDF, "
                   "rendered page or sub-resources were captured; " + INSTALL_HINT)
PID_FILE = "chromium.pids"
RUN_MARK = "--evarchive-run="  # Chromium ignores unknown switches; it names our processes

# Switches that keep the browser's own traffic (updates, safe browsing, metrics, sync, field
# trials) out of the evidence and away from the network, and keep every exchange on HTTP/1.1
# through the recording proxy.
CHROMIUM_ARGS = [
    "--disable-quic", "--disable-http2", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
    "--metrics-recording-only", "--disable-field-trial-config", "--disable-breakpad",
    "--safebrowsing-disable-auto-update", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-pings", "--disable-features="
    "OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,CertificateTransparencyComponentUpdater,"
    "InterestFeedContentSuggestions,NetworkTimeServiceQuerying,DialMediaRouteProvider",
    "--proxy-bypass-list=<-loopback>", "--dns-prefetch-disable",
]

ARTEFACT_KINDS = {  # kind: (content type, what it is)
    "screenshot-full": ("image/png", "full-page screenshot"),
    "screenshot-viewport": ("image/png", "viewport screenshot"),
    "pdf": ("application/pdf", "PDF print of the page"),
    "dom": ("text/html; charset=utf-8", "rendered DOM, serialised"),
    "title": ("text/plain; charset=utf-8", "page title"),
    "text": ("text/plain; charset=utf-8", "visible text"),
    "provenance": ("text/html; charset=utf-8", "provenance summary"),
}


@dataclass
class BrowserSettings:
    """The browser engine's own knobs; every one is written to the provenance."""

    chromium: str = ""
    tabs: int = 2  # pages at once: sized for 2 cores
    viewport_width: int = 1280
    viewport_height: int = 800
    device_scale: float = 1.0
    load_timeout: float = 30.0
    quiet_ms: int = 500
    quiet_timeout: float = 10.0
    scroll_timeout: float = 10.0
    max_height: int = 20000
    artefact_timeout: float = 30.0
    max_memory_mb: int = 1536  # PSS of evarchive's whole process tree, Chromium included

    def public(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- engine choice

def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium executable: --chromium, EVARCHIVE_CHROMIUM, then PATH."""
    wanted = explicit or os.environ.get("EVARCHIVE_CHROMIUM")
    if wanted:
        path = shutil.which(wanted) or (wanted if os.access(wanted, os.X_OK) else None)
        return path
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return None


@dataclass
class EngineChoice:
    engine: str  # browser or http
    chromium: str | None
    notice: str | None  # one line for the user when auto fell back to HTTP


def choose_engine(requested: str | None, chromium: str | None = None) -> EngineChoice:
    """Resolve auto|browser|http (flag, then EVARCHIVE_ENGINE, then auto)."""
    from .errors import InputError

    engine = (requested or os.environ.get("EVARCHIVE_ENGINE") or "auto").lower()
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}: use auto, browser or http")
    if engine == "http":
        return EngineChoice("http", None, None)
    found = find_chromium(chromium)
    if found is None:
        if engine == "browser" or chromium:
            where = f" at {chromium}" if chromium else ""
            raise CouldNotRunError(f"the browser engine needs Chromium, not found{where}: {INSTALL_HINT}")
        return EngineChoice("http", None, NO_BROWSER_LINE)
    return EngineChoice("browser", found, None)


# --------------------------------------------------------------------------- process hygiene

def _processes_marked(mark: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if mark.encode() in cmdline:
            found.append(int(entry.name))
    return found


def _with_descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them (Chromium's zygotes and renderers do not carry
    the run mark on their command lines)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found, frontier = list(pids), list(pids)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.append(child)
                frontier.append(child)
    return found


def tree_memory_mb(root: int) -> float:
    """Proportional set size (shared pages divided among their sharers) of ``root`` and every
    process below it, in MB: what the tree really holds, unlike a sum of RSS."""
    total = 0
    for pid in _with_descendants([root]):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total / 1024


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def reap_orphans(archive: Archive) -> list[int]:
    """Chromium processes a killed earlier run left behind: found by their run mark, ended."""
    pid_file = archive.locks_dir / PID_FILE
    try:
        marks = [line.strip() for line in pid_file.read_text().splitlines() if line.strip()]
    except OSError:
        return []
    orphans: list[int] = []
    for mark in marks:
        orphans += _processes_marked(RUN_MARK + mark)
    _kill(_with_descendants(orphans))
    pid_file.unlink(missing_ok=True)
    return orphans


# --------------------------------------------------------------------------- page accounting

@dataclass
class BrowserRequest:
    """What the browser itself reported for one request."""

    url: str
    method: str
    resource_type: str
    navigation: bool
    failure: str | None = None
    finished: bool = False
    from_service_worker: bool = False
    status: int | None = None
    response: Any = field(default=None, repr=False)


def decoded_body(hop: Hop, limit: int = 64 << 20) -> bytes | None:
    """The recorded body with its content coding undone (None when that is not possible)."""
    hop.body.seek(0)
    raw = hop.body.read(limit + 1)
    if len(raw) > limit:
        return None
    coding = (hop.headers.get("content-encoding") or "").strip().lower()
    try:
        if coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(47).decompress(raw)
        if coding == "deflate":
            try:
                return zlib.decompress(raw)
            except zlib.error:
                return zlib.decompress(raw, -15)
    except zlib.error:
        return None
    return raw if coding in ("", "identity") else None


def account(requests: list[BrowserRequest], exchanges: list[Exchange],
            browser_bodies: dict[int, bytes | None]) -> tuple[list[dict[str, Any]], list[str]]:
    """Every browser request beside what was recorded; returns (rows, findings)."""
    recorded: dict[tuple[str, str], list[Exchange]] = {}
    for ex in exchanges:
        recorded.setdefault((ex.method, ex.url), []).append(ex)
    used: dict[tuple[str, str], int] = {}
    rows, findings = [], []
    for index, req in enumerate(requests):
        scheme = req.url.split(":", 1)[0].lower()
        row: dict[str, Any] = {"url": req.url[:2000], "method": req.method, "type": req.resource_type,
                               "status": req.status}
        if scheme in ("data", "blob", "about", "chrome", "chrome-extension", "javascript"):
            row["served"] = f"{scheme}: URL (no network)"
            rows.append(row)
            continue
        key = (req.method, req.url)
        candidates = recorded.get(key, [])
        position = used.get(key, 0)
        if req.from_service_worker:
            row["served"] = "by a service worker (not recorded)"
            findings.append(f"served by a service worker, not recorded: {req.url}")
        elif position < len(candidates):
            used[key] = position + 1
            ex = candidates[position]
            if ex.hop is None:
                row["served"] = f"recording failed: {ex.error_class}: {ex.error_message}"
            else:
                row["served"] = "recorded"
                row["payload_sha256"] = ex.hop.payload_sha256
                _compare_body(row, ex.hop, browser_bodies.get(index), findings, req.url)
        elif candidates:
            row["served"] = "from the browser's memory cache (a copy of a recorded exchange)"
        elif req.failure:
            row["served"] = f"never reached the network: {req.failure}"
        else:
            row["served"] = "NOT RECORDED"
            findings.append(f"the browser loaded {req.url} but the recorder never saw it")
        rows.append(row)
    return rows, findings


def _compare_body(row: dict[str, Any], hop: Hop, seen: bytes | None, findings: list[str],
                  url: str) -> None:
    if (hop.headers.get("content-type") or "").lower().startswith("application/pdf"):
        # Chromium shows a PDF in its viewer and reports the viewer's page as the body.
        row["body_compared"] = False
        row["note"] = "shown by the browser's PDF viewer: the recorded document is the evidence"
        return
    if seen is None or hop.truncated:
        row["body_compared"] = False
        return
    ours = decoded_body(hop)
    row["body_compared"] = ours is not None
    if ours is not None and ours != seen:
        row["body_differs"] = True
        findings.append(f"the body the browser used differs from the recorded one: {url}")


# --------------------------------------------------------------------------- the page

@dataclass
class PageResult:
    """What the browser produced for one capture."""

    artefacts: dict[str, bytes] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)  # every step that failed or was cut short
    requests: list[BrowserRequest] = field(default_factory=list)
    bodies: dict[int, bytes | None] = field(default_factory=dict)
    title: str = ""
    user_agent: str = ""
    page_height: int | None = None
    screenshot_height: int | None = None
    download: bool = False
    memory_cache: list[str] = field(default_factory=list)  # URLs served from the browser's memory


class PageDriver:
    """Loads one URL in a fresh context and takes the artefacts, every step within a bound."""

    def __init__(self, browser: Any, settings: BrowserSettings, user_agent: str | None) -> None:
        self.browser = browser
        self.settings = settings
        self.user_agent = user_agent
        self.result = PageResult()  # kept when the capture is cut: what was seen so far
        self.context: Any = None
        self.stopped = False

    async def cut(self, reason: str) -> None:
        """End the page now (memory bound): its context closes, what was recorded is kept."""
        self.result.steps.append(reason)
        self.stopped = True
        if self.context is not None:
            await _close_quietly(self.context)

    async def capture(self, url: str, proxy_port: int) -> PageResult:
        result = self.result
        context = self.context = await self.browser.new_context(
            proxy={"server": f"http://127.0.0.1:{proxy_port}", "bypass": "<-loopback>"},
            viewport={"width": self.settings.viewport_width, "height": self.settings.viewport_height},
            device_scale_factor=self.settings.device_scale, service_workers="block",
            accept_downloads=False, user_agent=self.user_agent)
        try:
            page = await context.new_page()
            self._watch(context, page, result)
            await self._watch_devtools(context, page, result)
            await self._load(page, url, result)
            if not result.download and not self.stopped:
                await self._settle(page, result)
            if not result.download and not self.stopped:
                await self._take_artefacts(page, result)
            if self.stopped:
                return result
            result.user_agent = await _safe(page.evaluate("navigator.userAgent"), "", result,
                                            "reading the user agent", 5)
            await self._collect_bodies(result)
        finally:
            await _close_quietly(context)
        return result

    def _watch(self, context: Any, page: Any, result: PageResult) -> None:
        inflight: set[Any] = set()
        self.inflight = inflight
        self.last_activity = time.monotonic()
        index: dict[Any, BrowserRequest] = {}

        def on_request(request: Any) -> None:
            self.last_activity = time.monotonic()
            entry = BrowserRequest(request.url, request.method, request.resource_type,
                                   request.is_navigation_request())
            index[request] = entry
            result.requests.append(entry)
            inflight.add(request)

        def on_done(request: Any, failed: bool) -> None:
            self.last_activity = time.monotonic()
            inflight.discard(request)
            entry = index.get(request)
            if entry is not None:
                entry.finished = not failed
                if failed:
                    entry.failure = request.failure or "failed"

        def on_response(response: Any) -> None:
            entry = index.get(response.request)
            if entry is not None:
                entry.status = response.status
                entry.response = response
                entry.from_service_worker = bool(response.from_service_worker)

        def on_dialog(dialog: Any) -> None:
            result.steps.append(f"dismissed a JavaScript {dialog.type}: {dialog.message[:200]!r}")
            asyncio.ensure_future(dialog.dismiss())

        def on_popup(popup: Any) -> None:
            result.steps.append(f"closed a popup ({popup.url[:200]})")
            asyncio.ensure_future(popup.close())

        context.on("request", on_request)
        context.on("requestfinished", lambda r: on_done(r, False))
        context.on("requestfailed", lambda r: on_done(r, True))
        context.on("response", on_response)
        page.on("dialog", on_dialog)
        page.on("popup", on_popup)

    async def _watch_devtools(self, context: Any, page: Any, result: PageResult) -> None:
        """What Playwright's events leave out: data:/blob: loads and memory-cache hits."""
        cdp = await context.new_cdp_session(page)
        urls: dict[str, str] = {}

        def on_will_send(event: dict[str, Any]) -> None:
            url = event.get("request", {}).get("url", "")
            urls[event.get("requestId", "")] = url
            if url.split(":", 1)[0].lower() in ("data", "blob"):
                result.requests.append(BrowserRequest(url[:200], event["request"].get("method", "GET"),
                                                      str(event.get("type", "other")).lower(), False,
                                                      finished=True))

        def on_from_cache(event: dict[str, Any]) -> None:
            result.memory_cache.append(urls.get(event.get("requestId", ""), "?")[:2000])

        cdp.on("Network.requestWillBeSent", on_will_send)
        cdp.on("Network.requestServedFromCache", on_from_cache)
        await cdp.send("Network.enable")

    async def _load(self, page: Any, url: str, result: PageResult) -> None:
        from playwright.async_api import Error as PlaywrightError
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await page.goto(url, wait_until="load", timeout=self.settings.load_timeout * 1000)
        except PlaywrightTimeout:
            result.steps.append(f"the load event did not come within {self.settings.load_timeout:g} s")
        except PlaywrightError as exc:
            message = str(exc).splitlines()[0]
            if "Download is starting" in message:
                result.download = True
                result.steps.append("the browser treated the document as a download (no viewer): "
                                    "the document itself is the evidence")
            else:
                result.steps.append(f"loading failed: {message[:300]}")

    async def _quiet(self, result: PageResult, what: str) -> None:
        """Wait until no request has been in flight for ``quiet_ms``, within the bound."""
        deadline = time.monotonic() + self.settings.quiet_timeout
        while time.monotonic() < deadline and not self.stopped:
            if not self.inflight and (time.monotonic() - self.last_activity) * 1000 >= self.settings.quiet_ms:
                return
            await asyncio.sleep(0.05)
        if self.stopped:
            return
        result.steps.append(f"the network never went quiet {what} within "
                            f"{self.settings.quiet_timeout:g} s ({len(self.inflight)} requests "
                            "still open); captured what had loaded")

    async def _settle(self, page: Any, result: PageResult) -> None:
        await self._quiet(result, "after the load event")
        # Every frame scrolls, in parallel: lazy content inside iframes (other hosts included)
        # loads only when its own document is scrolled.
        arg = {"budget": self.settings.scroll_timeout * 1000, "limit": self.settings.max_height}
        frames = [page.main_frame, *(f for f in page.frames if f is not page.main_frame)]
        scrolls = [_safe(frame.evaluate(SCROLL_SCRIPT, arg), None, result,
                         "scrolling" if frame is page.main_frame else f"scrolling a frame ({frame.url[:200]})",
                         self.settings.scroll_timeout + 5) for frame in frames]
        scrolled = (await asyncio.gather(*scrolls))[0]
        if scrolled and not scrolled.get("reachedEnd"):
            result.steps.append(f"scrolling stopped before the end of the page "
                                f"(bound {self.settings.scroll_timeout:g} s or "
                                f"{self.settings.max_height} px)")
        # Scrolling may have just asked for lazy content: the quiet window starts now, not at
        # the last request seen.
        self.last_activity = max(self.last_activity, time.monotonic())
        await self._quiet(result, "after scrolling")

    async def _take_artefacts(self, page: Any, result: PageResult) -> None:
        bound = self.settings.artefact_timeout
        height = await _safe(page.evaluate(
            "Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)"),
            None, result, "measuring the page", bound)
        result.page_height = int(height) if height else None
        full_args: dict[str, Any] = {"full_page": True, "type": "png", "timeout": bound * 1000}
        if result.page_height and result.page_height > self.settings.max_height:
            full_args["clip"] = {"x": 0, "y": 0, "width": self.settings.viewport_width,
                                 "height": self.settings.max_height}
            result.steps.append(f"full-page screenshot cut at {self.settings.max_height} px "
                                f"(the page is {result.page_height} px tall)")
        shots = {
            "screenshot-full": page.screenshot(**full_args),
            "screenshot-viewport": page.screenshot(type="png", timeout=bound * 1000),
            "pdf": page.pdf(print_background=True),
            "dom": page.content(),
            "title": page.title(),
            "text": page.evaluate("document.body ? document.body.innerText : ''"),
        }
        for kind, awaitable in shots.items():
            value = await _safe(awaitable, None, result, f"taking the {kind}", bound)
            if value is None:
                continue
            if kind == "title":
                result.title = value
            result.artefacts[kind] = value if isinstance(value, bytes) else value.encode("utf-8")
        if "screenshot-full" in result.artefacts:
            result.screenshot_height = png_size(result.artefacts["screenshot-full"])[1]

    async def _collect_bodies(self, result: PageResult) -> None:
        """The bodies the browser used, for comparison with the recorded ones (bounded)."""
        for index, req in enumerate(result.requests):
            response = req.response
            if response is None or not req.finished or not (200 <= (req.status or 0) < 300):
                continue
            try:
                result.bodies[index] = await asyncio.wait_for(response.body(), 10)
            except Exception:  # noqa: BLE001 - evicted or streamed bodies cannot be compared
                result.bodies[index] = None


SCROLL_SCRIPT = """
async ({budget, limit}) => {
  const started = performance.now();
  const step = Math.max(200, Math.floor(window.innerHeight * 0.8));
  let y = 0;
  while (performance.now() - started < budget) {
    const end = Math.min(limit, document.documentElement.scrollHeight);
    if (y >= end - window.innerHeight) {
      window.scrollTo(0, 0);
      return {reachedEnd: true, y};
    }
    y += step;
    window.scrollTo(0, y);
    await new Promise(r => setTimeout(r, 100));
  }
  window.scrollTo(0, 0);
  return {reachedEnd: false, y};
}
"""


async def _safe(awaitable: Any, default: Any, result: PageResult, what: str, bound: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, bound)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except TimeoutError:
        result.steps.append(f"{what} did not finish within {bound:g} s")
    except Exception as exc:  # noqa: BLE001 - a failed step is recorded, the capture goes on
        result.steps.append(f"{what} failed: {str(exc).splitlines()[0][:300]}")
    return default


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


# --------------------------------------------------------------------------- the run

@dataclass
class BrowserOutcome(CaptureOutcome):
    engine: str = "browser"
    wall: str | None = None
    artefacts: list[str] = field(default_factory=list)


class BrowserCaptureRun(CaptureRun):
    """A capture run whose pages are loaded by Chromium through the recording proxy."""

    def __init__(self, archive: Archive, settings: CaptureSettings, browser_settings: BrowserSettings,
                 on_result: Callable[[CaptureOutcome], None] | None = None) -> None:
        super().__init__(archive, settings, on_result)
        self.browser_settings = browser_settings
        self.writer.warcinfo["browser-settings"] = browser_settings.public()
        self.run_mark = secrets.token_hex(8)
        self.chromium_version = ""
        self.drivers: set[PageDriver] = set()

    async def run(self, urls: list[str]) -> list[CaptureOutcome]:
        from playwright.async_api import async_playwright

        from .mitm import RunAuthority, refuse_cookies

        self.run_id = self._start_run_row(len(urls))
        from .catalogue import ensure_sources

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
                self.chromium_version = browser.version
                tabs = asyncio.Semaphore(self.browser_settings.tabs)

                async def one_url(url: str) -> None:
                    async with tabs:
                        outcome = await self.capture_page(browser, client, authority, url)
                    outcomes.append(outcome)
                    if self.on_result:
                        self.on_result(outcome)

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
                    await _close_quietly(browser)
                self._finish()
        finally:
            _kill(_with_descendants(_processes_marked(RUN_MARK + self.run_mark)))  # never outlive the run
            authority.close()
            _forget_mark(pid_file, self.run_mark)
        order = {u: i for i, u in enumerate(urls)}
        return sorted(outcomes, key=lambda o: order.get(o.url, 0))

    async def _watch_memory(self) -> None:
        """Keep the whole process tree under the memory bound by cutting the pages in progress."""
        limit = self.browser_settings.max_memory_mb
        while True:
            await asyncio.sleep(1.0)
            used = await asyncio.to_thread(tree_memory_mb, os.getpid())
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
                                   f"{str(exc).splitlines()[0][:300]}") from None

    def _chromium_args(self, authority: RunAuthority) -> list[str]:
        return [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={authority.leaf_spki_sha256_b64}",
                RUN_MARK + self.run_mark]

    async def capture_page(self, browser: Any, client: Any, authority: RunAuthority,
                           url: str) -> CaptureOutcome:
        from .mitm import ProxySession

        source_id = self.source_ids.get(url) or ensure_source(self.db, url)
        started = format_time(self.settings.clock())
        session = ProxySession(client, self.settings, self.archive.tmp_dir, authority,
                               self.settings.clock)
        user_agent = None if self.settings.user_agent.startswith("evarchive/") else self.settings.user_agent
        driver = PageDriver(browser, self.browser_settings, user_agent)
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
                page.steps.append(f"the browser failed: {str(exc).splitlines()[0][:300]}")
            finally:
                self.drivers.discard(driver)
                await session.close()
            try:
                return self._record_page(url, source_id, started, session, page)
            except (OSError, sqlite3.Error) as exc:
                raise StorageError() from exc
        finally:
            session.release_bodies()

    # ----------------------------------------------------------------- recording
    def _record_page(self, url: str, source_id: int, started: str, session: ProxySession,
                     page: PageResult) -> CaptureOutcome:
        ended = format_time(self.settings.clock())
        chain = page_chain(url, session.exchanges)
        if not chain:  # the browser may spell the URL differently: its first navigation
            first = next((r.url for r in page.requests if r.navigation), None)
            chain = page_chain(first, session.exchanges) if first else []
        hops = [ex.hop for ex in chain if ex.hop is not None]
        failure = _page_failure(url, chain, hops)
        rows, findings = account(page.requests, session.exchanges, page.bodies)
        findings += [f"the proxy refused a browser request: {why}" for why in session.refused]
        wall, verdict = _wall_of(hops, page) if hops and failure is None else (None, None)
        records: list[WrittenRecord] = []
        artefact_rows: list[dict[str, Any]] = []
        if hops:
            records, artefact_rows = self._write_page_records(
                url, started, ended, session, chain, page, rows, findings, wall)
        extra = {"engine": "browser", "findings": to_json(findings) if findings else None,
                 "wall": wall, "content_verdict": verdict, "steps": to_json(page.steps) if page.steps else None}
        outcome = self._queue(url, source_id, started, ended, hops, records, failure, None,
                              artefacts=artefact_rows, row_extra=extra)
        # The wire's findings (surplus bytes, conflicting framing) and the accounting's, together.
        result = BrowserOutcome(**{**asdict(outcome), "findings": outcome.findings + findings}, wall=wall,
                                artefacts=[a["kind"] for a in artefact_rows])
        for item in self.pending:  # not yet committed: the commit fills in the capture id
            if item.outcome is outcome:
                item.outcome = result
        return result

    def _write_page_records(self, url: str, started: str, ended: str, session: ProxySession,
                            chain: list[Exchange], page: PageResult, rows: list[dict[str, Any]],
                            findings: list[str], wall: str | None
                            ) -> tuple[list[WrittenRecord], list[dict[str, Any]]]:
        self.writer.begin_capture()
        records: list[WrittenRecord] = []
        # The page's own exchanges go last, so that every reader that takes a capture's last
        # response record (revisits, checks, exports) gets the cited document.
        in_chain = {id(ex) for ex in chain}
        ordered = [ex for ex in session.exchanges if id(ex) not in in_chain] + chain
        for ex in ordered:
            if ex.hop is not None:
                records += write_hop_records(self.writer, ex.hop, ex.started, None)
        response = records[-1]
        hops = [ex.hop for ex in chain if ex.hop is not None]
        final = hops[-1]
        if final.tls and final.tls.get("chain_pem"):
            records.append(self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:tls-certificate-chain:{final.tls['leaf_sha256']}",
                started, Block("".join(final.tls["chain_pem"]).encode("ascii")),
                content_type="application/pem-certificate-chain",
                headers=[("WARC-Concurrent-To", response.record_id)])))
        facts = self._facts(url, started, ended, session, hops, page, rows, findings, wall)
        artefacts = dict(page.artefacts)
        artefacts["provenance"] = provenance_html(facts).encode("utf-8")
        artefact_rows = []
        for kind, data in artefacts.items():
            digest = hashlib.sha256(data).hexdigest()
            record = self.writer.write(RecordSpec(
                "resource", f"urn:evarchive:{kind}:{final.url}", started, Block(data),
                content_type=ARTEFACT_KINDS[kind][0], payload_sha256=digest,
                headers=[("WARC-Concurrent-To", response.record_id)]))
            records.append(record)
            width, height = png_size(data) if kind.startswith("screenshot") else (None, None)
            artefact_rows.append({"kind": kind, "record_id": record.record_id,
                                  "content_type": ARTEFACT_KINDS[kind][0], "size": len(data),
                                  "sha256": digest, "width": width, "height": height})
        fields = provenance_fields(url, hops, self.settings, started, ended, None, None)
        fields = [f for f in fields if f[0] != "user-agent"]
        fields += [(f"browser-{key}", value) for key, value in facts.items()
                   if key not in ("cited-url", "final-url", "capture-started", "capture-ended")]
        records.append(self.writer.write(RecordSpec(
            "metadata", hops[0].url, started, Block(warc_fields(fields)),
            content_type="application/warc-fields",
            headers=[("WARC-Refers-To", response.record_id)])))
        return records, artefact_rows

    def _facts(self, url: str, started: str, ended: str, session: ProxySession, hops: list[Hop],
               page: PageResult, rows: list[dict[str, Any]], findings: list[str],
               wall: str | None) -> dict[str, Any]:
        final = hops[-1]
        tls = final.tls or {}
        recorded = [ex for ex in session.exchanges if ex.hop is not None]
        return {
            "cited-url": url, "final-url": final.url, "capture-started": started,
            "capture-ended": ended, "engine": "browser", "chromium-version": self.chromium_version,
            "user-agent": page.user_agent, "software": f"evarchive/{__version__}",
            "host-os": platform.platform(),
            "viewport": f"{self.browser_settings.viewport_width}x{self.browser_settings.viewport_height}",
            "device-scale": self.browser_settings.device_scale,
            "settings": {"browser": self.browser_settings.public(), "capture": self.settings.public()},
            "server-ips": sorted({ex.hop.server_ip for ex in recorded if ex.hop.server_ip}),
            "certificate": ({"leaf-sha256": tls.get("leaf_sha256"), "tls-version": tls.get("version"),
                             "validated": tls.get("validation")} if tls else None),
            "accept-encoding": {"sent-upstream": "gzip, deflate",
                                "browser-asked": sorted({ex.browser_accept_encoding or ""
                                                         for ex in session.exchanges})},
            "page-height": page.page_height, "screenshot-height": page.screenshot_height,
            "max-height": self.browser_settings.max_height, "title": page.title,
            "recorded-exchanges": len(recorded),
            "failed-exchanges": [{"url": ex.url, "error": f"{ex.error_class}: {ex.error_message}"}
                                 for ex in session.exchanges if ex.hop is None],
            "requests": rows, "memory-cache": page.memory_cache, "findings": findings,
            "steps": page.steps, "wall": wall,
        }


def page_chain(url: str, exchanges: list[Exchange]) -> list[Exchange]:
    """The cited document's own exchanges: the first GET of the URL, then its redirects."""
    from urllib.parse import urljoin

    chain: list[Exchange] = []
    try:
        wanted = request_url(url)
    except Exception:  # noqa: BLE001 - validated before the run; the browser's spelling wins
        wanted = url
    seen: set[int] = set()
    while True:
        match = next((ex for ex in exchanges if ex.url == wanted and ex.method == "GET"
                      and id(ex) not in seen), None)
        if match is None:
            return chain
        chain.append(match)
        seen.add(id(match))
        location = match.hop.location if match.hop else None
        if not location or len(chain) > 20:
            return chain
        wanted = urljoin(wanted, location)


def _page_failure(url: str, chain: list[Exchange], hops: list[Hop]) -> tuple[str, str] | None:
    if not chain:
        return ("NotLoaded", f"the browser never requested {url} through the recorder")
    last = chain[-1]
    if last.hop is None:
        return (last.error_class or "FetchError", last.error_message or "the fetch failed")
    if last.hop.status >= 400:
        return ("HTTPStatus", f"HTTP {last.hop.status} {last.hop.reason}".strip())
    if last.hop.location:
        return ("RedirectNotFollowed", f"the browser did not follow the redirect to {last.hop.location}")
    return None


def _wall_of(hops: list[Hop], page: PageResult) -> tuple[str | None, str]:
    """The classifier ``check`` uses, applied to the rendered page: a wall or a soft 404 is not
    the article. (wall, content verdict), as ``check.verdicts.capture_verdict`` gives them."""
    from .check import verdicts

    obs = verdicts.Observation(
        url=hops[0].url,
        hops=[verdicts.Hop(h.url, "GET", h.status, h.reason,
                            [("content-type", "text/html; charset=utf-8")], h.location) for h in hops],
        body=page.artefacts.get("dom", b""))
    return verdicts.capture_verdict(obs)


def provenance_html(facts: dict[str, Any]) -> str:
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else to_json(value)
        return f"<td><pre>{html.escape(text)}</pre></td>"

    rows = "\n".join(f"<tr><th>{html.escape(k)}</th>{cell(v)}</tr>" for k, v in facts.items()
                     if k != "requests")
    requests = "\n".join(
        f"<tr><td>{html.escape(r['method'])}</td><td>{html.escape(r['url'])}</td>"
        f"<td>{html.escape(str(r.get('status')))}</td><td>{html.escape(r['served'])}</td></tr>"
        for r in facts["requests"])
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Capture provenance</title>"
            "</head><body><h1>Capture provenance</h1><table>" + rows + "</table>"
            "<h2>Requests the browser made</h2><table><tr><th>method</th><th>URL</th><th>status"
            "</th><th>served</th></tr>" + requests + "</table></body></html>\n")


async def _close_quietly(browser: Any) -> None:
    try:
        await asyncio.wait_for(browser.close(), 10)
    except Exception:  # noqa: BLE001 - the process tree is killed next regardless
        pass


def _forget_mark(pid_file: Path, mark: str) -> None:
    try:
        lines = [line for line in pid_file.read_text().splitlines() if line.strip() and line.strip() != mark]
        if lines:
            pid_file.write_text("\n".join(lines) + "\n")
        else:
            pid_file.unlink(missing_ok=True)
    except OSError:
        pass


async def recapture_by_engine(archive: Archive, settings: CaptureSettings,
                              urls: list[str]) -> list[CaptureOutcome]:
    """Capture ``urls`` anew, each with the engine of its source's last good capture.

    A source last captured by the browser falls back to the HTTP engine only when Chromium is
    gone; that capture's engine column says so.
    """
    from .catalogue import find_source, last_good_capture

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
    from . import client

    for url in urls:
        validate_url(url)
    client.validate_proxy(settings.proxy)
    unique = list(dict.fromkeys(urls))
    run = BrowserCaptureRun(archive, settings, browser_settings, on_result)
    return asyncio.run(run.run(unique))


__all__ = ["BrowserCaptureRun", "BrowserSettings", "EngineChoice", "capture_with_browser",
           "recapture_by_engine",
           "choose_engine", "find_chromium", "png_size", "reap_orphans"]
