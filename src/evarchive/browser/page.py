"""Driving one page: load it in a fresh context, let it go quiet, scroll it to the end, dismiss
what it pops up, and take the artefacts (screenshots, PDF, DOM, title, text), every step within
a bound and every step that failed or was cut short said."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import first_line
from .accounting import BrowserRequest
from .engine import BrowserSettings

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

    def __init__(self, browser: Any, settings: BrowserSettings, user_agent: str | None,
                 comparable: Callable[[], set[tuple[str, str]]] = set) -> None:
        self.browser = browser
        self.settings = settings
        self.user_agent = user_agent
        self.comparable = comparable  # (method, URL) whose bodies the recorder will compare
        self.result = PageResult()  # kept when the capture is cut: what was seen so far
        self.context: Any = None
        self.stopped = False
        self.inflight: set[Any] = set()
        self.last_activity = time.monotonic()
        self.activity = asyncio.Event()
        self.devtools: Any = None  # the page's DevTools session

    async def cut(self, reason: str) -> None:
        """End the page now (memory bound): its context closes, what was recorded is kept."""
        self.result.steps.append(reason)
        self.stopped = True
        self.activity.set()
        if self.context is not None:
            await close_quietly(self.context)

    async def capture(self, url: str, proxy_port: int | None) -> PageResult:
        """Load ``url`` through the recording proxy at ``proxy_port`` (None: straight to the
        network, for the benchmark's unrecorded reference)."""
        result = self.result
        proxy = {"server": f"http://127.0.0.1:{proxy_port}", "bypass": "<-loopback>"} if proxy_port else None
        context = self.context = await self.browser.new_context(
            proxy=proxy,
            viewport={"width": self.settings.viewport_width, "height": self.settings.viewport_height},
            device_scale_factor=self.settings.device_scale, service_workers="block",
            accept_downloads=False, user_agent=self.user_agent)
        try:
            await context.route_web_socket("**", self._refuse_websocket)
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
            await close_quietly(context)
        return result

    async def _refuse_websocket(self, route: Any) -> None:
        """A WebSocket never reaches the network: the recorder keeps HTTP exchanges only, so its
        messages could not be evidence. The page sees it closed; the accounting names it."""
        self.result.requests.append(BrowserRequest(route.url, "GET", "websocket", False,
                                                    failure="refused: WebSocket"))
        self.result.steps.append(f"refused a WebSocket ({route.url[:200]}): WebSocket messages are "
                                 "not recorded, so none were let through")
        await route.close(code=1008, reason="refused by the evidence recorder")

    def _watch(self, context: Any, page: Any, result: PageResult) -> None:
        inflight: set[Any] = set()
        self.inflight = inflight
        self.last_activity = time.monotonic()
        self.activity = asyncio.Event()  # set on every request event: wakes the quiet wait
        index: dict[Any, BrowserRequest] = {}

        def on_request(request: Any) -> None:
            self.last_activity = time.monotonic()
            self.activity.set()
            entry = BrowserRequest(request.url, request.method, request.resource_type,
                                   request.is_navigation_request())
            index[request] = entry
            result.requests.append(entry)
            inflight.add(request)

        def on_done(request: Any, failed: bool) -> None:
            self.last_activity = time.monotonic()
            self.activity.set()
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
        cdp = self.devtools = await context.new_cdp_session(page)
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
            message = first_line(exc, 10_000)
            if "Download is starting" in message:
                result.download = True
                result.steps.append("the browser treated the document as a download (no viewer): "
                                    "the document itself is the evidence")
            else:
                result.steps.append(f"loading failed: {message[:300]}")

    async def _quiet(self, result: PageResult, what: str) -> None:
        """Wait until no request has been in flight for ``quiet_ms``, within the bound: woken by
        the browser's own request events, never by polling."""
        quiet = self.settings.quiet_ms / 1000
        deadline = time.monotonic() + self.settings.quiet_timeout
        while not self.stopped:
            now = time.monotonic()
            if now >= deadline:
                result.steps.append(f"the network never went quiet {what} within "
                                    f"{self.settings.quiet_timeout:g} s ({len(self.inflight)} requests "
                                    "still open); captured what had loaded")
                return
            if not self.inflight and now - self.last_activity >= quiet:
                return
            wake = deadline if self.inflight else min(deadline, self.last_activity + quiet)
            self.activity.clear()
            try:
                await asyncio.wait_for(self.activity.wait(), max(0.0, wake - now))
            except TimeoutError:
                pass

    async def _settle(self, page: Any, result: PageResult) -> None:
        """Scroll at once after the load event, then wait for one quiet window: the page's own
        late requests and the lazy content the scroll asked for settle together. A page that grew
        meanwhile (content a script inserted below) is scrolled again, within the bounds."""
        for _round in range(SETTLE_ROUNDS):
            reached = await self._scroll(page, result)
            # Scrolling may have just asked for lazy content: the quiet window starts now, not at
            # the last request seen.
            self.last_activity = max(self.last_activity, time.monotonic())
            await self._quiet(result, "after loading and scrolling")
            if self.stopped or reached is None:
                return
            height = await _safe(page.evaluate(PAGE_HEIGHT), None, result, "measuring the page",
                                 self.settings.artefact_timeout)
            if not height or min(height, self.settings.max_height) <= reached:
                return

    async def _scroll(self, page: Any, result: PageResult) -> int | None:
        """Scroll every frame to its end, in parallel (lazy content inside iframes, other hosts
        included, loads only when its own document is scrolled); the height the main frame had
        when its scroll ended, or None when it failed."""
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
        return int(scrolled["height"]) if scrolled else None

    async def _take_artefacts(self, page: Any, result: PageResult) -> None:
        bound = self.settings.artefact_timeout
        # Web fonts are requests the quiet wait saw end; this lets the last of them be laid out.
        await _safe(page.evaluate("document.fonts.ready.then(() => true)"), None, result,
                    "waiting for the page's fonts", FONTS_BOUND)
        devtools = await _safe(self._devtools(page), None, result, "opening DevTools for the screenshots", bound)
        # The page's size as laid out, from the browser (no script of the page can change the answer).
        metrics = await _safe(devtools.send("Page.getLayoutMetrics"), None, result, "measuring the page",
                              bound) if devtools else None
        content = (metrics or {}).get("cssContentSize")
        result.page_height = math.ceil(content["height"]) if content else None
        # The viewport first: the full-page capture lays the page out in a window as tall as the
        # page, and the page sees that resize (its scripts may answer it), so after it the viewport
        # would no longer be what the reader saw.
        shots = {
            "screenshot-viewport": self._viewport_screenshot(devtools) if devtools else None,
            "screenshot-full": self._full_screenshot(devtools, content, result) if content else None,
            "pdf": page.pdf(print_background=True),
            "dom": page.content(),
            "title": page.title(),
            "text": page.evaluate("document.body ? document.body.innerText : ''"),
        }
        for kind, awaitable in shots.items():
            if awaitable is None:  # no DevTools session or no size: that step said why
                continue
            value = await _safe(awaitable, None, result, f"taking the {kind}", bound)
            if value is None:
                continue
            if kind == "title":
                result.title = value
            result.artefacts[kind] = value if isinstance(value, bytes) else value.encode("utf-8")
        # The records keep their order (the full page first), whatever order they were taken in.
        result.artefacts = {kind: result.artefacts[kind] for kind in ARTEFACT_ORDER if kind in result.artefacts}
        if "screenshot-full" in result.artefacts:
            result.screenshot_height = png_size(result.artefacts["screenshot-full"])[1]

    async def _devtools(self, page: Any) -> Any:
        if self.devtools is None:
            self.devtools = await page.context.new_cdp_session(page)
        return self.devtools

    def _full_screenshot(self, devtools: Any, content: dict[str, float], result: PageResult) -> Any:
        width, height = math.ceil(content["width"]), math.ceil(content["height"])
        if height > self.settings.max_height:
            result.steps.append(f"full-page screenshot cut at {self.settings.max_height} px "
                                f"(the page is {height} px tall)")
            width, height = self.settings.viewport_width, self.settings.max_height
        clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}
        return _screenshot(devtools, {"clip": clip, "captureBeyondViewport": True})

    def _viewport_screenshot(self, devtools: Any) -> Any:
        return _screenshot(devtools, {})

    async def _collect_bodies(self, result: PageResult) -> None:
        """The bodies the browser used, for comparison with the recorded ones: only those the
        recorder found small enough, a few at a time (each is a round trip to the browser), each
        within a bound, and no more than BODIES_BUDGET bytes in all (memory stays bounded)."""
        small = self.comparable()
        wanted = [index for index, req in enumerate(result.requests)
                  if req.response is not None and req.finished and 200 <= (req.status or 0) < 300
                  and (req.method, req.url) in small]
        slots = asyncio.Semaphore(4)
        kept = 0

        async def body(index: int) -> None:
            nonlocal kept
            async with slots:
                if kept >= BODIES_BUDGET:
                    result.bodies[index] = None
                    return
                try:
                    data = await asyncio.wait_for(result.requests[index].response.body(), 10)
                except Exception:  # noqa: BLE001 - evicted or streamed bodies cannot be compared
                    data = None
                kept += len(data or b"")
                result.bodies[index] = data if kept <= BODIES_BUDGET else None

        await asyncio.gather(*(body(index) for index in wanted))


ARTEFACT_ORDER = ("screenshot-full", "screenshot-viewport", "pdf", "dom", "title", "text")
BODIES_BUDGET = 64 << 20  # bytes of the browser's bodies kept for comparison, per page
FONTS_BOUND = 5.0  # seconds for document.fonts.ready before the screenshots, as Playwright waited
SETTLE_ROUNDS = 3  # scroll-and-wait rounds for a page that keeps growing (each within the bounds)
PAGE_HEIGHT = "Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)"
SCROLL_SCRIPT = """
async ({budget, limit}) => {
  const started = performance.now();
  const step = Math.max(200, Math.floor(window.innerHeight * 0.8));
  const height = () => PAGE_HEIGHT;
  let y = 0;
  while (performance.now() - started < budget) {
    const end = Math.min(limit, height());
    if (y >= end - window.innerHeight) {
      window.scrollTo(0, 0);
      return {reachedEnd: true, y, height: end};
    }
    y += step;
    window.scrollTo(0, y);
    await new Promise(r => setTimeout(r, 100));
  }
  window.scrollTo(0, 0);
  return {reachedEnd: false, y, height: Math.min(limit, height())};
}
""".replace("PAGE_HEIGHT", PAGE_HEIGHT)


async def _screenshot(devtools: Any, params: dict[str, Any]) -> bytes:
    """A PNG straight from DevTools. optimizeForSpeed is zlib's fastest setting: the same pixels
    (PNG is lossless) in a file about a third larger, for a third less CPU per screenshot."""
    answer = await devtools.send("Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True, **params})
    return base64.b64decode(answer["data"])


async def _safe(awaitable: Any, default: Any, result: PageResult, what: str, bound: float) -> Any:
    try:
        return await asyncio.wait_for(awaitable, bound)
    except (KeyboardInterrupt, SystemExit, asyncio.CancelledError):
        raise
    except TimeoutError:
        result.steps.append(f"{what} did not finish within {bound:g} s")
    except Exception as exc:  # noqa: BLE001 - a failed step is recorded, the capture goes on
        result.steps.append(f"{what} failed: {first_line(exc, 300)}")
    return default


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


async def close_quietly(browser: Any) -> None:
    try:
        await asyncio.wait_for(browser.close(), 10)
    except Exception:  # noqa: BLE001 - the process tree is killed next regardless
        pass
