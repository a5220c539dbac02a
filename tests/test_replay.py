"""What a court sees of a browser capture: the exhibit index with its screenshots, and the bundle
replayed by ReplayWeb.page in a real browser, from the bundle folder.

Needs Chromium and ReplayWeb.page's npm package (node_modules/replaywebpage at the repository
root, as .ci/run installs it, or EVARCHIVE_REPLAY_VIEWER). Under CI (CI=true) a missing one
fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from localserver import BROWSER_SCRIPT_TEXT
from warcio.archiveiterator import ArchiveIterator

from evarchive.browser import find_chromium

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _required(what: str, how: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI: {how}")
    pytest.skip(f"{what} not installed ({how})")


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        _required("Chromium", "apt-get install -y chromium")
    return found


@pytest.fixture(scope="module")
def replaywebpage() -> Path:
    folder = Path(os.environ.get("EVARCHIVE_REPLAY_VIEWER") or REPO / "node_modules" / "replaywebpage")
    if not (folder / "sw.js").is_file():
        _required(f"ReplayWeb.page's npm package (looked in {folder})", "see .ci/run")
    return folder


def run_cli(*args: str, archive: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evarchive.cli", *args, "--archive", str(archive)],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def captured(tmp_path_factory, local_server, chromium) -> dict[str, Any]:
    """One browser capture of the article (script-inserted text, stylesheet, background image)."""
    archive = tmp_path_factory.mktemp("replay") / "a"
    url = local_server.url("/browser/article")
    result = run_cli("capture", "--engine", "browser", "--chromium", chromium, url, archive=archive)
    assert result.returncode == 0, result.stdout + result.stderr
    resources, meta = {}, {}
    for path in sorted((archive / "warcs").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                uri = rec.rec_headers.get_header("WARC-Target-URI")
                if rec.rec_type == "resource":
                    resources[uri.split(":")[2]] = rec.content_stream().read()
                elif rec.rec_type == "metadata" and uri == url:
                    meta = dict(line.split(": ", 1) for line in rec.content_stream().read().decode().splitlines())
    return {"archive": archive, "url": url, "resources": resources, "metadata": meta}


@pytest.fixture(scope="module")
def bundle(captured, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "b"
    result = run_cli("export", str(out), captured["url"], archive=captured["archive"])
    assert result.returncode == 0, result.stdout + result.stderr
    return out


# --------------------------------------------------------------------------- the exhibit index

def test_exhibit_index_shows_the_screenshot_with_its_hashes_time_and_chromium(bundle, captured):
    [ex] = json.loads((bundle / "bundle.json").read_text())["exhibits"]
    shots = {a["kind"]: a for a in ex["artefacts"]}
    assert sorted(shots) == ["pdf", "screenshot-full", "screenshot-viewport"]
    for kind, art in shots.items():  # each file is the bytes of its WARC resource record
        data = (bundle / art["file"]).read_bytes()
        assert data == captured["resources"][kind]
        assert art["sha256"] == hashlib.sha256(data).hexdigest()
    assert (bundle / shots["pdf"]["file"]).read_bytes().startswith(b"%PDF-")
    chromium_version = captured["metadata"]["browser-chromium-version"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", chromium_version)
    assert ex["chromium_version"] == chromium_version

    page = (bundle / "exhibits.html").read_text()
    figure = html.unescape(re.search(r"<figure class=\"shot\">.*?</figure>", page).group(0))
    assert f'<img src="{shots["screenshot-viewport"]["file"]}" width="320"' in figure
    assert f'<a href="{shots["screenshot-full"]["file"]}">' in figure
    assert f'<a href="{shots["pdf"]["file"]}">PDF print</a>' in figure
    assert f"As captured {ex['captured_at']} (UTC) by Chromium {chromium_version}" in figure
    text = (bundle / "exhibits.txt").read_text()
    listed = (bundle / "SHA256SUMS").read_text()
    for art in shots.values():
        assert art["sha256"] in page and art["sha256"] in text
        assert f"{art['sha256']}  {art['file']}\n" in listed
    assert f"Engine: browser: Chromium {chromium_version}" in text
    checked = run_verifier(bundle)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "3 screenshots and PDFs: each is the block of its resource record in evidence.wacz" in checked.stdout


def _reseal(bundle: Path, name: str, old_sha: str, new_sha: str, *, index_too: bool) -> None:
    """What a careful forger does after swapping a file: fix SHA256SUMS (and the index data)."""
    if index_too:
        data = (bundle / "bundle.json").read_text().replace(old_sha, new_sha)
        (bundle / "bundle.json").write_text(data)
    sums = (bundle / "SHA256SUMS").read_text().replace(f"{old_sha}  {name}", f"{new_sha}  {name}")
    if index_too:
        fresh = hashlib.sha256((bundle / "bundle.json").read_bytes()).hexdigest()
        sums = re.sub(r"(?m)^[0-9a-f]{64}  bundle\.json$", f"{fresh}  bundle.json", sums)
    (bundle / "SHA256SUMS").write_text(sums)


@pytest.mark.parametrize("index_too", [False, True], ids=["file-swapped", "file-and-index-swapped"])
def test_a_swapped_screenshot_is_caught(bundle, tmp_path, index_too):
    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    [ex] = json.loads((copy / "bundle.json").read_text())["exhibits"]
    full = next(a for a in ex["artefacts"] if a["kind"] == "screenshot-full")
    forged = (copy / "artefacts" / "exhibit-1-screenshot-viewport.png").read_bytes()  # a real PNG of the page
    (copy / full["file"]).write_bytes(forged)
    _reseal(copy, full["file"], full["sha256"], hashlib.sha256(forged).hexdigest(), index_too=index_too)
    checked = run_verifier(copy)
    assert checked.returncode == 1, checked.stdout
    assert f"FAIL  exhibit 1: {full['file']} (screenshot-full): its bytes are not the block of resource record " \
           f"{full['record_id']} in evidence.wacz (a swapped file?)" in checked.stdout
    assert "files match SHA256SUMS" in checked.stdout  # the forger's SHA256SUMS was consistent


def test_export_with_a_wrong_viewer_folder_is_a_usage_error(captured, tmp_path):
    out = tmp_path / "b"
    result = run_cli("export", str(out), "--viewer", str(tmp_path), captured["url"], archive=captured["archive"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--viewer {tmp_path}: not an npm package folder of replaywebpage" in " ".join(result.stderr.split())
    assert not out.exists()


# --------------------------------------------------------------------------- replay

@pytest.fixture
def served(tmp_path, captured, replaywebpage) -> Iterator[tuple[Path, str]]:
    """The bundle, exported with its viewer, served as VERIFY.md says (`python3 -m http.server`,
    here on a free port) from its own folder."""
    out = tmp_path / "b"
    result = run_cli("export", str(out), "--viewer", str(replaywebpage), captured["url"], archive=captured["archive"])
    assert result.returncode == 0, result.stdout + result.stderr
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"], cwd=out,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(server.stdout, selectors.EVENT_READ)
            assert sel.select(timeout=30), "python -m http.server did not start"
        port = re.search(r"port (\d+)", server.stdout.readline()).group(1)
        yield out, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _replayed(chromium: str, url: str, screenshot: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        # Service workers are how ReplayWeb.page reads the WACZ: allowed here (the capture blocks them).
        browser = await pw.chromium.launch(executable_path=chromium, chromium_sandbox=os.geteuid() != 0)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(url)
            deadline = time.monotonic() + 60
            frame = None
            while frame is None and time.monotonic() < deadline:  # the archived page's frame, in the viewer's
                frame = next((f for f in page.frames if "mp_/" in f.url and f.url.endswith("/browser/article")),
                             None)
                if frame is None:
                    await page.wait_for_timeout(100)
            assert frame is not None, [f.url for f in page.frames]
            await frame.wait_for_function(f"document.body && document.body.innerText.includes({BROWSER_SCRIPT_TEXT!r})",
                                          timeout=30000)
            facts = await frame.evaluate("""async () => {
                const bg = getComputedStyle(document.body).backgroundImage.slice(5, -2);
                const size = await new Promise(done => { const img = new Image();
                    img.onload = () => done([img.naturalWidth, img.naturalHeight]); img.onerror = () => done(null);
                    img.src = bg; });
                return {text: document.body.innerText, h1: getComputedStyle(document.querySelector('h1')).color,
                        background: bg, backgroundSize: size, frame: location.href};
            }""")
            await page.screenshot(path=str(screenshot))
            # What the viewer made of the WACZ's signature: its collection API, as its UI reads it, from
            # the viewer's own frame (its service worker answers there; the archived page's fetch is replayed)
            app = next(f for f in page.frames if "/viewer/" in f.url and "/w/" not in f.url)
            facts["verify"] = await app.evaluate("""async frame => {
                const m = frame.match(/^(.*\\/w\\/)([^\\/]+)\\//);
                return (await (await fetch(m[1] + "api/c/" + m[2] + "?all=1")).json()).verify;
            }""", facts["frame"])
            return facts
        finally:
            await browser.close()


def test_the_bundle_replays_in_replaywebpage_from_its_own_folder(served, captured, chromium, local_server, tmp_path,
                                                                replaywebpage):
    (out, origin), served_from = served, replaywebpage
    data = json.loads((out / "bundle.json").read_text())
    assert data["viewer"]["software"].startswith("ReplayWeb.page ")
    verify_md = (out / "VERIFY.md").read_text()
    assert "python3 -m http.server --bind 127.0.0.1 8000" in verify_md
    assert "http://127.0.0.1:8000/replay.html" in verify_md
    for name in ("ui.js", "sw.js", "LICENSE"):  # copied unchanged, with its licence
        assert (out / "viewer" / name).read_bytes() == (served_from / name).read_bytes()
    checked = run_verifier(out)  # the viewer's files are listed in SHA256SUMS like any other
    assert checked.returncode == 0, checked.stdout + checked.stderr
    link = re.search(r'<a href="(replay\.html\?[^"]+)">Replay this exhibit</a>', (out / "exhibits.html").read_text())
    local_server.clear_log()
    shot = tmp_path / "replay.png"
    started = time.monotonic()
    facts = asyncio.run(_replayed(chromium, f"{origin}/{html.unescape(link.group(1))}", shot))
    print(f"replayed in {time.monotonic() - started:.1f} s; screenshot {shot}")
    assert facts["frame"].startswith(f"{origin}/viewer/w/")  # served by the bundle's own viewer
    assert BROWSER_SCRIPT_TEXT in facts["text"]  # app.js and data.json came from the WACZ
    assert facts["h1"] == "rgb(160, 16, 16)"  # and so did the stylesheet
    assert facts["background"].endswith(captured["url"].replace("/article", "/bg.png"))
    assert facts["backgroundSize"] == [4, 60]  # the stylesheet's background image, from the WACZ
    assert local_server.log == []  # nothing was fetched from the live site
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The viewer took the WACZ's signature in: it shows the key and what was signed (it lists a
    # signedData only once its key imports, as ECDSA P-384, and its hash is the digest's).
    with zipfile.ZipFile(out / "evidence.wacz") as zf:
        digest = json.loads(zf.read("datapackage-digest.json"))
    signed = digest["signedData"]
    assert {k: facts["verify"].get(k) for k in ("publicKey", "datapackageHash", "created", "software")} == {
        "publicKey": signed["publicKey"], "datapackageHash": digest["hash"], "created": signed["created"],
        "software": signed["software"]}
