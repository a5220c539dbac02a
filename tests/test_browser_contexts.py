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
