"""What a clerk reads about each page is right: the two hashes of a page (as served, and decoded),
and captures that are not the cited page (a soft 404, a wall, an error page) never count as
support. Real loopback server, real captures, real export, the bundle's own verifier."""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import zlib
from pathlib import Path
from typing import Any

from test_export import TITLE, Setup, load, page, run_verifier, setup  # noqa: F401 - the fixture

from evarchive.capture import capture_urls
from evarchive.reports import import_report

ARTICLE = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Compressed article</title></head><body>"
           "<article><h1>Compressed article</h1>" + "<p>Witnesses describe the events of that night.</p>" * 60
           + "</article></body></html>").encode()


def resum(bundle: Path) -> None:
    """Regenerate SHA256SUMS after an edit, as a forger would."""
    names = [line.split("  ", 1)[1] for line in (bundle / "SHA256SUMS").read_text().splitlines()]
    (bundle / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((bundle / n).read_bytes()).hexdigest()}  {n}\n" for n in names))


def add_claim(setup: Setup, text: str, url: str) -> None:
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\n{text}\n\n{url}\n")
    import_report(setup.arch.db, setup.report, TITLE)


def csv_rows(bundle: Path) -> list[dict[str, str]]:
    with open(bundle / "exhibits.csv", encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- two hashes per page

def test_a_gzip_page_shows_the_hash_as_served_and_the_hash_of_its_decoded_content(
        setup: Setup, local_server: Any) -> None:
    served = gzip.compress(ARTICLE, mtime=0)
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
    deflated = raw_deflate.compress(ARTICLE) + raw_deflate.flush()
    local_server.set_route("/content/gzip", body=served, headers=[("Content-Encoding", "gzip")])
    local_server.set_route("/content/deflate", body=deflated, headers=[("Content-Encoding", "deflate")])
    urls = {"gzip": local_server.url("/content/gzip"), "deflate": local_server.url("/content/deflate")}
    add_claim(setup, "A claim resting on a compressed article.", urls["gzip"])
    add_claim(setup, "A claim resting on a deflated article.", urls["deflate"])
    assert {o.status for o in capture_urls(setup.arch, list(urls.values()), setup.settings)} == {"captured"}
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0

    data = load(out)
    by_url = {e["source_url"]: e for e in data["exhibits"] if e["kind_of_record"] == "response"}
    decoded = hashlib.sha256(ARTICLE).hexdigest()
    for coding, body in (("gzip", served), ("deflate", deflated)):
        ex = by_url[urls[coding]]
        assert (ex["content_encoding"], ex["payload_sha256"], ex["decoded_sha256"], ex["decoded_note"]) == (
            coding, hashlib.sha256(body).hexdigest(), decoded, None)
    plain = by_url[setup.urls["a"]]  # no content coding: the decoded content is the payload itself
    assert (plain["content_encoding"], plain["decoded_sha256"]) == (None, plain["payload_sha256"])
    revisit = next(e for e in data["exhibits"] if e["revisit_of_exhibit"])
    assert revisit["decoded_sha256"] == plain["decoded_sha256"]

    ex = by_url[urls["gzip"]]
    text = (out / "exhibits.txt").read_text(encoding="utf-8")
    page_html = html.unescape((out / "exhibits.html").read_text(encoding="utf-8"))
    for shown in (text, page_html):
        assert f"{ex['payload_sha256']} (the body's bytes as served, with Content-Encoding: gzip)" in shown
        assert f"{decoded} (the content with the gzip coding undone" in shown
        assert "SHA-256 as served" in shown and "SHA-256 decoded" in shown
    [row] = [r for r in csv_rows(out) if r["exhibit"] == str(ex["exhibit"])]
    assert (row["payload_sha256"], row["content_encoding"], row["decoded_sha256"]) == (
        ex["payload_sha256"], "gzip", decoded)

    result = run_verifier(out)
    assert result.returncode == 0, result.stdout


def test_a_tampered_decoded_hash_is_caught_even_with_a_new_manifest(setup: Setup, local_server: Any) -> None:
    local_server.set_route("/content/gzip", body=gzip.compress(ARTICLE, mtime=0), headers=[("Content-Encoding", "gzip")])
    add_claim(setup, "A claim resting on a compressed article.", local_server.url("/content/gzip"))
    capture_urls(setup.arch, [local_server.url("/content/gzip")], setup.settings)
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    ex = next(e for e in load(out)["exhibits"] if e["content_encoding"] == "gzip")
    # The forger makes every file say the hash of some other content, and re-sums the bundle.
    forged = hashlib.sha256(b"another page").hexdigest()
    for name in ("bundle.json", "exhibits.csv", "exhibits.html", "exhibits.txt"):
        path = out / name
        path.write_bytes(path.read_bytes().replace(ex["decoded_sha256"].encode(), forged.encode()))
    resum(out)
    result = run_verifier(out)
    assert result.returncode == 1
    assert (f"exhibit {ex['exhibit']} ({ex['main_record']}): the decoded content's SHA-256 is "
            f"{ex['decoded_sha256']}, the index says {forged}") in result.stdout


def test_an_uncoded_page_whose_decoded_hash_is_edited_is_caught(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    data = load(out)
    ex = next(e for e in data["exhibits"] if e["source_url"] == setup.urls["a"] and not e["revisit_of_exhibit"])
    assert ex["decoded_sha256"] == hashlib.sha256(page("Page A").encode()).hexdigest()
    text = (out / "bundle.json").read_text(encoding="utf-8")
    (out / "bundle.json").write_text(text.replace(f'"decoded_sha256": "{ex["decoded_sha256"]}"',
                                                  '"decoded_sha256": "' + "1" * 64 + '"', 1), encoding="utf-8")
    resum(out)
    result = run_verifier(out)
    assert result.returncode == 1
    assert f"exhibit {ex['exhibit']} ({ex['main_record']}): the decoded content's SHA-256 is" in result.stdout
