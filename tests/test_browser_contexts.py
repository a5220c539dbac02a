"""One browser per run, a fresh context per capture: nothing one capture loaded serves another,
and a capture costs Chromium one renderer (real Chromium, the shared loopback server)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from localserver import CACHEABLE_ASSETS
from test_browser import capture_api, chromium, metadata_fields, warc_records  # noqa: F401 - fixture

from evarchive.archive import Archive
from evarchive.browser import BrowserSettings
from evarchive.browser.page import PageDriver
from evarchive.browser.processes import RUN_MARK, processes_marked, with_descendants
from evarchive.browser.run import BrowserCaptureRun
from evarchive.capture import CaptureSettings

pytestmark = pytest.mark.slow


def test_a_second_capture_in_the_same_browser_fetches_and_records_everything_again(
        tmp_path, local_server, chromium):  # noqa: F811 - the fixture imported above
    # One tab: the second page loads in the same browser after the first, and the server lets
    # any cache keep the stylesheet, script and image for a day.
    urls = [local_server.url("/browser/cacheable?capture=1"), local_server.url("/browser/cacheable?capture=2")]
    archive, outcomes = capture_api(tmp_path, urls, chromium, tabs=1)
    assert [(o.status, o.findings) for o in outcomes] == [("captured", []), ("captured", [])]
    for path in CACHEABLE_ASSETS:
        assert len(local_server.exchanges(path)) == 2, path  # the second capture asked the server again
    responses: dict[str, list[str]] = {}
    for row in archive.db.query("SELECT c.url_requested, r.target_uri, r.payload_sha256 FROM capture_records r "
                                "JOIN captures c ON c.id = r.capture_id WHERE r.record_type = 'response'"):
        responses.setdefault(row["url_requested"], []).append((row["target_uri"], row["payload_sha256"]))
    records = warc_records(tmp_path / "a")
    base = urls[0].rsplit("/browser/", 1)[0]
    for url in urls:
        expected = {(base + path, hashlib.sha256(body).hexdigest()) for path, (_, body) in CACHEABLE_ASSETS.items()}
        assert expected <= set(responses[url]), url
        fields = metadata_fields(records, url)
        assert json.loads(fields["browser-memory-cache"]) == []
        served = {r["url"]: r["served"] for r in json.loads(fields["browser-requests"])}
        assert all(served[base + path] == "recorded" for path in CACHEABLE_ASSETS), served


class RendererCounter(PageDriver):
    """Counts the run's renderer processes once the page has loaded."""

    seen: list[int] = []
    run_mark = ""

    async def _load(self, page: Any, url: str, result: Any) -> None:
        await super()._load(page, url, result)
        await asyncio.sleep(0)
        tree = with_descendants(processes_marked(RUN_MARK + self.run_mark))
        self.seen.append(sum(1 for pid in tree if b"--type=renderer" in _cmdline(pid)))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_capture_starts_one_renderer(tmp_path, local_server, chromium):  # noqa: F811
    # Headless Chromium gives each context a window whose omnibox popups are WebUI pages with
    # renderers of their own, and a spare renderer: none of them show the page, all cost CPU.
    class Run(BrowserCaptureRun):
        driver_class = RendererCounter

    RendererCounter.seen = []
    archive = Archive.open(tmp_path / "a")
    run = Run(archive, CaptureSettings(), BrowserSettings(chromium=chromium, tabs=1))
    RendererCounter.run_mark = run.run_mark
    outcomes = asyncio.run(run.run([local_server.url("/browser/cacheable?capture=1"),
                                    local_server.url("/browser/cacheable?capture=2")]))
    assert [o.status for o in outcomes] == ["captured", "captured"]
    assert RendererCounter.seen == [1, 1]


class SwitchReader(PageDriver):
    """The features the run's browser process was started with, as Chromium reads them: from
    the last --disable-features switch of its command line."""

    run_mark = ""
    disabled: set[str] = set()

    async def _load(self, page: Any, url: str, result: Any) -> None:
        await super()._load(page, url, result)
        for pid in processes_marked(RUN_MARK + self.run_mark):
            args = _cmdline(pid).split(b"\0")
            if any(a.startswith(b"--type=") for a in args):
                continue  # a child process: the browser process holds the switches
            values = [a.split(b"=", 1)[1].decode() for a in args if a.startswith(b"--disable-features=")]
            SwitchReader.disabled = set(values[-1].split(","))


def playwright_disabled_features() -> set[str]:
    """The features the installed Playwright disables, read from its driver's source."""
    import re

    import playwright

    bundle = Path(playwright.__file__).parent / "driver" / "package" / "lib" / "coreBundle.js"
    listing = re.search(r"disabledFeatures = \[(.*?)\]\.filter", bundle.read_text(), re.S)
    assert listing is not None, "Playwright's disabled features are no longer where this test reads them"
    names = set(re.findall(r'^\s*"(\w+)"', listing.group(1), re.M))
    assert "HttpsUpgrades" in names
    return names


def test_the_browser_keeps_playwrights_disabled_features_and_ours(tmp_path, local_server, chromium):  # noqa: F811
    # Chromium keeps the last copy of a switch: ours must not switch Playwright's features back on
    # (HttpsUpgrades would try a cited http:// URL over https:// first).
    from evarchive.browser.engine import OUR_DISABLED_FEATURES

    class Run(BrowserCaptureRun):
        driver_class = SwitchReader

    SwitchReader.disabled = set()
    run = Run(Archive.open(tmp_path / "a"), CaptureSettings(), BrowserSettings(chromium=chromium, tabs=1))
    SwitchReader.run_mark = run.run_mark
    outcomes = asyncio.run(run.run([local_server.url("/browser/cacheable?capture=1")]))
    assert [o.status for o in outcomes] == ["captured"]
    assert playwright_disabled_features() <= SwitchReader.disabled
    assert set(OUR_DISABLED_FEATURES) <= SwitchReader.disabled


class OpenPages(PageDriver):
    """How many pages were open at once, at most."""

    now = 0
    most = 0

    async def capture(self, url: str, proxy_port: int | None) -> Any:
        OpenPages.now += 1
        OpenPages.most = max(OpenPages.most, OpenPages.now)
        try:
            return await super().capture(url, proxy_port)
        finally:
            OpenPages.now -= 1


@pytest.mark.parametrize(("reading_mb", "most_open"), [(800, 1), (100, 3)])
def test_another_page_opens_only_while_memory_leaves_room(tmp_path, local_server, chromium,  # noqa: F811
                                                          reading_mb, most_open):
    # The process tree's memory as the watchdog reads it, fixed: over 70% of the 1000 MB bound
    # (but under it, so nothing is cut) pages open one at a time; well under it, three at once.
    class Run(BrowserCaptureRun):
        driver_class = OpenPages
        measure_memory = staticmethod(lambda pid: reading_mb)

    OpenPages.now = OpenPages.most = 0
    urls = [local_server.url(f"/browser/cacheable?capture={n}") for n in range(3)]
    run = Run(Archive.open(tmp_path / "a"), CaptureSettings(),
              BrowserSettings(chromium=chromium, tabs=3, max_memory_mb=1000))
    outcomes = asyncio.run(run.run(urls))
    assert [(o.status, o.findings) for o in outcomes] == [("captured", [])] * 3
    assert OpenPages.most == most_open
    steps = [row["steps"] for row in run.archive.db.query("SELECT steps FROM captures")]
    assert steps == [None] * 3  # no page was cut


def test_the_watchdogs_memory_reading_reads_pss_again_only_for_a_process_that_moved():
    # A real process that grows on demand: its PSS is read once, reused while its resident size
    # stays put, read again once it grows (or the reading ages), and the sum follows the growth.
    import subprocess
    import sys

    from evarchive.browser.processes import MAX_AGE, TreeMemory, tree_memory_mb

    child = subprocess.Popen([sys.executable, "-c", "import sys\nheld = []\nfor line in sys.stdin:\n"
                              "    held.append(bytearray(int(line)) + b'x')\n    print('ok', flush=True)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # Wait until the interpreter has started: before then its memory grows on its own.
        child.stdin.write("0\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"
        now = [0.0]
        memory = TreeMemory(clock=lambda: now[0])
        first = memory.mb(child.pid)
        assert abs(first - tree_memory_mb(child.pid)) < 2
        assert memory.pss_reads == 1
        memory.mb(child.pid)
        assert memory.pss_reads == 1  # unchanged: the last reading stands
        child.stdin.write(f"{64 << 20}\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ok\n"
        grown = memory.mb(child.pid)
        assert memory.pss_reads == 2
        assert grown - first > 60
        assert abs(grown - tree_memory_mb(child.pid)) < 2
        now[0] += MAX_AGE
        memory.mb(child.pid)
        assert memory.pss_reads == 3  # aged: read again
    finally:
        child.kill()
        child.wait()
