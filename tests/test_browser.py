"""The browser capture engine, with the real Chromium and the shared loopback server.

Under CI (CI=true) a missing Chromium fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
from localserver import (
    BROWSER_ARTICLE_RESOURCES,
    BROWSER_ASSETS,
    BROWSER_SCRIPT_TEXT,
    BROWSER_TONE,
    MEDIA_RANGE_CAP,
    large_body_sha256,
)
from warcio.archiveiterator import ArchiveIterator

from evarchive.archive import Archive
from evarchive.browser import BrowserSettings, capture_with_browser, find_chromium
from evarchive.capture import CaptureSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI: apt-get install -y chromium")
        pytest.skip("Chromium not installed")
    return found


def run_cli(*args: str, archive: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evarchive.cli", *args, "--archive", str(archive)],
                          capture_output=True, text=True, timeout=180, env=env)


def warc_records(archive: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((archive / "warcs").glob("*.warc.gz")):
        with open(path, "rb") as fh:
            for rec in ArchiveIterator(fh):
                out.append({"type": rec.rec_type, "uri": rec.rec_headers.get_header("WARC-Target-URI"),
                            "headers": dict(rec.rec_headers.headers),
                            "http": rec.http_headers,
                            "payload": rec.raw_stream.read(),
                            "status": rec.http_headers.get_statuscode() if rec.http_headers else None})
    return out


def png_pixels(data: bytes, rows: int = 400) -> tuple[int, int, set[bytes]]:
    """Width, height and distinct pixels of the top ``rows`` of an 8-bit RGB/RGBA PNG (a tiny
    decoder: pure Python is slow, and the top of a page is enough to tell it is not blank)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = chunk
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * rows)
    previous, pixels = bytearray(stride), set()
    for y in range(min(rows, height)):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        if y % 10 == 0:
            pixels.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp * 8))
        previous = line
    return width, height, pixels


def metadata_fields(records: list[dict[str, Any]], cited: str) -> dict[str, str]:
    meta = next(r for r in records if r["type"] == "metadata" and r["uri"] == cited)
    fields = {}
    for line in meta["payload"].decode().splitlines():
        name, _, value = line.partition(": ")
        fields[name] = value
    return fields


# --------------------------------------------------------------------------- the article

@pytest.fixture(scope="module")
def article_capture(tmp_path_factory, local_server, chromium) -> dict[str, Any]:
    archive = tmp_path_factory.mktemp("browser") / "a"
    url = local_server.url("/browser/article")
    result = run_cli("capture", "--engine", "browser", "--chromium", chromium, url, archive=archive)
    return {"archive": archive, "url": url, "result": result, "records": warc_records(archive),
            "base": url.rsplit("/browser/", 1)[0]}


def test_every_subresource_is_recorded_byte_for_byte(article_capture):
    assert article_capture["result"].returncode == 0, article_capture["result"].stderr
    records, base = article_capture["records"], article_capture["base"]
    for path in BROWSER_ARTICLE_RESOURCES:
        url = base + path
        assert [r["type"] for r in records if r["uri"] == url] == ["request", "response"], path
        response = next(r for r in records if r["uri"] == url and r["type"] == "response")
        assert response["status"] == "200"
        assert hashlib.sha256(response["payload"]).hexdigest() == hashlib.sha256(BROWSER_ASSETS[path][1]).hexdigest()
        request = next(r for r in records if r["uri"] == url and r["type"] == "request")
        # What went upstream is what WARC readers decode; what the browser asked is in the metadata.
        assert request["http"].get_header("Accept-Encoding") == "gzip, deflate"
        assert "HeadlessChrome/" in request["http"].get_header("User-Agent")


def test_page_response_is_the_last_response_and_artefacts_point_at_it(article_capture):
    records, url = article_capture["records"], article_capture["url"]
    responses = [r for r in records if r["type"] == "response"]
    assert responses[-1]["uri"] == url
    page_id = responses[-1]["headers"]["WARC-Record-ID"]
    resources = {r["uri"].split(":")[2]: r for r in records
                 if r["type"] == "resource" and r["uri"].startswith("urn:evarchive:")}
    assert set(resources) == {"screenshot-full", "screenshot-viewport", "pdf", "dom", "title", "text",
                              "provenance"}
    for rec in resources.values():
        assert rec["headers"]["WARC-Concurrent-To"] == page_id
        assert rec["headers"]["WARC-Payload-Digest"].startswith("sha256:")
    assert BROWSER_SCRIPT_TEXT.encode() in resources["dom"]["payload"]
    assert BROWSER_SCRIPT_TEXT.encode() in resources["text"]["payload"]
    assert resources["title"]["payload"] == b"Browser article"
    assert resources["pdf"]["payload"].startswith(b"%PDF-")


def test_full_page_screenshot_is_a_real_image_of_the_whole_page(article_capture):
    records, url = article_capture["records"], article_capture["url"]
    shot = next(r for r in records if r["uri"] == f"urn:evarchive:screenshot-full:{url}")
    width, height, pixels = png_pixels(shot["payload"])
    fields = metadata_fields(records, url)
    assert width == 1280
    assert height == int(fields["browser-page-height"]) > 4500  # the spacers alone are 4500 px
    assert len(pixels) > 3  # background, text, images: not a blank page
    viewport = next(r for r in records if r["uri"] == f"urn:evarchive:screenshot-viewport:{url}")
    assert png_pixels(viewport["payload"])[:2] == (1280, 800)


def test_accounting_finds_every_request_recorded(article_capture):
    records, url, base = article_capture["records"], article_capture["url"], article_capture["base"]
    fields = metadata_fields(records, url)
    requests = json.loads(fields["browser-requests"])
    assert json.loads(fields["browser-findings"]) == []
    served = {r["url"]: r["served"] for r in requests}
    for path in ("/browser/article", *BROWSER_ARTICLE_RESOURCES):
        assert served[base + path] == "recorded", path
    assert all(r.get("body_compared") for r in requests if r["url"].endswith(".png") or r["url"].endswith(".json"))
    assert fields["browser-engine"] == "browser"
    assert fields["browser-chromium-version"].split(".")[0].isdigit()


def test_catalogue_rows_custody_and_deep_verify(article_capture):
    archive = article_capture["archive"]
    db = Archive.open(archive).db
    capture = next(iter(db.query("SELECT * FROM captures")))
    assert (capture["engine"], capture["status"], capture["findings"], capture["wall"]) == ("browser", "ok", None, None)
    artefacts = list(db.query("SELECT a.*, r.record_type, r.payload_sha256 AS rec_sha FROM capture_artefacts a "
                              "JOIN capture_records r ON r.record_id = a.record_id"))
    assert {a["kind"] for a in artefacts} == {"screenshot-full", "screenshot-viewport", "pdf", "dom", "title",
                                              "text", "provenance"}
    assert all(a["record_type"] == "resource" and a["sha256"] == a["rec_sha"] for a in artefacts)
    entry = json.loads(next(iter(db.query("SELECT details FROM custody_log WHERE event = 'capture'")))["details"])
    assert sorted(a["kind"] for a in entry["artefacts"]) == sorted(a["kind"] for a in artefacts)
    check = subprocess.run([sys.executable, "-m", "warcio.cli", "check", "-v",
                            *map(str, (archive / "warcs").glob("*.warc.gz"))], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    verify = run_cli("verify", "--deep", archive=archive)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --------------------------------------------------------------------------- hostile pages

def capture_api(tmp_path: Path, urls: list[str], chromium: str, **browser: Any) -> tuple[Archive, list[Any]]:
    archive = Archive.open(tmp_path / "a")
    settings = BrowserSettings(chromium=chromium, **browser)
    return archive, capture_with_browser(archive, urls, CaptureSettings(insecure=True), settings)


def test_each_page_is_reported_once_with_its_capture_id(tmp_path, local_server, chromium):
    # What the CLI prints per page (--json lines, the progress bar) comes from these reports.
    urls = [local_server.url("/browser/alert"), local_server.url("/browser/wall")]
    reported: list[Any] = []
    capture_with_browser(Archive.open(tmp_path / "a"), urls, CaptureSettings(),
                         BrowserSettings(chromium=chromium), reported.append)
    assert sorted((o.url, o.engine) for o in reported) == sorted((u, "browser") for u in urls)
    assert all(o.capture_id is not None for o in reported)


def test_alert_is_dismissed_and_said(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/alert")], chromium)
    assert outcome.status == "captured"
    steps = json.loads(next(iter(archive.db.query("SELECT steps FROM captures")))["steps"])
    assert steps == ["dismissed a JavaScript alert: 'hello'"]


def test_tall_page_screenshot_is_cut_at_the_cap_and_says_so(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/tall")], chromium, max_height=5000)
    shot = next(iter(archive.db.query("SELECT * FROM capture_artefacts WHERE kind = 'screenshot-full'")))
    assert (shot["width"], shot["height"]) == (1280, 5000)
    steps = json.loads(next(iter(archive.db.query("SELECT steps FROM captures")))["steps"])
    assert "full-page screenshot cut at 5000 px (the page is 30016 px tall)" in steps


def test_viewport_screenshot_shows_the_page_before_the_full_page_capture_resizes_it(tmp_path, local_server,
                                                                                     chromium):
    # The full-page capture lays the page out in a window as tall as the page, and the page sees
    # that resize (this one turns red): the viewport screenshot is what the reader saw, so it comes
    # first.
    url = local_server.url("/browser/resize")
    archive, [outcome] = capture_api(tmp_path, [url], chromium)
    assert outcome.status == "captured"
    records = warc_records(archive.path)
    viewport = next(r for r in records if r["uri"] == f"urn:evarchive:screenshot-viewport:{url}")
    colours = {pixel[:3] for pixel in png_pixels(viewport["payload"], rows=4)[2]}
    assert colours == {bytes((0, 0, 255))}
    assert [r["uri"].split(":")[2] for r in records if r["type"] == "resource"] == [
        "screenshot-full", "screenshot-viewport", "pdf", "dom", "title", "text", "provenance"]


def test_page_that_never_goes_quiet_is_captured_within_the_bound_and_marked(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/poll")], chromium,
                                     quiet_timeout=1.0, quiet_ms=300)
    assert outcome.status == "captured" and outcome.findings == []
    steps = json.loads(next(iter(archive.db.query("SELECT steps FROM captures")))["steps"])
    assert any(s.startswith("the network never went quiet after loading and scrolling within 1 s") for s in steps)
    pings = [r for r in archive.db.query("SELECT target_uri FROM capture_records WHERE record_type = 'response'")
             if "/browser/ping" in r["target_uri"]]
    assert len(pings) >= 5  # what was loaded is kept


def test_https_page_with_the_untrusted_test_ca_behaves_as_insecure(tmp_path, local_server, chromium):
    url = local_server.https_url("/browser/article")
    archive, [outcome] = capture_api(tmp_path, [url], chromium)
    assert outcome.status == "captured" and outcome.findings == []
    base = url.rsplit("/browser/", 1)[0]
    uris = {r["target_uri"] for r in archive.db.query("SELECT target_uri FROM capture_records "
                                                         "WHERE record_type = 'response'")}
    assert {base + p for p in BROWSER_ARTICLE_RESOURCES} <= uris
    capture = next(iter(archive.db.query("SELECT * FROM captures")))
    assert capture["cert_sha256"] and capture["insecure"] == 1
    assert capture["cert_validated"] == 0  # the test CA is not in the system store


def test_redirect_and_wall(tmp_path, local_server, chromium):
    archive, outcomes = capture_api(tmp_path, [local_server.url("/browser/redirect"),
                                               local_server.url("/browser/wall")], chromium)
    redirect, wall = outcomes
    assert redirect.final_url == local_server.url("/browser/article") and redirect.wall is None
    assert wall.status == "captured"
    assert wall.wall == "consent: consent wall ('before you continue')"


# --------------------------------------------------------------------------- engines and processes

def test_engine_browser_without_chromium_is_exit_3(tmp_path, local_server):
    result = run_cli("capture", "--engine", "browser", "--chromium", str(tmp_path / "no-chromium"),
                     local_server.url("/plain"), archive=tmp_path / "a")
    assert result.returncode == 3
    assert "the browser engine needs Chromium" in result.stderr


def test_auto_without_chromium_falls_back_to_http_and_says_so(tmp_path, local_server):
    env = {k: v for k, v in os.environ.items() if k not in ("EVARCHIVE_ENGINE", "EVARCHIVE_CHROMIUM")}
    env["PATH"] = str(tmp_path)  # no chromium on it
    result = run_cli("capture", local_server.url("/plain"), archive=tmp_path / "a", env=env)
    assert result.returncode == 0, result.stderr
    assert "Chromium not found: captured with the HTTP engine only" in result.stderr
    db = Archive.open(tmp_path / "a").db
    assert [r["engine"] for r in db.query("SELECT engine FROM captures")] == ["http"]


def test_orphaned_chromium_of_a_killed_run_is_reported_and_ended(tmp_path, local_server):
    archive = Archive.open(tmp_path / "a")
    (archive.locks_dir / "chromium.pids").write_text("deadbeef00000000\n")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)",
                               "--evarchive-run=deadbeef00000000"])
    try:
        result = run_cli("capture", "--engine", "http", local_server.url("/plain"), archive=tmp_path / "a")
        assert result.returncode == 0, result.stderr
        assert f"left 1 Chromium processes running (pids {orphan.pid}); ended them" in result.stderr
        assert orphan.wait(timeout=10) == -9
    finally:
        orphan.kill()
    assert not (archive.locks_dir / "chromium.pids").exists()


def test_no_chromium_outlives_the_run(tmp_path, local_server, chromium):
    import asyncio

    from evarchive.browser import BrowserCaptureRun
    from evarchive.browser.processes import processes_marked

    archive = Archive.open(tmp_path / "a")
    run = BrowserCaptureRun(archive, CaptureSettings(), BrowserSettings(chromium=chromium))
    [outcome] = asyncio.run(run.run([local_server.url("/plain")]))
    assert outcome.status == "captured"
    assert processes_marked(f"--evarchive-run={run.run_mark}") == []
    assert not (archive.locks_dir / "chromium.pids").exists()


def test_check_recapture_uses_the_engine_of_the_last_good_capture(tmp_path, local_server, chromium):
    from localserver import article_page

    url = local_server.url("/article/kappa")
    archive = tmp_path / "a"
    assert run_cli("capture", "--engine", "browser", url, archive=archive).returncode == 0
    local_server.set_route("/article/kappa", body=article_page("kappa", True, 2))
    result = run_cli("check", "--recapture", url, archive=archive)
    assert result.returncode == 1, result.stderr  # drifted: a finding
    db = Archive.open(archive).db
    recaptured = db.execute("SELECT c.engine, c.status FROM check_recaptures r "
                            "JOIN captures c ON c.id = r.capture_id").fetchall()
    assert recaptured == [("browser", "ok")]


def test_what_the_recorder_refused_is_a_finding_and_data_urls_are_listed(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/bigpost")], chromium)
    assert outcome.status == "captured"
    # Chromium may retry the upload once on a new connection: each refusal is its own finding.
    assert set(outcome.findings) == {"the proxy refused a browser request: request body too large"}
    capture = next(iter(archive.db.query("SELECT findings FROM captures")))
    assert json.loads(capture["findings"]) == outcome.findings
    record = next(iter(archive.db.query("SELECT * FROM capture_records WHERE record_type = 'metadata'")))
    with open(archive.warcs_dir / record["warc_file"], "rb") as fh:
        fh.seek(record["offset"])
        meta = next(iter(ArchiveIterator(fh))).content_stream().read().decode()
    requests = json.loads(next(line for line in meta.splitlines()
                               if line.startswith("browser-requests: ")).split(": ", 1)[1])
    served = {r["url"].split(":")[0] if r["url"].startswith(("data:", "blob:")) else r["url"]: r["served"]
              for r in requests}
    assert (served["data"], served["blob"]) == ("data: URL (no network)", "blob: URL (no network)")
    assert served[local_server.url("/echo")].startswith("never reached the network: net::")


def test_export_carries_the_artefacts_and_the_page_text(article_capture, tmp_path):
    import zipfile

    out = tmp_path / "bundle"
    result = run_cli("export", str(out), article_capture["url"], archive=article_capture["archive"])
    assert result.returncode == 0, result.stdout + result.stderr
    checked = subprocess.run([sys.executable, "verify_bundle.py"], cwd=out, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr  # the standalone checker agrees
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    [shown] = data["exhibits"]
    assert shown["chromium_version"] and f"Chromium {shown['chromium_version']}" in (out / "exhibits.txt").read_text()
    forged = tmp_path / "forged"
    shutil.copytree(out, forged)
    for name in ("bundle.json", "exhibits.html", "exhibits.txt"):  # another browser, claimed everywhere alike
        text = (forged / name).read_text(encoding="utf-8").replace(shown["chromium_version"], "1.2.3.4")
        (forged / name).write_text(text, encoding="utf-8")
    names = [line.split("  ", 1)[1] for line in (forged / "SHA256SUMS").read_text().splitlines()]
    (forged / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((forged / n).read_bytes()).hexdigest()}  {n}\n" for n in names))
    caught = subprocess.run([sys.executable, "verify_bundle.py"], cwd=forged, capture_output=True, text=True)
    assert caught.returncode == 1
    assert (f"exhibit {shown['exhibit']}: the Chromium version shown, 1.2.3.4, is not the "
            f"{shown['chromium_version']} its metadata record gives") in caught.stdout
    [wacz] = list(out.rglob("*.wacz"))
    with zipfile.ZipFile(wacz) as zf:
        pages = [json.loads(line) for line in zf.read("pages/pages.jsonl").decode().splitlines()[1:]]
        uris = []
        for name in (n for n in zf.namelist() if n.startswith("archive/")):
            with zf.open(name) as fh:
                uris += [rec.rec_headers.get_header("WARC-Target-URI") for rec in ArchiveIterator(fh)]
    [page] = pages
    assert page["url"] == article_capture["url"]
    assert page["title"].endswith("(Browser article)")
    assert BROWSER_SCRIPT_TEXT in page["text"]
    url = article_capture["url"]
    assert {f"urn:evarchive:{kind}:{url}" for kind in ("screenshot-full", "pdf", "dom", "provenance")} <= set(uris)


# --------------------------------------------------------------------------- artefacts under deep verify

def _copy_of(article_capture: dict[str, Any], tmp_path: Path, name: str) -> Archive:
    import shutil

    shutil.copytree(article_capture["archive"], tmp_path / name)
    return Archive.open(tmp_path / name)


def _artefact(arch: Archive, kind: str) -> dict[str, Any]:
    return next(iter(arch.db.query("SELECT a.*, r.warc_file, r.offset, r.length FROM capture_artefacts a "
                                   "JOIN capture_records r ON r.record_id = a.record_id WHERE a.kind = ?", [kind])))


def _edit(arch: Archive, statement: str, params: list[Any]) -> None:
    """An edit behind evarchive's back, as an attacker with sqlite3 would make it."""
    import sqlite3

    conn = sqlite3.connect(arch.path / "catalogue.sqlite")
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def _replace_block(arch: Archive, art: dict[str, Any], block: bytes) -> None:
    """Put a record with the same WARC head (and so the same id and declared digests) but another
    block of the same length in place of the artefact's gzip member, as long as the original member
    (padded in the gzip FNAME field), so that every other record stays where it was."""
    path = arch.warcs_dir / art["warc_file"]
    data = bytearray(path.read_bytes())
    start, length = art["offset"], art["length"]
    record = zlib.decompress(bytes(data[start:start + length]), 47)
    head, _, rest = record.partition(b"\r\n\r\n")
    assert len(rest) - 4 == len(block)
    new = head + b"\r\n\r\n" + block + b"\r\n\r\n"
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = squeeze.compress(new) + squeeze.flush()
    pad = length - (10 + 1 + len(raw) + 8)
    assert pad >= 0
    member = (b"\x1f\x8b\x08\x08" + bytes(6) + b"p" * pad + b"\x00" + raw
              + struct.pack("<II", zlib.crc32(new), len(new) & 0xFFFFFFFF))
    assert len(member) == length
    data[start:start + length] = member
    path.write_bytes(bytes(data))


def _artefact_findings(arch: Archive) -> list[tuple[str, int | None, str | None]]:
    from evarchive.verify import verify_archive

    result = verify_archive(arch, deep=True, record=False)
    return [(p.kind, p.capture_id, p.record_id) for p in result.failures if p.kind.startswith("artefact-")]


def test_deep_verify_holds_artefact_rows_and_their_records_together(article_capture, tmp_path):
    """Each artefact row names its capture's resource record, at the place the catalogue says,
    whose bytes hash as the row says; each artefact record has its row. Edits of the WARC bytes
    or of the rows are named findings, exit 1."""
    # The visible text, replaced by as many x's: same length, same record id, other bytes.
    arch = _copy_of(article_capture, tmp_path, "bytes")
    text = _artefact(arch, "text")
    _replace_block(arch, text, b"x" * text["size"])
    assert _artefact_findings(arch) == [("artefact-changed", text["capture_id"], text["record_id"])]

    # The PDF's row says another SHA-256: its bytes no longer hash as catalogued.
    arch = _copy_of(article_capture, tmp_path, "row-sha256")
    pdf = _artefact(arch, "pdf")
    _edit(arch, "UPDATE capture_artefacts SET sha256 = ? WHERE id = ?",
          [hashlib.sha256(b"other").hexdigest(), pdf["id"]])
    assert _artefact_findings(arch) == [("artefact-changed", pdf["capture_id"], pdf["record_id"])]

    # The screenshot's record row placed one byte off: no record starts where it says.
    arch = _copy_of(article_capture, tmp_path, "offset")
    shot = _artefact(arch, "screenshot-full")
    _edit(arch, "UPDATE capture_records SET offset = offset + 1 WHERE record_id = ?", [shot["record_id"]])
    assert _artefact_findings(arch) == [("artefact-missing", shot["capture_id"], shot["record_id"])]

    # The title's row names a record that does not exist; its real record is left without a row.
    arch = _copy_of(article_capture, tmp_path, "record-id")
    title = _artefact(arch, "title")
    _edit(arch, "UPDATE capture_artefacts SET record_id = '<urn:uuid:gone>' WHERE id = ?", [title["id"]])
    assert _artefact_findings(arch) == [("artefact-no-record", title["capture_id"], "<urn:uuid:gone>"),
                                        ("artefact-unlisted", title["capture_id"], title["record_id"])]

    # The DOM's row deleted: its record in the WARC, linked to the capture, has no row.
    arch = _copy_of(article_capture, tmp_path, "row-deleted")
    dom = _artefact(arch, "dom")
    _edit(arch, "DELETE FROM capture_artefacts WHERE id = ?", [dom["id"]])
    assert _artefact_findings(arch) == [("artefact-unlisted", dom["capture_id"], dom["record_id"])]
    verify = run_cli("verify", "--deep", "--json", archive=arch.path)
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert [(p["kind"], p["record_id"]) for p in json.loads(verify.stdout)["problems"]] == [
        ("artefact-unlisted", dom["record_id"])]


def test_verify_knows_every_artefact_kind_the_browser_writes():
    from evarchive.browser.evidence import ARTEFACT_KINDS
    from evarchive.verify.artefacts import ARTEFACT_KINDS as KNOWN

    assert set(KNOWN) == set(ARTEFACT_KINDS)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_kill_9_leaves_no_chromium_behind_after_the_next_run(tmp_path, local_server, chromium):
    import signal
    import time

    from evarchive.browser.processes import processes_marked, with_descendants

    archive = tmp_path / "a"
    victim = subprocess.Popen([sys.executable, "-m", "evarchive.cli", "capture", "--engine", "browser",
                               local_server.url("/plain"), local_server.url("/browser/poll"),
                               "--archive", str(archive)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        local_server.wait_for_exchange("/browser/ping", timeout=60)  # the browser is at work
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    [mark] = (archive / "locks" / "chromium.pids").read_text().split()
    tree = with_descendants(processes_marked(f"--evarchive-run={mark}"))
    # Whether Chromium notices its parent's death before the next run starts is a race; the next
    # run ends whatever is left either way, and forgets the mark.
    result = run_cli("capture", "--engine", "http", local_server.url("/plain"), archive=archive)
    assert result.returncode == 0, result.stderr
    assert not (archive / "locks" / "chromium.pids").exists()
    deadline = time.monotonic() + 10

    def alive() -> list[int]:  # the browser, its renderers and zygotes
        return processes_marked(f"--evarchive-run={mark}") + [p for p in tree if b"chromium" in _cmdline(p)]

    while alive() and time.monotonic() < deadline:
        time.sleep(0.1)  # SIGKILL is asynchronous: wait for the kernel, not for a fixed time
    assert alive() == []
    verify = run_cli("verify", "--deep", archive=archive)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_pywb_replays_the_page_with_its_script_data_and_stylesheet(article_capture, tmp_path, chromium):
    import asyncio

    from playwright.async_api import async_playwright
    from thirdparty import pywb_collection

    files = sorted(str(p) for p in (article_capture["archive"] / "warcs").glob("*.warc.gz"))

    async def rendered(url: str) -> tuple[str, str]:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, chromium_sandbox=os.geteuid() != 0)
            try:
                page = await browser.new_page()
                await page.goto(url, wait_until="networkidle", timeout=60000)
                # pywb shows the archived page in an iframe under its banner
                frame = next(f for f in page.frames if "mp_/" in f.url)
                await frame.wait_for_function(f"document.body.innerText.includes({BROWSER_SCRIPT_TEXT!r})",
                                              timeout=30000)
                colour = await frame.evaluate("getComputedStyle(document.querySelector('h1')).color")
                return await frame.evaluate("document.body.innerText"), colour
            finally:
                await browser.close()

    with pywb_collection(tmp_path / "pywb", "ev", *files) as collection:
        text, colour = asyncio.run(rendered(f"{collection}/2026/{article_capture['url']}"))
    assert BROWSER_SCRIPT_TEXT in text  # app.js and data.json came from the WARC
    assert colour == "rgb(160, 16, 16)"  # and so did the stylesheet


def test_iframe_from_another_host_and_a_cited_pdf(tmp_path, multi_host_server, chromium):
    from urllib.parse import quote

    server = multi_host_server
    framed = server.url("/browser/article", host_ip="127.0.0.2")
    pdf = server.url("/browser/doc.pdf")
    archive, outcomes = capture_api(tmp_path, [server.url(f"/browser/iframe?src={quote(framed, safe='')}"), pdf],
                                    chromium)
    frame_page, cited_pdf = outcomes
    assert frame_page.status == "captured" and frame_page.findings == []
    responses = {r["target_uri"]: r for r in archive.db.query(
        "SELECT r.target_uri, r.payload_sha256, c.url_requested FROM capture_records r "
        "JOIN captures c ON c.id = r.capture_id WHERE r.record_type = 'response'")}
    framed_base = framed.rsplit("/browser/", 1)[0]
    for path in BROWSER_ARTICLE_RESOURCES:  # the other host's page and everything it needed
        assert responses[framed_base + path]["payload_sha256"] == hashlib.sha256(BROWSER_ASSETS[path][1]).hexdigest()
    # A cited PDF is the document itself, recorded as served, whatever the viewer shows.
    assert cited_pdf.status == "captured" and cited_pdf.findings == []
    assert cited_pdf.payload_sha256 == hashlib.sha256(BROWSER_ASSETS["/browser/doc.pdf"][1]).hexdigest()


def test_service_workers_are_blocked(tmp_path, local_server, chromium):
    # quiet_ms: the page waits 300 ms for a worker to take control before it fetches
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/sw")], chromium, quiet_ms=1500)
    assert outcome.status == "captured" and outcome.findings == []
    text = next(iter(archive.db.query("SELECT * FROM capture_records WHERE target_uri LIKE 'urn:evarchive:text:%'")))
    with open(archive.warcs_dir / text["warc_file"], "rb") as fh:
        fh.seek(text["offset"])
        visible = next(iter(ArchiveIterator(fh))).content_stream().read().decode()
    # Chromium lets the page register its worker, but the worker never answers a request: the
    # page's fetch() went through the recorder, not to the worker's canned answer.
    assert BROWSER_SCRIPT_TEXT in visible and "from the worker" not in visible


def test_a_chromium_that_does_not_start_is_exit_3(tmp_path, local_server):
    result = run_cli("capture", "--engine", "browser", "--chromium", "/bin/false", local_server.url("/plain"),
                     archive=tmp_path / "a")
    assert result.returncode == 3
    assert "Chromium (/bin/false) did not start" in result.stderr
    db = Archive.open(tmp_path / "a").db
    assert db.execute("SELECT COUNT(*) FROM captures").fetchone()[0] == 0


def test_memory_bound_cuts_the_page_and_keeps_what_was_recorded(tmp_path, local_server, chromium):
    # A bound no browser fits in: the first sample cuts the page that never goes quiet.
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/poll")], chromium,
                                     max_memory_mb=1, quiet_timeout=60)
    steps = json.loads(next(iter(archive.db.query("SELECT steps FROM captures")))["steps"])
    import re

    assert re.fullmatch(r"cut: evarchive and its browser used \d+ MB, over the bound of 1 MB; what had "
                        r"loaded is kept", steps[0])
    assert outcome.artefacts == ["provenance"]  # cut long before the page went quiet: no screenshot
    assert outcome.findings == []
    verify = run_cli("verify", "--deep", archive=tmp_path / "a")
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --------------------------------------------------------------------------- fidelity traps

def browser_requests(archive: Archive) -> list[dict[str, Any]]:
    """The accounting rows of the (only) capture, from its metadata record."""
    record = next(iter(archive.db.query("SELECT * FROM capture_records WHERE record_type = 'metadata'")))
    with open(archive.warcs_dir / record["warc_file"], "rb") as fh:
        fh.seek(record["offset"])
        meta = next(iter(ArchiveIterator(fh))).content_stream().read().decode()
    return json.loads(next(line for line in meta.splitlines()
                           if line.startswith("browser-requests: ")).split(": ", 1)[1])


def artefact_bytes(archive: Archive, artefact: dict[str, Any]) -> bytes:
    [record] = archive.db.query("SELECT * FROM capture_records WHERE record_id = ?", [artefact["record_id"]])
    with open(archive.warcs_dir / record["warc_file"], "rb") as fh:
        fh.seek(record["offset"])
        return next(iter(ArchiveIterator(fh))).content_stream().read()


def test_media_range_requests_are_recorded_as_received(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/media")], chromium)
    assert outcome.status == "captured" and outcome.findings == []
    tone = local_server.url("/browser/tone.wav")
    records = [r for r in warc_records(tmp_path / "a") if r["uri"] == tone]
    responses = [r for r in records if r["type"] == "response"]
    assert responses, "the audio element never asked for its media"
    for response in responses:
        # Each answer as the server gave it: 206, its Content-Range, exactly the bytes of that range.
        assert response["status"] == "206"
        first, last = map(int, response["http"].get_header("Content-Range")
                          .removeprefix("bytes ").split("/")[0].split("-"))
        assert response["http"].get_header("Content-Range") == f"bytes {first}-{last}/{len(BROWSER_TONE)}"
        assert last - first + 1 <= MEDIA_RANGE_CAP
        assert response["payload"] == BROWSER_TONE[first:last + 1]
    assert responses[0]["http"].get_header("Content-Range").startswith("bytes 0-")
    for request in (r for r in records if r["type"] == "request"):
        assert request["http"].get_header("Range", "").startswith("bytes=")
        # Media asks for identity: a coded range would not be the bytes asked for.
        assert request["http"].get_header("Accept-Encoding") == "identity"
    rows = [r for r in browser_requests(archive) if r["url"] == tone]
    assert rows and all(r["served"] == "recorded" and r["status"] == 206 for r in rows)


def test_a_websocket_is_refused_before_the_network_and_named(tmp_path, local_server, chromium):
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/websocket")], chromium)
    assert outcome.status == "captured" and outcome.findings == []
    ws = local_server.url("/browser/ws").replace("http://", "ws://")
    [row] = [r for r in browser_requests(archive) if r["type"] == "websocket"]
    assert (row["url"], row["served"]) == (ws, "WebSocket: refused by the recorder, never reached the "
                                               "network (WebSocket messages are not recorded)")
    steps = json.loads(next(iter(archive.db.query("SELECT steps FROM captures")))["steps"])
    assert steps == [f"refused a WebSocket ({ws}): WebSocket messages are not recorded, so none "
                     "were let through"]
    assert local_server.exchanges("/browser/ws") == []
    dom = next(iter(archive.db.query("SELECT * FROM capture_artefacts WHERE kind = 'dom'")))
    assert b'<p id="ws">closed 1008</p>' in artefact_bytes(archive, dom)  # the page was told


def test_a_large_subresource_streams_through_with_bounded_memory(tmp_path, local_server, chromium):
    from test_bounds import run_measured

    size = 48 << 20
    url = local_server.url(f"/browser/bigfetch?size={size}")
    done = run_measured(["capture", "--engine", "browser", "--chromium", chromium, url,
                         "--archive", str(tmp_path / "a")], tmp_path, deadline=120)
    assert done.code == 0, done.err
    # The body passed through a spool on disk and was relayed in pieces: evarchive's own process
    # never held it (Chromium's processes are bounded separately, by the engine's memory bound).
    assert done.peak_mb < 200, f"{done.peak_mb:.0f} MB"
    archive = Archive.open(tmp_path / "a")
    large = local_server.url(f"/large?size={size}")
    [row] = archive.db.query("SELECT payload_sha256 FROM capture_records WHERE record_type = 'response' "
                             "AND target_uri = ?", [large])
    assert row["payload_sha256"] == large_body_sha256(size)
    text = next(iter(archive.db.query("SELECT * FROM capture_artefacts WHERE kind = 'text'")))
    assert f"fetched {size}".encode() in artefact_bytes(archive, text)  # the browser got it whole
    [accounted] = [r for r in browser_requests(archive) if r["url"] == large]
    assert (accounted["served"], accounted["body_compared"], accounted["note"]) == (
        "recorded", False, "larger than 16 MiB: not compared")


def test_the_browser_gets_each_piece_as_it_is_recorded(tmp_path, local_server, chromium):
    # /drip sends three pieces 1.2 s apart (the server holds one piece back until the next is
    # ready): relayed as it is spooled, the first piece reaches the page's script about 1.2 s
    # before the end; buffered whole, all would come at once.
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/stream")], chromium)
    assert outcome.status == "captured" and outcome.findings == []
    text = artefact_bytes(archive, next(iter(archive.db.query(
        "SELECT * FROM capture_artefacts WHERE kind = 'text'")))).decode()
    gap = int(text.split("first piece ", 1)[1].split(" ms", 1)[0])
    assert gap >= 600, text
    [row] = [r for r in browser_requests(archive) if "/drip" in r["url"]]
    assert (row["served"], row["body_compared"]) == ("recorded", True)


def test_a_body_cut_at_max_body_reaches_the_browser_cut(tmp_path, local_server, chromium):
    size = 3 << 20
    archive = Archive.open(tmp_path / "a")
    [outcome] = capture_with_browser(archive, [local_server.url(f"/browser/bigfetch?size={size}")],
                                     CaptureSettings(max_body=1 << 20), BrowserSettings(chromium=chromium))
    assert outcome.status == "captured"
    large = local_server.url(f"/large?size={size}")
    [record] = archive.db.query("SELECT * FROM capture_records WHERE record_type = 'response' "
                                "AND target_uri = ?", [large])
    assert record["payload_sha256"] == hashlib.sha256(b"".join(
        __import__("localserver").large_body_pieces(1 << 20))).hexdigest()
    [accounted] = [r for r in browser_requests(archive) if r["url"] == large]
    assert (accounted["served"], accounted["body_compared"], accounted["note"]) == (
        "recorded", False, "cut at the body limit (--max-body): the browser got it cut short too")
    # The page's script never saw a complete body: the browser was not handed the cut one as whole.
    text = next(iter(archive.db.query("SELECT * FROM capture_artefacts WHERE kind = 'text'")))
    assert b"pending" in artefact_bytes(archive, text)


def test_a_gzip_page_stores_the_decoded_hash_of_its_own_response_only(tmp_path, local_server, chromium):
    import gzip

    from evarchive import verify_bundle

    html = (b"<!DOCTYPE html><html><head><title>Coded page</title></head><body><h1>Coded page</h1>"
            b"<img src=\"/browser/bg.png\">" + b"<p>The same words, many times.</p>" * 200 + b"</body></html>")
    local_server.set_route("/browser/coded-page", body=gzip.compress(html, mtime=0),
                           headers=[("Content-Encoding", "gzip")])
    archive, [outcome] = capture_api(tmp_path, [local_server.url("/browser/coded-page")], chromium)
    assert outcome.status == "captured"
    responses = list(archive.db.query("SELECT * FROM capture_records WHERE record_type = 'response' ORDER BY offset"))
    page = responses[-1]
    assert page["target_uri"] == local_server.url("/browser/coded-page")
    assert local_server.url("/browser/bg.png") in {r["target_uri"] for r in responses}
    stored = {r["member_sha256"]: (r["decoded_sha256"], r["decoded_note"])
              for r in archive.db.query("SELECT * FROM decoded_contents")}
    assert stored == {page["member_sha256"]: (hashlib.sha256(html).hexdigest(), None)}
    with open(tmp_path / "a" / "warcs" / page["warc_file"], "rb") as fh:  # what the clerk's verifier finds
        fh.seek(page["offset"])
        decoder = verify_bundle.ContentDecoder(verify_bundle.Budget(verify_bundle.UNBOUNDED))
        assert verify_bundle.parse_member([fh.read(page["length"])], decoder)[3] is None
    assert decoder.result() == stored[page["member_sha256"]]
