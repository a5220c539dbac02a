"""Third-party tools judge the WARCs: warcio check, cdxj-indexer, and replay in pywb; pywb's
Memento TimeMaps of our own WARCs are what ``--mementos`` reads."""

from __future__ import annotations

import gzip
import datetime as dt
import json
import sqlite3
import subprocess

import httpx
import pytest
from thirdparty import pywb_collection, tool

from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls

pytestmark = pytest.mark.slow


@pytest.fixture
def captured(tmp_path, local_server):
    arch = Archive.open(tmp_path / "archive")
    settings = CaptureSettings(ca_file=local_server.ca_pem_path)
    urls = [local_server.url("/plain"), local_server.url("/gzip"), local_server.url("/chunked"),
            local_server.https_url("/plain"), local_server.url("/redirect/2")]
    outcomes = capture_urls(arch, urls, settings)
    capture_urls(arch, [local_server.url("/plain")], settings)  # a revisit
    assert {o.status for o in outcomes} == {"captured"}
    yield arch, local_server
    arch.close()


def test_warcio_check_and_cdxj_indexer(captured):
    arch, server = captured
    files = sorted(str(p) for p in arch.warcs_dir.glob("*.warc.gz"))
    check = subprocess.run([tool("warcio"), "check", "-v", *files], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    index = subprocess.run([tool("cdxj-indexer"), *files], capture_output=True, text=True)
    assert index.returncode == 0, index.stderr
    lines = [line for line in index.stdout.splitlines() if line.strip()]
    entries = [json.loads(line.split(" ", 2)[2]) for line in lines]
    urls = {e["url"] for e in entries}
    assert server.url("/plain") in urls and server.https_url("/plain") in urls
    assert any(e.get("mime") == "warc/revisit" for e in entries)
    # The certificate record is indexed under its urn:, never under the page's URL.
    assert not any(e["url"] == server.https_url("/plain") and "pem" in e.get("mime", "") for e in entries)


def test_pywb_replays_original_bytes(captured, tmp_path):
    arch, server = captured
    files = sorted(str(p) for p in arch.warcs_dir.glob("*.warc.gz"))
    with pywb_collection(tmp_path / "pywb", "ev", *files) as collection:
        base = f"{collection}/2026id_/"
        for path in ("/plain", "/chunked"):
            served = server.last_exchange(path).body
            replay = httpx.get(base + server.url(path), timeout=10)
            assert replay.status_code == 200
            assert replay.content == served
        gz = httpx.get(base + server.url("/gzip"), timeout=10)
        assert gz.content == gzip.decompress(server.last_exchange("/gzip").body)
        https = httpx.get(base + server.https_url("/plain"), timeout=10)
        assert https.status_code == 200 and b"-----BEGIN CERTIFICATE" not in https.content


def _warc_date(archive, url: str) -> dt.datetime:
    """The WARC-Date of the capture of ``url``, from the catalogue: the moment pywb reports."""
    with sqlite3.connect(archive / "catalogue.sqlite") as db:
        (value,) = db.execute("SELECT warc_date FROM captures WHERE url_requested = ? AND status = 'ok'",
                              (url,)).fetchone()
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


def test_show_and_rot_find_the_memento_a_real_pywb_holds(local_server, tmp_path, capsys):
    from evarchive import cli

    local_server.set_route("/interop/doomed", body="<html><body><p>The minister said so.</p></body></html>",
                           content_type="text/html")
    plain, doomed = local_server.url("/plain"), local_server.url("/interop/doomed")
    archive = tmp_path / "archive"
    assert cli.main(["capture", plain, doomed, "--archive", str(archive), "--quiet"]) == 0
    files = sorted(str(p) for p in (archive / "warcs").glob("*.warc.gz"))
    with pywb_collection(tmp_path / "pywb", "ev", *files) as collection:
        # the README's form for a self-hosted pywb: its TimeMap endpoint, the source appended
        assert cli.main(["settings", "timemaps", f"{collection}/timemap/link/", "--archive", str(archive)]) == 0
        capsys.readouterr()
        assert cli.main(["show", plain, "--archive", str(archive), "--mementos"]) == 0
        when = _warc_date(archive, plain)
        stamp = when.strftime("%Y%m%d%H%M%S")
        assert (f"public mementos: 1; nearest the latest capture: {collection}/{stamp}mp_/{plain} "
                f"({when:%Y-%m-%dT%H:%M:%SZ}, 127.0.0.1)") in capsys.readouterr().out
        local_server.set_route("/interop/doomed", status=404, body="gone")
        assert cli.main(["check", doomed, "--archive", str(archive), "--quiet", "--retries", "0"]) == 0
        capsys.readouterr()
        assert cli.main(["rot", "--archive", str(archive), "--mementos"]) == 0
        when = _warc_date(archive, doomed)
        assert (f"public memento: {collection}/{when:%Y%m%d%H%M%S}mp_/{doomed} "
                f"({when:%Y-%m-%dT%H:%M:%SZ}, 127.0.0.1)") in capsys.readouterr().out
