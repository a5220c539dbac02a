"""What a clerk reads about each page is right: the two hashes of a page (as served, and decoded),
and captures that are not the cited page (a soft 404, a wall, an error page) never count as
support. Real loopback server, real captures, real export, the bundle's own verifier."""

from __future__ import annotations

import csv
import gzip
import hashlib
import html
import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from test_export import TITLE, Setup, load, page

from evarchive.capture import capture_urls
from evarchive.reports import import_report

ARTICLE = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Compressed article</title></head><body>"
           "<article><h1>Compressed article</h1>" + "<p>Witnesses describe the events of that night.</p>" * 60
           + "</article></body></html>").encode()


@pytest.fixture(name="setup")
def setup_fixture(tmp_path: Path, local_server: Any):  # type: ignore[no-untyped-def]
    s = Setup(tmp_path, local_server)
    yield s
    s.close()


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
    local_server.set_route("/content/gzip", body=gzip.compress(ARTICLE, mtime=0),
                           headers=[("Content-Encoding", "gzip")])
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


# --------------------------------------------------------------------------- what counts as support

SOFT_404 = ("<!DOCTYPE html><html><head><title>Page not found</title></head><body><h1>Sorry</h1>"
            "<p>The page you asked for has moved or never existed. Try the search.</p></body></html>")
CONSENT = ("<!DOCTYPE html><html><head><title>Example News</title></head><body><div class=\"cmp\">"
           "<h2>We value your privacy</h2><p>We and our partners use cookies.</p>"
           "<button>Accept all cookies</button><button>Manage your cookie choices</button></div></body></html>")


class Walls:
    """Four more claims, each on one kind of page: a 200 'Page not found', a consent wall, a 404,
    and a gzip-encoded article (the only one that is the cited page)."""

    def __init__(self, setup: Setup, server: Any) -> None:
        server.set_route("/content/soft404", body=SOFT_404)
        server.set_route("/content/consent", body=CONSENT)
        server.set_route("/content/missing", status=404, body="<html><title>Not Found</title>Not Found</html>")
        server.set_route("/content/article", body=gzip.compress(ARTICLE, mtime=0),
                         headers=[("Content-Encoding", "gzip")])
        self.urls = {k: server.url(f"/content/{k}") for k in ("soft404", "consent", "missing", "article")}
        for kind, url in self.urls.items():
            add_claim(setup, f"A claim resting on the {kind} page.", url)
        outcomes = {o.url: o for o in capture_urls(setup.arch, list(self.urls.values()), setup.settings)}
        assert outcomes[self.urls["missing"]].status == "failed"
        self.claims = {kind: 4 + i for i, kind in enumerate(self.urls)}  # ordinals after the three of Setup


def test_captures_are_classified_when_made(setup: Setup, local_server: Any) -> None:
    walls = Walls(setup, local_server)
    rows = {r["url_requested"]: r for r in setup.arch.db.query(
        "SELECT url_requested, status, wall, content_verdict FROM captures ORDER BY id")}
    assert rows[walls.urls["soft404"]]["content_verdict"] == "soft 404: 200, but the title says 'Page not found'"
    assert rows[walls.urls["soft404"]]["wall"] is None
    assert rows[walls.urls["consent"]]["content_verdict"] == "consent wall ('we value your privacy')"
    assert rows[walls.urls["consent"]]["wall"] == "consent: consent wall ('we value your privacy')"
    assert rows[walls.urls["article"]]["content_verdict"] == "page"
    assert rows[setup.urls["a"]]["content_verdict"] == "page"
    assert (rows[walls.urls["missing"]]["status"], rows[walls.urls["missing"]]["content_verdict"]) == ("failed", None)
    # The verdict is in the capture's custody entry, so the log vouches for it.
    details = [json.loads(d) for (d,) in setup.arch.db.execute(
        "SELECT details FROM custody_log WHERE event = 'capture'")]
    vouched = {d["capture"]["url_requested"]: d["capture"].get("content_verdict") for d in details}
    assert vouched[walls.urls["soft404"]] == rows[walls.urls["soft404"]]["content_verdict"]


def test_claims_reports_archive_and_rot_agree_on_what_supports_a_claim(setup: Setup, local_server: Any,
                                                                       capsys: Any) -> None:
    from evarchive import cli
    from evarchive.check.rot import source_states
    from evarchive.reports import list_reports, report_claims, sources_to_capture

    walls = Walls(setup, local_server)
    db = setup.arch.db
    claims = {c["ordinal"]: c for c in report_claims(db, TITLE, setup.arch.warcs_dir)}
    assert [claims[n]["preserved"] for n in sorted(claims)] == [True, True, True, False, False, False, True]
    soft = claims[walls.claims["soft404"]]["sources"][0]
    assert soft["not_the_page"] == "soft 404: 200, but the title says 'Page not found'"
    [report] = list_reports(db, setup.arch.warcs_dir)
    assert (report["claims_preserved"], report["sources_archived"]) == (4, 4)  # a, b, r and the article
    version = report["version_id"]
    assert sources_to_capture(db, version, setup.arch.warcs_dir) == [
        walls.urls["soft404"], walls.urls["consent"], walls.urls["missing"]]  # `archive` tries them again
    states = source_states(setup.arch)
    by_url = {s["url"]: s for s in states.values()}
    assert by_url[walls.urls["soft404"]]["archived"] is None and by_url[walls.urls["consent"]]["archived"] is None
    assert by_url[walls.urls["article"]]["archived"]["intact"] is True

    assert cli.main(["claims", "--archive", str(setup.archive_dir), "--json"]) == 0
    shown = {c["ordinal"]: c["preserved"] for c in json.loads(capsys.readouterr().out)}
    assert shown == {n: c["preserved"] for n, c in claims.items()}


def test_the_bundle_says_why_a_capture_that_is_not_the_page_does_not_count(setup: Setup, local_server: Any) -> None:
    walls = Walls(setup, local_server)
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 1  # three claims have no capture of their page
    data = load(out)
    supported = {c["claim"]: c["supported"] for c in data["claims"]}
    assert supported == {1: True, 2: True, 3: True, 4: False, 5: False, 6: False, 7: True}
    by_url = {e["source_url"]: e for e in data["exhibits"]}
    soft, consent = by_url[walls.urls["soft404"]], by_url[walls.urls["consent"]]
    assert (soft["supports"], soft["not_support_reason"]) == (
        False, "soft 404: 200, but the title says 'Page not found'")
    assert (consent["supports"], consent["not_support_reason"]) == (False, "consent wall ('we value your privacy')")
    assert by_url[walls.urls["article"]]["supports"] is True
    claim = {c["claim"]: c for c in data["claims"]}
    assert claim[4]["exhibits"] == [soft["exhibit"]] and claim[4]["supporting_exhibits"] == []
    [missing] = claim[6]["citations"]
    assert missing["exhibits"] == [] and "failed (HTTP 404)" in missing["why_no_exhibit"]

    text = (out / "exhibits.txt").read_text(encoding="utf-8")
    page_html = html.unescape((out / "exhibits.html").read_text(encoding="utf-8"))
    why = (f"captured, but not the cited page: exhibit {soft['exhibit']}: "
           "soft 404: 200, but the title says 'Page not found'")
    for shown in (text, page_html):
        assert why in shown
        assert "Counts as support" in shown
        assert "NO: this capture is not the cited page (consent wall ('we value your privacy'))" in shown
        assert "NOT SUPPORTED" in shown
    assert f"exhibit {soft['exhibit']} (DOES NOT COUNT: {why})" in text
    rows = csv_rows(out)
    [soft_row] = [r for r in rows if r["exhibit"] == str(soft["exhibit"])]
    assert soft_row["counts_as_support"] == ("NO: this capture is not the cited page "
                                             "(soft 404: 200, but the title says 'Page not found')")
    [missing_row] = [r for r in rows if r["claim"] == "6"]
    assert missing_row["kind"].startswith("NO INTACT CAPTURE: the latest capture, ")

    result = run_verifier(out)
    assert result.returncode == 0, result.stdout


def test_a_bundle_that_counts_a_soft_404_as_support_fails_verification(setup: Setup, local_server: Any) -> None:
    walls = Walls(setup, local_server)
    out = setup.tmp / "bundle"
    setup.export(out, "--report", TITLE)
    text = (out / "bundle.json").read_text(encoding="utf-8")
    data = load(out)
    soft = next(e for e in data["exhibits"] if e["source_url"] == walls.urls["soft404"])
    # The forger turns the soft 404 into support in bundle.json and re-sums the bundle.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f'"exhibit": {soft["exhibit"]},' in line:
            lines[i] = line.replace('"supports": false', '"supports": true')
        if '"claim": 4,' in line:
            lines[i] = line.replace('"supporting_exhibits": []', f'"supporting_exhibits": [{soft["exhibit"]}]') \
                .replace('"supported": false', '"supported": true')
    (out / "bundle.json").write_text("\n".join(lines) + "\n", encoding="utf-8")
    resum(out)
    result = run_verifier(out)
    assert result.returncode == 1
    assert f"exhibit {soft['exhibit']}: whether it counts as support differ from custody-log entry" in result.stdout


def test_a_capture_made_before_classification_counts_and_says_it_was_not_classified() -> None:
    from evarchive.export import support_words as _support_words
    from evarchive.queries import not_support_reason

    old = {"status": "ok", "content_verdict": None, "wall": None, "http_status": 200}
    assert not_support_reason(old) is None
    assert _support_words({"supports": True, "content_verdict": None}).startswith("yes (not classified")
    assert not_support_reason({**old, "wall": "login: login wall ('please log in')"}) == "login wall ('please log in')"
