"""Browser-engine throughput, memory and completeness, against the issue's references.

Serves article pages from 4 loopback addresses (127.0.0.2-127.0.0.5) with 50 ms latency per
response (tests/localserver.py in its own process). Each page has a stylesheet, a font, a script
that fetches JSON, and 12 images of which half are lazy. Prints:

- pages per minute captured by evarchive's browser engine at default settings;
- the time for the same pages loaded by the same Chromium, with the same parallelism, page steps
  and artefacts (evarchive's own page driver), without recording (target: evarchive within 1.3x);
- the time of the naive peer, ``chromium --headless --screenshot`` once per page in sequence,
  each with a fresh profile (target: evarchive at least 4x faster);
- peak RSS of the whole process tree during the capture (target: under 1.5 GB), sampled;
- sub-resources recorded vs expected (target: all);
- with each time, the CPU seconds per page it cost (the wall times depend on the machine's load).

``--breakdown N`` instead loads N pages one at a time, recorded and unrecorded, and prints the wall
and CPU time of each page step per process kind (this Python, Playwright's node, Chromium's
browser, renderer, GPU and utility processes).

Usage: python bench/browser.py [--pages 60] [--skip-naive] [--tabs N] [--breakdown N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

from evarchive.browser.processes import TreeMemory

ROOT = Path(__file__).resolve().parent.parent
HOSTS = [f"127.0.0.{i}" for i in range(2, 6)]
LATENCY = 0.05
EXPECTED_PER_PAGE = 1 + 1 + 1 + 1 + 1 + 12 + 1  # page, css, font, js, json, images, background

CHILD = textwrap.dedent("""
    import json, sys, time
    from evarchive.archive import Archive
    from evarchive.browser import BrowserSettings, capture_with_browser, find_chromium
    from evarchive.capture import CaptureSettings
    urls = open(sys.argv[2]).read().split()
    archive = Archive.open(sys.argv[1])
    start = time.perf_counter()
    settings = BrowserSettings(chromium=find_chromium())
    if len(sys.argv) > 3:
        settings.tabs = int(sys.argv[3])
    outcomes = capture_with_browser(archive, urls, CaptureSettings(), settings)
    print(json.dumps({"seconds": time.perf_counter() - start,
                      "ok": sum(o.status != "failed" for o in outcomes),
                      "findings": sum(bool(o.findings) for o in outcomes)}))
""")


def start_server() -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "localserver.py"), "--hosts", f"{HOSTS[0]}-{HOSTS[-1]}",
         "--latency", str(LATENCY)], stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def tree_memory(root: int, pss: TreeMemory) -> tuple[float, float]:
    """Memory of ``root`` and every descendant: (sum of PSS, sum of RSS) in MB.

    Chromium's processes share most of their pages, so the RSS sum counts them many times; PSS
    divides each shared page between its sharers and sums to what the tree really holds. PSS comes
    the way the engine's own watchdog reads it (``TreeMemory``: a process's page tables are walked
    again only once its resident size moved): walking every page table four times a second slowed
    the run it measured by about 0.05 CPU-s a page."""
    from evarchive.browser.processes import _rss_kb, with_descendants

    rss = sum(_rss_kb(pid) or 0 for pid in with_descendants([root]))
    return pss.mb(root), rss / 1024


def run_evarchive(archive: Path, urls: list[str], workdir: Path, tabs: int) -> tuple[dict, tuple[float, float]]:
    url_file = workdir / "urls.txt"
    url_file.write_text("\n".join(urls))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(archive), str(url_file), str(tabs)],
                            stdout=subprocess.PIPE, text=True)
    peak = [(0.0, 0.0)]
    pss = TreeMemory()

    def sample() -> None:
        while proc.poll() is None:
            now = tree_memory(proc.pid, pss)
            peak[0] = (max(peak[0][0], now[0]), max(peak[0][1], now[1]))
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    return json.loads(out), peak[0]


async def unrecorded(urls: list[str], tabs: int, timed_driver_for=None) -> float:
    """The same pages, same Chromium, same tabs and the same page steps (load, quiet, scroll,
    screenshots, PDF, DOM, text: evarchive's own page driver), straight to the server: no proxy,
    no DevTools accounting, no body comparison, no WARC."""
    from playwright.async_api import async_playwright

    from evarchive.browser import CHROMIUM_ARGS, BrowserSettings, find_chromium
    from evarchive.browser.page import PageDriver

    class UnrecordedDriver(PageDriver):
        async def _watch_devtools(self, context, page, result) -> None:  # accounting only
            return None

        async def _collect_bodies(self, result) -> None:  # accounting only
            return None

    driver = timed_driver_for(UnrecordedDriver) if timed_driver_for else UnrecordedDriver

    args = [a for a in CHROMIUM_ARGS if not a.startswith("--proxy-bypass")]
    start = time.perf_counter()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), args=args,
                                           chromium_sandbox=os.geteuid() != 0)
        limit = asyncio.Semaphore(tabs)
        settings = BrowserSettings(chromium=find_chromium())

        async def one(url: str) -> None:
            async with limit:
                result = await driver(browser, settings, None).capture(url, None)
                assert "screenshot-full" in result.artefacts and "pdf" in result.artefacts, result.steps

        await asyncio.gather(*(one(u) for u in urls))
        await browser.close()
    return time.perf_counter() - start


def naive(urls: list[str], workdir: Path) -> float:
    from evarchive.browser import find_chromium

    chromium = find_chromium()
    start = time.perf_counter()
    for n, url in enumerate(urls):
        # A fresh profile per page, as evarchive's fresh context per capture: with the default
        # profile the peer would serve the shared stylesheet, script and font from its disk
        # cache, and would share (and wait on) the profile of any other Chromium on the machine.
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={workdir / f'naive-profile-{n}'}",
                        f"--screenshot={workdir / f'naive-{n}.png'}", url],
                       capture_output=True, timeout=120, check=False)
    seconds = time.perf_counter() - start
    made = sum((workdir / f"naive-{n}.png").is_file() for n in range(len(urls)))
    assert made == len(urls), f"the naive peer made {made} of {len(urls)} screenshots"
    return seconds


def adopt_orphans() -> None:
    """Make this process the reaper of every process started below it: Chromium's zygotes outlive
    the browser process that started them, and a process nobody waits for takes the CPU time of
    the renderers it reaped (most of Chromium's) out of RUSAGE_CHILDREN."""
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def cpu_seconds(keep: int) -> tuple[float, float]:
    """CPU time of this process, and of every process below it that has ended (the server,
    ``keep``, still runs): each figure's cost whatever else the machine runs, where its wall
    time is not. Waits (at most 10 s) for the last of a figure's processes to end."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            parents = {int(p.name): p for p in Path("/proc").iterdir() if p.name.isdigit()}
            if not any(_parent(entry) == os.getpid() and int(entry.name) != keep for entry in parents.values()):
                break
            time.sleep(0.05)
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _parent(entry: Path) -> int:
    try:
        stat = (entry / "stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def recorded_subresources(archive: Path) -> int:
    db = sqlite3.connect(archive / "catalogue.sqlite")
    try:
        return db.execute("SELECT COUNT(*) FROM capture_records WHERE record_type = 'response' "
                          "AND target_uri NOT LIKE '%favicon.ico'").fetchone()[0]
    finally:
        db.close()


# --------------------------------------------------------------------------- --breakdown

GROUPS = ("python", "node", "browser", "renderer", "gpu", "utility")


def tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds so far of ``root`` (this Python: page driver, recording proxy, records), of
    Playwright's node driver, and of Chromium's processes by kind: the browser process, renderers,
    the GPU process, utilities (network service...). Each Chromium process counts with what ended
    below it (a zygote's renderers, the browser's utilities); the test server below ``root`` does
    not count."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, str | None, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        kind = re.search(rb"--type=([a-z-]+)", cmdline)
        chromium = b"chrom" in cmdline.split(b"\0", 1)[0]
        group = ("node" if stat[stat.index("(") + 1:].startswith("node") else
                 None if not chromium else "browser" if kind is None else
                 {b"zygote": "renderer", b"renderer": "renderer", b"gpu-process": "gpu"}.get(
                     kind.group(1), "utility"))
        own = sum(int(f) for f in fields[11:13])
        reaped = sum(int(f) for f in fields[13:15]) if chromium else 0
        stats[int(entry.name)] = (int(fields[1]), group, (own + reaped) / tick)
    out = dict.fromkeys(GROUPS, 0.0)
    out["python"] = stats[root][2] if root in stats else 0.0
    frontier = [root]
    while frontier:
        pid = frontier.pop()
        for child, (parent, group, cpu) in stats.items():
            if parent == pid and group is not None:
                out[group] += cpu
                frontier.append(child)
    return out


class StepClock:
    """Wall and CPU (per process group) of each named step, summed over pages."""

    def __init__(self) -> None:
        self.totals: dict[str, list[float]] = {}

    @contextlib.asynccontextmanager
    async def step(self, name: str):
        wall, cpu = time.perf_counter(), tree_cpu(os.getpid())
        try:
            yield
        finally:
            after = tree_cpu(os.getpid())
            row = self.totals.setdefault(name, [0.0] * (1 + len(GROUPS)))
            row[0] += time.perf_counter() - wall
            for i, key in enumerate(GROUPS, 1):
                row[i] += after[key] - cpu[key]

    def timed(self, name: str, awaitable):
        async def run():
            async with self.step(name):
                return await awaitable
        return run()


class TimedPage:
    """A page whose artefact calls (PDF, DOM, title, text) are timed one by one."""

    def __init__(self, page, clock: StepClock) -> None:
        self._page, self._clock = page, clock

    def __getattr__(self, name: str):
        return getattr(self._page, name)

    def pdf(self, **kw):
        return self._clock.timed("pdf", self._page.pdf(**kw))

    def content(self):
        return self._clock.timed("dom", self._page.content())

    def title(self):
        return self._clock.timed("title", self._page.title())

    def evaluate(self, script, *args):
        return self._clock.timed("fonts ready, text (evaluate)", self._page.evaluate(script, *args))


class TimedContext:
    """A browser context whose setup calls and close are timed."""

    def __init__(self, context, clock: StepClock) -> None:
        self._context, self._clock = context, clock

    def __getattr__(self, name: str):
        return getattr(self._context, name)

    def new_page(self):
        return self._clock.timed("context: new page", self._context.new_page())

    def new_cdp_session(self, page):
        return self._clock.timed("context: DevTools session", self._context.new_cdp_session(page))

    def route_web_socket(self, *args):
        return self._clock.timed("context: WebSocket route", self._context.route_web_socket(*args))

    def close(self):
        return self._clock.timed("context: close", self._context.close())


class TimedBrowser:
    """A browser whose new contexts are timed, and time their own setup and close."""

    def __init__(self, browser, clock: StepClock) -> None:
        self._browser, self._clock = browser, clock

    def __getattr__(self, name: str):
        return getattr(self._browser, name)

    async def new_context(self, **kw):
        async with self._clock.step("context: new"):
            return TimedContext(await self._browser.new_context(**kw), self._clock)


def timed_driver(base, clock: StepClock):
    class TimedDriver(base):
        def __init__(self, browser, *args, **kw):
            super().__init__(TimedBrowser(browser, clock), *args, **kw)

        async def capture(self, url, proxy_port):
            async with clock.step("page, all steps"):
                return await super().capture(url, proxy_port)

        async def _load(self, page, url, result):
            async with clock.step("load (goto, load event)"):
                await super()._load(page, url, result)

        async def _scroll(self, page, result):
            async with clock.step("scroll"):
                return await super()._scroll(page, result)

        async def _quiet(self, result, what):
            async with clock.step("network-quiet wait"):
                await super()._quiet(result, what)

        async def _take_artefacts(self, page, result):
            await super()._take_artefacts(TimedPage(page, clock), result)

        async def _devtools(self, page):
            return await super()._devtools(page._page if isinstance(page, TimedPage) else page)

        def _full_screenshot(self, *args):
            return clock.timed("screenshot-full", super()._full_screenshot(*args))

        def _viewport_screenshot(self, *args):
            return clock.timed("screenshot-viewport", super()._viewport_screenshot(*args))

        async def _collect_bodies(self, result):
            async with clock.step("bodies for accounting"):
                await super()._collect_bodies(result)

    return TimedDriver


def breakdown(urls: list[str], workdir: Path) -> None:
    """One page at a time, recorded then unrecorded: where wall and CPU time go per step."""
    from evarchive.archive import Archive
    from evarchive.browser import BrowserSettings, find_chromium
    from evarchive.browser.run import BrowserCaptureRun
    from evarchive.capture import CaptureSettings

    recorded = StepClock()

    class TimedRun(BrowserCaptureRun):
        driver_class = timed_driver(BrowserCaptureRun.driver_class, recorded)

        async def capture_page(self, *args):
            async with recorded.step("capture_page: page + proxy + records"):
                return await super().capture_page(*args)

        def _record_page(self, *args):
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return super()._record_page(*args)
            finally:
                row = recorded.totals.setdefault("WARC records + catalogue", [0.0] * (1 + len(GROUPS)))
                row[0] += time.perf_counter() - wall
                row[1] += time.process_time() - cpu

    settings = BrowserSettings(chromium=find_chromium(), tabs=1)
    archive = Archive.open(workdir / "breakdown")
    start, cpu0 = time.perf_counter(), time.process_time()
    asyncio.run(TimedRun(archive, CaptureSettings(), settings).run(urls))
    whole = ("whole run, launch included", [time.perf_counter() - start, time.process_time() - cpu0,
                                            *[0.0] * (len(GROUPS) - 1)])
    plain = StepClock()
    asyncio.run(unrecorded(urls, 1, timed_driver_for=lambda base: timed_driver(base, plain)))
    n = len(urls)
    print(f"breakdown: {n} pages one at a time, seconds per page: wall, then CPU of this Python "
          "(page driver, recording proxy, records), Playwright's node driver, and Chromium's "
          "browser process, renderers, GPU process and utilities (the whole run line: this Python only)")
    print(f"  {'step':38s} {'wall':>6s} " + " ".join(f"{g:>8s}" for g in GROUPS) + f" {'CPU':>6s}")
    for title, clock in (("recorded (evarchive)", recorded), ("unrecorded", plain)):
        print(f"  {title}")
        for name, (wall, *cpu) in list(clock.totals.items()) + ([whole] if clock is recorded else []):
            print(f"    {name:36s} {wall / n:6.3f} " + " ".join(f"{c / n:8.3f}" for c in cpu)
                  + f" {sum(cpu) / n:6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--tabs", type=int, default=None, help="pages at once (default: the engine's)")
    parser.add_argument("--breakdown", type=int, metavar="N", default=0,
                        help="instead: N pages one at a time, wall and CPU per page step")
    args = parser.parse_args()
    from evarchive.browser import BrowserSettings

    tabs = args.tabs or BrowserSettings().tabs
    adopt_orphans()
    server, info = start_server()
    port = info["hosts"][HOSTS[0]]["http"]
    urls = [f"http://{HOSTS[n % len(HOSTS)]}:{port}/browser/bench/{n}" for n in range(args.pages)]
    workdir = Path(tempfile.mkdtemp(prefix="evarchive-bench-browser-"))
    if args.breakdown:
        try:
            breakdown(urls[:args.breakdown], workdir)
        finally:
            server.terminate()
            shutil.rmtree(workdir, ignore_errors=True)
        return
    try:
        loads, cpu = [load()], [cpu_seconds(server.pid)]
        result, peak = run_evarchive(workdir / "archive", urls, workdir, tabs)
        loads.append(load())
        cpu.append(cpu_seconds(server.pid))
        plain = asyncio.run(unrecorded(urls, tabs))
        loads.append(load())
        cpu.append(cpu_seconds(server.pid))
        naive_s = None if args.skip_naive else naive(urls, workdir)
        loads.append(load())
        cpu.append(cpu_seconds(server.pid))
        # evarchive and the naive peer run in children; the unrecorded reference in this process
        # (the memory sampler's own CPU, during evarchive's run, is left out).
        spent = [cpu[1][1] - cpu[0][1], sum(cpu[2]) - sum(cpu[1]), cpu[3][1] - cpu[2][1]]
        per_page = [f"{seconds / args.pages:.2f} CPU-s/page" for seconds in spent]
        recorded = recorded_subresources(workdir / "archive")
        print(f"machine                 {loads[0]} before; after each figure: " + "; ".join(loads[1:]))
        print(f"pages captured          {result['ok']} of {args.pages} ({result['findings']} with findings)")
        print(f"evarchive browser       {result['seconds']:.1f} s   "
              f"({args.pages * 60 / result['seconds']:.1f} pages/min, {tabs} tabs; {per_page[0]})   [{loads[1]}]")
        print(f"unrecorded, same tabs   {plain:.1f} s   (ratio {result['seconds'] / plain:.2f}x; "
              f"target within 1.3x; {per_page[1]})   [{loads[2]}]")
        if naive_s is not None:
            print(f"naive --screenshot      {naive_s:.1f} s   (evarchive {naive_s / result['seconds']:.1f}x "
                  f"faster; target at least 4x; {per_page[2]})   [{loads[3]}]")
        print(f"peak memory, tree (PSS) {peak[0]:.0f} MB   (target under 1536 MB; sum of RSS {peak[1]:.0f} MB "
              "counts shared pages once per process)")
        print(f"responses recorded      {recorded} of {args.pages * EXPECTED_PER_PAGE} expected")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
