"""`evarchive export`: citation bundles for a court, judged by third-party tools and by the
bundle's own standalone verifier. Real local server, real SQLite, real files; no mocks."""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import html5lib
import pytest
from clerk import run_verifier
from thirdparty import pywb_collection, tool

from evarchive import cli, publishing
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.export import zip_data_offsets
from evarchive.reports import import_report

TITLE = "Export test report"


def page(title: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
            f"<body><article><h1>{title}</h1><p>Evidence page for the export tests.</p></article></body></html>")


class Setup:
    """An archive with a report of three claims whose sources were captured from the local server."""

    def __init__(self, tmp_path: Path, server: Any) -> None:
        self.tmp = tmp_path
        self.server = server
        self.archive_dir = tmp_path / "archive"
        self.urls = {
            "a": server.url("/export/a"),  # captured twice: the second capture is a revisit
            "b": server.https_url("/export/b"),  # TLS provenance
            "r": server.url("/export/r"),  # a redirect to /export/a2
        }
        server.set_route("/export/a", body=page("Page A"))
        server.set_route("/export/b", body=page("Page B"))
        server.set_route("/export/r", status=301, location=server.url("/export/a2"), body="")
        server.set_route("/export/a2", body=page("Page A2"))
        self.report = tmp_path / "report.md"
        self.report.write_text(
            f"The first claim rests on page A.\n\n{self.urls['a']}\n\n"
            f"The second claim rests on page B and the moved page.\n\n{self.urls['b']}\n\n{self.urls['r']}\n\n"
            f"The third claim also cites page A ({self.urls['a']}).\n", encoding="utf-8")
        self.arch = Archive.open(self.archive_dir)
        import_report(self.arch.db, self.report, TITLE)
        self.settings = CaptureSettings(ca_file=server.ca_pem_path, retries=0, total_timeout=20)
        outcomes = capture_urls(self.arch, list(self.urls.values()), self.settings)
        assert {o.status for o in outcomes} == {"captured"}, outcomes
        [again] = capture_urls(self.arch, [self.urls["a"]], self.settings)
        assert again.status == "revisited"

    def export(self, out: Path, *args: str) -> int:
        return cli.main(["export", str(out), "--archive", str(self.archive_dir), *args])

    def close(self) -> None:
        self.arch.close()


@pytest.fixture
def setup(tmp_path: Path, local_server: Any):  # type: ignore[no-untyped-def]
    s = Setup(tmp_path, local_server)
    yield s
    s.close()


def load(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))


def archive_member(archive_dir: Path, rec: dict[str, Any]) -> bytes:
    with open(archive_dir / "warcs" / rec["original_file"], "rb") as fh:
        fh.seek(rec["original_offset"])
        return fh.read(rec["length"])


def bundle_member(bundle: Path, rec: dict[str, Any]) -> bytes:
    with open(bundle / "evidence.wacz", "rb") as fh:
        fh.seek(rec["wacz_offset"])
        return fh.read(rec["length"])


# --------------------------------------------------------------------------- the bundle

def test_report_bundle_lists_every_claim_and_exhibit(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    data = load(out)
    assert result["exhibits"] == len(data["exhibits"]) == 4  # A, A again (revisit), B, the redirect
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for name in ("SHA256SUMS", "VERIFY.md", "bundle.json", "evidence.wacz", "exhibits.csv", "exhibits.html",
                 "exhibits.txt", "verify_bundle.py", "custody/log.jsonl", "custody/head.txt"):
        assert name in names

    assert [c["claim"] for c in data["claims"]] == [1, 2, 3]
    assert all(c["supported"] for c in data["claims"])
    by_url = {e["source_url"]: e for e in data["exhibits"] if e["revisit_of_exhibit"] is None}
    a, b, r = by_url[setup.urls["a"]], by_url[setup.urls["b"]], by_url[setup.urls["r"]]
    revisit = next(e for e in data["exhibits"] if e["revisit_of_exhibit"])
    assert revisit["revisit_of_exhibit"] == a["exhibit"] and revisit["kind_of_record"] == "revisit"
    assert data["claims"][0]["exhibits"] == sorted([a["exhibit"], revisit["exhibit"]])
    assert data["claims"][1]["exhibits"] == sorted([b["exhibit"], r["exhibit"]])

    # Correct hashes and provenance: what the server sent, as the catalogue and the log recorded.
    server = setup.server
    assert a["payload_sha256"] == hashlib.sha256(page("Page A").encode()).hexdigest()
    assert b["payload_sha256"] == server.last_exchange("/export/b").body_sha256
    assert b["tls"]["validated"] is True and len(b["tls"]["cert_sha256"]) == 64 and b["tls"]["not_after"]
    assert a["tls"] is None and a["server_ip"] == "127.0.0.1" and a["http_status"] == 200
    assert [hop["status"] for hop in r["redirect_chain"]] == [301, 200]
    assert r["final_url"] == server.url("/export/a2")
    assert all(e["live"]["state"] == "unchecked" for e in data["exhibits"])

    # The index a judge reads names every claim and every exhibit with its hashes.
    text = (out / "exhibits.html").read_text(encoding="utf-8")
    plain = (out / "exhibits.txt").read_text(encoding="utf-8")
    for claim in data["claims"]:
        assert f"Claim {claim['claim']}" in text and f"Claim {claim['claim']}" in plain
    for ex in data["exhibits"]:
        main = next(r for r in ex["records"] if r["record_id"] == ex["main_record"])
        for value in (ex["payload_sha256"], main["member_sha256"], main["bundle_file"]):
            assert value in text and value in plain
    with open(out / "exhibits.csv", encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["claim"] for row in rows} == {"1", "2", "3"}
    assert {row["exhibit"] for row in rows} == {str(e["exhibit"]) for e in data["exhibits"]}
    row_a = next(row for row in rows if row["exhibit"] == str(a["exhibit"]))
    assert row_a["payload_sha256"] == a["payload_sha256"] and row_a["http_status"] == "200"
    assert "<script" not in text and "http" not in text.split("<body>")[0].replace("http-equiv", "")

    # The export is in the custody log, with the manifest's hash.
    arch = Archive.open(setup.archive_dir)
    entry = arch.db.execute("SELECT seq, subject, details FROM custody_log WHERE event = 'export'").fetchone()
    details = json.loads(entry[2])
    assert entry[0] == result["export_log_seq"] and entry[1] == "bundle"
    assert details["manifest_sha256"] == hashlib.sha256((out / "SHA256SUMS").read_bytes()).hexdigest()
    assert sorted(details["captures"]) == sorted(e["capture_id"] for e in data["exhibits"])
    arch.close()


def test_exported_records_are_byte_identical_to_the_archive(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    data = load(out)
    records = [r for e in data["exhibits"] for r in e["records"]]
    assert {r["record_type"] for r in records} >= {"request", "response", "revisit", "metadata", "resource"}
    offsets = zip_data_offsets(out / "evidence.wacz")
    for rec in records:
        original = archive_member(setup.archive_dir, rec)
        assert bundle_member(out, rec) == original
        assert hashlib.sha256(original).hexdigest() == rec["member_sha256"]
        assert rec["wacz_offset"] == offsets[rec["bundle_file"]] + rec["bundle_offset"]
    # Each bundle WARC: a warcinfo record, then the excerpts, in their original order.
    with zipfile.ZipFile(out / "evidence.wacz") as zf:
        warcs = [i for i in zf.infolist() if i.filename.startswith("archive/")]
        assert warcs and all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        from warcio.archiveiterator import ArchiveIterator

        for info in warcs:
            with zf.open(info) as fh:
                types = [rec.rec_type for rec in ArchiveIterator(fh, check_digests="raise")]
            assert types[0] == "warcinfo"
            listed = sorted((r for r in records if r["bundle_file"] == info.filename),
                            key=lambda r: r["bundle_offset"])
            assert types[1:] == [r["record_type"] for r in listed]
            assert [r["original_offset"] for r in listed] == sorted(r["original_offset"] for r in listed)


def test_verifier_passes_then_names_a_flipped_byte(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    ok = run_verifier(out)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "BUNDLE CONSISTENT, NOT ANCHORED" in ok.stdout and "FAIL" not in ok.stdout
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out).returncode == 0
    # VERIFY.md's by-hand commands (tail | head | sha256sum) print each record's SHA-256.
    verify_md = (out / "VERIFY.md").read_text()
    commands = [ln for ln in verify_md.splitlines() if ln.startswith("tail -c +")]
    expected = [ln.split("(expect ")[1].rstrip(")") for ln in verify_md.splitlines() if ln.startswith("# exhibit ")]
    assert len(commands) == len(expected) == 4
    for command, digest in zip(commands, expected, strict=True):
        printed = subprocess.run(["sh", "-c", command], cwd=out, capture_output=True, text=True).stdout
        assert printed.split()[0] == digest

    data = load(out)
    target = next(e for e in data["exhibits"] if e["source_url"] == setup.urls["b"])
    rec = next(r for r in target["records"] if r["record_id"] == target["main_record"])
    wacz = bytearray((out / "evidence.wacz").read_bytes())
    wacz[rec["wacz_offset"] + rec["length"] // 2] ^= 0x01
    (out / "evidence.wacz").write_bytes(bytes(wacz))

    bad = run_verifier(out)
    assert bad.returncode == 1
    assert "evidence.wacz: its SHA-256 differs from SHA256SUMS" in bad.stdout
    assert f"exhibit {target['exhibit']} record {rec['record_id']}" in bad.stdout
    assert f"{rec['bundle_file']} at offset {rec['bundle_offset']}" in bad.stdout
    assert "NOT as exported" in bad.stdout
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out,
                          capture_output=True).returncode != 0


def test_verifier_catches_a_forged_index_even_with_a_new_manifest(setup: Setup) -> None:
    """Rewriting a hash in exhibits.csv and recomputing SHA256SUMS is still caught: the index must
    agree with the records and the custody log, which chain to the head."""
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    data = load(out)
    ex = data["exhibits"][0]
    forged = (out / "exhibits.csv").read_bytes().replace(ex["payload_sha256"].encode(), b"0" * 64)
    (out / "exhibits.csv").write_bytes(forged)
    lines = [ln for ln in (out / "SHA256SUMS").read_text().splitlines() if not ln.endswith("  exhibits.csv")]
    lines.append(f"{hashlib.sha256((out / 'exhibits.csv').read_bytes()).hexdigest()}  exhibits.csv")
    (out / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    result = run_verifier(out)
    assert result.returncode == 1
    # Page A is served without content coding: its decoded hash is the same hash, forged with it.
    assert f"(exhibit {ex['exhibit']}): payload_sha256, decoded_sha256 differ" in result.stdout


def test_verifier_names_an_edited_custody_entry(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    log = (out / "custody" / "log.jsonl").read_text(encoding="utf-8").splitlines()
    first = next(i for i, line in enumerate(log) if json.loads(line)["event"] == "capture")
    entry = json.loads(log[first])
    entry["details"] = entry["details"].replace('"http_status":200', '"http_status":404')
    log[first] = json.dumps(entry, ensure_ascii=False)
    (out / "custody" / "log.jsonl").write_text("\n".join(log) + "\n", encoding="utf-8")
    result = run_verifier(out)
    assert result.returncode == 1
    assert f"custody/log.jsonl entry {entry['seq']} (capture " in result.stdout
    assert "does not match its contents (edited)" in result.stdout


# --------------------------------------------------------------------------- bad input, findings

def test_claims_shown_are_vouched_by_the_import_entry(setup: Setup) -> None:
    """An edited claim text (with its SHA-256 updated to match), or a citation moved from one
    claim to another, fails even with SHA256SUMS regenerated: the import entry vouches."""
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    assert "claims and their citations are those imported" in run_verifier(out).stdout
    pristine = (out / "bundle.json").read_text(encoding="utf-8")
    edits = {
        "edited text": lambda d: d["claims"][0].update(
            text="The first claim rests on nothing.",
            sha256=hashlib.sha256(b"The first claim rests on nothing.").hexdigest()),
        "moved citation": lambda d: d["claims"][0]["citations"].append(d["claims"][1]["citations"].pop()),
    }
    for name, edit in edits.items():
        data = json.loads(pristine)
        edit(data)
        (out / "bundle.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        regenerate_sums(out)
        result = run_verifier(out)
        assert result.returncode == 1, name
        assert "are not those custody-log entry" in result.stdout and "recorded at import" in result.stdout, name


def regenerate_sums(out: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"
                   and "__pycache__" not in p.parts)
    (out / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n" for p in files),
        encoding="utf-8")


def test_refuses_existing_out_and_bad_input_writing_nothing(setup: Setup, local_server: Any,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    def log_size() -> int:
        arch = Archive.open(setup.archive_dir)
        try:
            return arch.db.execute("SELECT COUNT(*) FROM custody_log").fetchone()[0]
        finally:
            arch.close()

    before = log_size()
    existing = setup.tmp / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    assert setup.export(existing, "--report", TITLE) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in existing.iterdir()] == ["keep.txt"]
    (setup.tmp / "taken.zip").write_bytes(b"x")
    assert setup.export(setup.tmp / "taken.zip") == 2

    out = setup.tmp / "never"
    assert setup.export(out, "--report", "no such report") == 2
    assert "no report" in capsys.readouterr().err
    assert setup.export(out, local_server.url("/export/never-captured")) == 2
    assert "no source" in capsys.readouterr().err
    assert cli.main(["export", str(out), "--archive", str(setup.tmp / "missing-archive")]) == 2
    assert not out.exists() and not (setup.tmp / "missing-archive").exists()
    assert not [p for p in setup.tmp.iterdir() if ".partial-" in p.name]
    assert log_size() == before


def test_claim_without_intact_capture_exits_1_and_the_index_says_so(setup: Setup, local_server: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # A fourth claim cites a page that was never captured; a new version of the report.
    lost = local_server.url("/export/never-captured")
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\nA fourth claim that nobody archived.\n\n{lost}\n")
    import_report(setup.arch.db, setup.report, TITLE)
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 1
    err = capsys.readouterr().err
    assert "no intact capture" in err and "claim 4" in err
    data = load(out)
    assert [c["supported"] for c in data["claims"]] == [True, True, True, False]
    assert "NOT SUPPORTED" in (out / "exhibits.html").read_text(encoding="utf-8")
    with open(out / "exhibits.csv", encoding="utf-8-sig", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["claim"] == "4"]
    assert [(r["cited_url"], r["kind"]) for r in rows] == [(lost, "NO INTACT CAPTURE: never captured")]
    assert run_verifier(out).returncode == 0


def test_a_failed_capture_gives_its_reason_in_every_index(setup: Setup) -> None:
    refused = "http://127.0.0.1:9/refused"  # the discard port: nothing listens on loopback
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\nA claim whose page could not be reached.\n\n{refused}\n")
    import_report(setup.arch.db, setup.report, TITLE)
    [failed] = capture_urls(setup.arch, [refused], setup.settings)
    assert failed.status == "failed"
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 1
    [cited] = [c for c in load(out)["claims"][3]["citations"]]
    why = cited["why_no_exhibit"]
    assert why.startswith("the latest capture, ") and f"failed: {failed.error_class}: " in why
    for name in ("exhibits.txt", "exhibits.csv"):
        assert f"NO INTACT CAPTURE: {why}" in (out / name).read_text(encoding="utf-8-sig")
    assert html.escape(why, quote=True) in (out / "exhibits.html").read_text(encoding="utf-8")


def test_the_report_travels_as_html_with_robust_links(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    data = load(out)
    page = (out / "report.html").read_text(encoding="utf-8")
    first = data["claims"][0]
    [cited] = first["citations"]
    exhibit = next(e for e in data["exhibits"] if e["exhibit"] == cited["exhibits"][0])
    assert (f'<a href="{cited["url"]}" data-originalurl="{cited["url"]}" '
            f'data-versionurl="exhibits.html#exhibit-{exhibit["exhibit"]}" '
            f'data-versiondate="{exhibit["captured_at"][:10]}">{cited["url"]}</a>') in page
    assert f'id="claim-{first["claim"]}">{html.escape(first["text"])}' in page
    assert run_verifier(out).returncode == 0  # listed in SHA256SUMS like every file


def _catalogue_citations(archive_dir: Path) -> list[tuple[int, str, int]]:
    """(claim ordinal, URL as cited, source id) of every citation in the report's latest version,
    straight from the catalogue."""
    with sqlite3.connect(archive_dir / "catalogue.sqlite") as db:
        return db.execute("SELECT cl.ordinal, ci.url, ci.source_id FROM citations ci "
                          "JOIN claims cl ON cl.id = ci.claim_id "
                          "WHERE ci.version_id = (SELECT MAX(version_id) FROM citations) "
                          "ORDER BY cl.ordinal, ci.ordinal").fetchall()


def _capture_row(archive_dir: Path, capture_id: int) -> tuple[int, str, str]:
    with sqlite3.connect(archive_dir / "catalogue.sqlite") as db:
        return db.execute("SELECT source_id, url_requested, started_at FROM captures WHERE id = ?",
                          [capture_id]).fetchone()


def _robust_links(tree: Any) -> list[dict[str, str]]:
    return [dict(a.attrib) for a in tree.iter("a") if "data-originalurl" in a.attrib]


def test_the_report_html_is_valid_and_every_robust_link_matches_the_catalogue(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    # strict: any parse error (a stray tag, a bad character reference, no doctype) raises
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(
        (out / "report.html").read_bytes())
    assert tree.get("lang")  # a validator wants the page's language declared
    exhibits = {e["exhibit"]: e for e in load(out)["exhibits"]}
    links = _robust_links(tree)
    cited = _catalogue_citations(setup.archive_dir)
    assert len(links) == len(cited) == 4
    for link, (_claim, url, source_id) in zip(links, cited, strict=True):
        assert set(link) == {"href", "data-originalurl", "data-versionurl", "data-versiondate"}
        assert link["href"] == link["data-originalurl"] == url
        number = int(link["data-versionurl"].removeprefix("exhibits.html#exhibit-"))
        assert link["data-versionurl"] == f"exhibits.html#exhibit-{number}"
        exhibit_source, requested, started_at = _capture_row(setup.archive_dir, exhibits[number]["capture_id"])
        assert (exhibit_source, requested) == (source_id, url)  # the exhibit is a capture of that very source
        assert link["data-versiondate"] == started_at[:10]


def test_a_bare_www_citation_links_to_an_absolute_url_in_report_html_and_cite(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """A report that cites ``www.host/path`` (no scheme) must not turn it into a relative link:
    the preserved one links to the URL its exhibit captured, the unpreserved one to http://www..."""
    port = setup.server.http_port
    preserved, unpreserved = f"www.bare-cite.test:{port}/export/a", "www.never-captured.test/page"
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\nA fourth claim cites a bare name: {preserved} and {unpreserved} too.\n")
    import_report(setup.arch.db, setup.report, TITLE)
    settings = CaptureSettings(retries=0, total_timeout=20, resolve={"www.bare-cite.test": ("127.0.0.1", port)})
    [outcome] = capture_urls(setup.arch, [f"http://{preserved}"], settings)
    assert outcome.status == "captured"
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0  # the claim has one preserved source
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse((out / "report.html").read_bytes())
    [claim] = [p for p in tree.iter("p") if p.get("id") == "claim-4"]
    assert [a.get("href") for a in claim.iter("a")] == [f"http://{preserved}", f"http://{unpreserved}"]
    assert [a.get("data-originalurl") for a in claim.iter("a")] == [f"http://{preserved}", None]
    assert run_verifier(out).returncode == 0  # the verifier renders the very same page
    capsys.readouterr()
    cli.main(["cite", "--report", TITLE, "--format", "html", "--archive", str(setup.archive_dir)])
    fragment = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parseFragment(capsys.readouterr().out)
    hrefs = [a.get("href") for a in fragment.iter("a")]
    assert f"http://{preserved}" in hrefs and f"http://{unpreserved}" in hrefs
    assert not [h for h in hrefs if h and not h.startswith(("http://", "https://"))]


def test_hostile_claim_text_and_an_unpreserved_citation_keep_the_report_html_valid(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    """Control characters and noncharacters from a pasted or PDF report are shown as U+FFFD (HTML
    forbids them even as references), and a citation with nothing preserved is a plain link: no
    Robust Link without a version to carry."""
    unpreserved = setup.server.url("/export/never-captured?a=1&b=\"2\"")
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\nA pasted claim\x07 with \x01 and \ufdd0 in it.\n\n{setup.urls['a']}\n\n{unpreserved}\n")
    import_report(setup.arch.db, setup.report, TITLE)
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0  # the claim's other source is preserved
    tree = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse((out / "report.html").read_bytes())
    [claim] = [p for p in tree.iter("p") if p.get("id") == "claim-4"]
    assert claim.text.startswith("A pasted claim\ufffd with \ufffd and \ufffd in it.")
    robust = _robust_links(tree)
    assert [link["href"] for link in robust] == [url for _c, url, _s in _catalogue_citations(setup.archive_dir)
                                                 if url != unpreserved]
    assert all(len(link) == 4 for link in robust)
    assert [a.get("href") for a in claim.iter("a") if "data-originalurl" not in a.attrib] == [unpreserved]
    assert run_verifier(out).returncode == 0  # the verifier renders the very same page
    capsys.readouterr()
    assert cli.main(["cite", "--report", TITLE, "--format", "html", "--archive", str(setup.archive_dir)]) == 0
    html5lib.HTMLParser(strict=True).parseFragment(capsys.readouterr().out)


def test_cite_html_is_a_valid_fragment_of_robust_links_from_the_catalogue(
        setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["cite", "--report", TITLE, "--format", "html", "--archive", str(setup.archive_dir)]) == 0
    fragment = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parseFragment(capsys.readouterr().out)
    links = [dict(a.attrib) for a in fragment.iter("a") if "data-originalurl" in a.attrib]
    cited = _catalogue_citations(setup.archive_dir)
    assert len(links) == len(cited) == 4
    with sqlite3.connect(setup.archive_dir / "catalogue.sqlite") as db:
        for link, (_claim, url, source_id) in zip(links, cited, strict=True):
            # no public witness was asked here, so there is no public copy to name as the version
            assert set(link) == {"href", "data-originalurl", "data-versiondate"}
            assert link["href"] == link["data-originalurl"] == url
            started = [row[0][:10] for row in db.execute(
                "SELECT started_at FROM captures WHERE source_id = ? AND status = 'ok'", [source_id])]
            assert link["data-versiondate"] in started


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(setup: Setup) -> None:
    """A claim beginning with =HYPERLINK( must open as text, and the bundle still verifies."""
    with open(setup.report, "a", encoding="utf-8") as fh:
        fh.write(f"\n=HYPERLINK(\"http://evil.example\",\"click\") says page A.\n\n{setup.urls['a']}\n")
    import_report(setup.arch.db, setup.report, TITLE)
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    with open(out / "exhibits.csv", encoding="utf-8-sig", newline="") as fh:
        texts = [r["claim_text"] for r in csv.DictReader(fh) if r["claim"] == "4"]
    assert set(texts) == {"'=HYPERLINK(\"http://evil.example\",\"click\") says page A."}  # a row per exhibit
    assert run_verifier(out).returncode == 0


def test_verify_md_gives_the_steps_for_linux_macos_and_windows(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    steps = (out / "VERIFY.md").read_text(encoding="utf-8")
    for command in ("sha256sum -c SHA256SUMS", "shasum -a 256 -c SHA256SUMS",
                    "Get-FileHash -Algorithm SHA256 -LiteralPath $name", "py verify_bundle.py"):
        assert command in steps


def test_tampered_capture_is_named_and_not_exported(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    db = setup.arch.db
    cap_id, = db.execute("SELECT c.id FROM captures c JOIN sources s ON s.id = c.source_id "
                         "WHERE s.url = ?", [setup.urls["b"]]).fetchone()
    name, offset, length = db.execute("SELECT warc_file, offset, length FROM capture_records WHERE capture_id = ? "
                                      "AND record_type = 'response'", [cap_id]).fetchone()
    path = setup.archive_dir / "warcs" / name
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0x10
    path.write_bytes(bytes(data))

    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0  # claim 2 still has the redirect's capture
    assert f"not exported capture {cap_id}" in " ".join(capsys.readouterr().err.split())
    bundle = load(out)
    assert cap_id not in [e.get("capture_id") for e in bundle["exhibits"]]
    [item] = bundle["not_exported"]
    assert item["id"] == cap_id and f"at offset {offset}" in item["problems"][0]
    assert "differ from the SHA-256 recorded at capture" in (out / "exhibits.html").read_text(encoding="utf-8")
    assert run_verifier(out).returncode == 0  # what was exported is intact

    # Asked for by URL, a source whose only capture is damaged is a finding: exit 1, still written.
    only_b = setup.tmp / "only-b"
    assert setup.export(only_b, setup.urls["b"]) == 1
    data = load(only_b)
    assert data["exhibits"] == [] and [u["url"] for u in data["unpreserved_sources"]] == [setup.urls["b"]]
    assert "SOURCES WITHOUT AN INTACT CAPTURE" in (only_b / "exhibits.txt").read_text(encoding="utf-8")
    assert run_verifier(only_b).returncode == 0


def test_url_selection_latest_and_zip_output(setup: Setup) -> None:
    out = setup.tmp / "a-only.zip"
    assert setup.export(out, setup.urls["a"], "--latest") == 0
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        assert "a-only/evidence.wacz" in names and "a-only/verify_bundle.py" in names
        data = json.loads(zf.read("a-only/bundle.json"))
    # --latest keeps the revisit, and with it the capture that holds its payload.
    assert [e["kind_of_record"] for e in data["exhibits"]] == ["response", "revisit"]
    assert data["claims"] == [] and data["selection"] == "urls"
    result = subprocess.run([sys.executable, "-I", "-S", str(Path(__file__).parents[1] / "src" / "evarchive" /
                                                             "verify_bundle.py"), str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- third-party judges

def test_wacz_validate_accepts_the_bundle(setup: Setup) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    result = subprocess.run([tool("wacz"), "validate", "-f", str(out / "evidence.wacz")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation succeeded, the passed WACZ is valid" in result.stdout


def cdxj_lines(text: str) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for line in text.splitlines():
        if line.strip():
            key, ts, body = line.split(" ", 2)
            out.append((key, ts, json.loads(body)))
    return out


def test_cdxj_index_agrees_with_cdxj_indexer(setup: Setup, tmp_path: Path) -> None:
    """The index we write from the catalogue is the one the reference indexer derives from the
    WARC files themselves (keys, timestamps, offsets, lengths, status and MIME type)."""
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(out / "evidence.wacz") as zf:
        zf.extractall(unpacked)
        ours = cdxj_lines(zf.read("indexes/index.cdx").decode())
    warcs = sorted(str(p) for p in (unpacked / "archive").iterdir())
    result = subprocess.run([tool("cdxj-indexer"), *warcs], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    theirs = cdxj_lines(result.stdout)
    fields = ("url", "mime", "status", "length", "offset", "filename")

    def comparable(lines: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[Any, ...]]:
        return sorted((key, ts, *(body.get(f) for f in fields)) for key, ts, body in lines)

    assert comparable(ours) == comparable(theirs)
    # Payload digests as the records declare them (cdxj-indexer computes one for the TLS chain).
    declared = {(k, b["offset"]): b["digest"] for k, _, b in theirs if b["digest"].startswith("sha256:")}
    assert declared and all(b.get("digest") == declared[(k, b["offset"])] for k, _, b in ours
                            if (k, b["offset"]) in declared)


@pytest.mark.slow
def test_pywb_replays_the_exhibits_from_the_wacz(setup: Setup, tmp_path: Path) -> None:
    import httpx

    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    data = load(out)
    with pywb_collection(tmp_path / "pywb", "--unpack-wacz", "ev", str(out / "evidence.wacz")) as base:
        for ex in data["exhibits"]:
            stamp = "".join(ch for ch in ex["warc_date"] if ch.isdigit())[:14]
            replay = httpx.get(f"{base}/{stamp}id_/{ex['final_url']}", timeout=10)
            assert replay.status_code == 200, (ex["exhibit"], replay.status_code)
            # The revisit resolves to its original's payload: the bytes the server sent.
            assert hashlib.sha256(replay.content).hexdigest() == ex["payload_sha256"]


# --------------------------------------------------------------------------- keys, timestamps, anchors

@pytest.fixture
def signed_and_stamped(setup: Setup):  # type: ignore[no-untyped-def]
    """A signing key in force before a capture, and an RFC 3161 token over the head after it."""
    from tsa import LocalTSA

    from evarchive import timestamping
    from evarchive.custody import introduce_key

    pair = introduce_key(setup.arch)
    setup.server.set_route("/export/c", body=page("Page C"))
    setup.urls["c"] = setup.server.url("/export/c")
    [outcome] = capture_urls(setup.arch, [setup.urls["c"]], setup.settings)
    assert outcome.status == "captured"
    with LocalTSA() as tsa:
        row = timestamping.stamp_archive(setup.arch, [tsa.url], [tsa.keys.root])
        root_pem = setup.tmp / "tsa-root.pem"
        root_pem.write_bytes(tsa.keys.root_pem)
    yield pair, row, root_pem


def test_keys_and_timestamps_travel_with_the_bundle(setup: Setup, signed_and_stamped: Any) -> None:
    pair, stamp, root_pem = signed_and_stamped
    out = setup.tmp / "bundle"
    assert setup.export(out, setup.urls["a"], setup.urls["c"]) == 0
    data = load(out)
    [key] = data["custody"]["keys"]
    assert key["key_id"] == pair.key_id
    assert (out / key["file"]).read_text() == pair.public_path.read_text()
    # Exhibit C's capture came before the token: the token covers it; A's exhibits too.
    [token] = data["custody"]["timestamps"]
    assert token["covers_seq"] == stamp["covers_seq"] and token["digest"] == stamp["digest"]
    assert hashlib.sha256((out / token["token"]).read_bytes()).hexdigest() == stamp["token_sha256"]
    c = next(e for e in data["exhibits"] if e["source_url"] == setup.urls["c"])
    log = {json.loads(line)["seq"]: json.loads(line)
           for line in (out / "custody" / "log.jsonl").read_text(encoding="utf-8").splitlines()}
    assert log[c["custody_seq"]]["signature"].startswith(f"ed25519:{pair.key_id}:")
    assert "openssl ts -verify -token_in" in (out / "VERIFY.md").read_text()

    ok = run_verifier(out, "--head", f"{data['custody']['head']['seq']}:{data['custody']['head']['entry_hash']}",
                      "--public-key", str(pair.public_path), "--all-signatures")
    assert ok.returncode == 0, ok.stdout
    assert "signatures valid" in ok.stdout and "0 signatures valid" not in ok.stdout
    verdict = ok.stdout.strip().splitlines()[-1]
    assert verdict.startswith("BUNDLE VERIFIED AND ANCHORED") and "is signed by the key you gave" in verdict
    assert f"agrees with the head {data['custody']['head']['seq']} you gave" in verdict
    unanchored = run_verifier(out)
    assert (unanchored.returncode, unanchored.stdout.strip().splitlines()[-1][:31]) == (
        0, "BUNDLE CONSISTENT, NOT ANCHORED")
    assert run_verifier(out, "--require-anchor").returncode == 1
    if shutil.which("openssl"):
        stamped = run_verifier(out, "--tsa-root", str(root_pem))
        assert stamped.returncode == 0, stamped.stdout
        assert f"every exhibit existed by {token['gen_time']}" in stamped.stdout.strip().splitlines()[-1]
        wrong = setup.tmp / "other-root.pem"
        from tsa import TSAKeys

        wrong.write_bytes(TSAKeys("Other").root_pem)
        assert "openssl ts -verify failed" in run_verifier(out, "--tsa-root", str(wrong)).stdout

    # Anchors obtained elsewhere are binding: another key, another head.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = setup.tmp / "other.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    forged = run_verifier(out, "--public-key", str(other))
    assert forged.returncode == 1 and "which is not a trusted key" in forged.stdout
    wrong_head = run_verifier(out, "--head", f"{data['custody']['head']['seq']}:{'0' * 64}")
    assert wrong_head.returncode == 1 and "--head" in wrong_head.stdout


def test_a_back_dated_exhibit_is_caught_by_its_own_warc_date(setup: Setup, signed_and_stamped: Any) -> None:
    """Back-date the exhibit two days everywhere a time is shown (custody entry, bundle.json,
    the three indexes), re-hash and re-sign the log with a new key, drop the timestamp and
    regenerate SHA256SUMS: the WARC record itself still says when it was made."""
    pair, _stamp, _root = signed_and_stamped
    out = setup.tmp / "bundle"
    assert setup.export(out, setup.urls["c"]) == 0
    real_head = load(out)["custody"]["head"]
    forge_bundle(out, back_date=True)
    inside_only = run_verifier(out)
    assert inside_only.returncode == 1
    assert "its WARC-Date" in inside_only.stdout and "is not within the capture time" in inside_only.stdout
    with_head = run_verifier(out, "--head", f"{real_head['seq']}:{real_head['entry_hash']}")
    assert with_head.returncode == 1 and f"--head {real_head['seq']}:" in with_head.stdout


def test_a_bundle_re_signed_with_another_key_is_never_anchored_by_it(setup: Setup, signed_and_stamped: Any) -> None:
    pair, _stamp, root_pem = signed_and_stamped
    out = setup.tmp / "bundle"
    assert setup.export(out, setup.urls["c"]) == 0
    forge_bundle(out, back_date=False)
    inside_only = run_verifier(out)
    assert inside_only.returncode == 0, inside_only.stdout  # consistent: the keys inside prove nothing
    assert inside_only.stdout.strip().splitlines()[-1].startswith("BUNDLE CONSISTENT, NOT ANCHORED")
    assert run_verifier(out, "--require-anchor").returncode == 1
    with_key = run_verifier(out, "--public-key", str(pair.public_path))
    assert with_key.returncode == 1 and "which is not a trusted key" in with_key.stdout
    if shutil.which("openssl"):  # the token was dropped: nothing for the TSA roots to anchor
        with_tsa = run_verifier(out, "--tsa-root", str(root_pem))
        assert "VERIFIED AND ANCHORED" not in with_tsa.stdout


def forge_bundle(out: Path, back_date: bool) -> None:
    """What a careful forger does: optionally shift the exhibit's times two days back wherever they
    are shown, re-hash the log from there, sign it with a key of their own (put in the bundle in
    place of the archive's), drop the timestamp, and regenerate every list of hashes."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from evarchive import verify_bundle as vb  # the bundle's verify_bundle.py is a byte-for-byte copy

    key = Ed25519PrivateKey.generate()
    kid = vb.key_id(key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    data = load(out)
    [ex] = data["exhibits"]
    shifted = {}
    if back_date:
        for name in ("captured_at", "capture_ended_at", "warc_date"):
            old = ex[name]
            shifted[old] = str(int(old[:4]) - 1) + old[4:]  # a year back: same format, sorts earlier
            ex[name] = shifted[old]
    log_path = out / "custody" / "log.jsonl"
    entries = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines()]
    prev = None
    for entry in entries:
        for old, new in shifted.items():
            entry["details"] = entry["details"].replace(old, new)
        if prev is not None:
            entry["prev_hash"] = prev["entry_hash"]
        entry["entry_hash"] = vb.canonical_hash(entry)
        if entry.get("signature"):
            sig = key.sign(vb.SIGNING_CONTEXT + entry["entry_hash"].encode("ascii"))
            entry["signature"] = f"ed25519:{kid}:{base64.b64encode(sig).decode('ascii')}"
        prev = entry
    log_path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries), encoding="utf-8")
    for pem in (out / "custody" / "keys").glob("*.pem"):
        pem.unlink()
    (out / "custody" / "keys" / f"{kid}.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for token in data["custody"]["timestamps"]:
        for name in (token["token"], token["chain"]):
            (out / name).unlink(missing_ok=True)
    data["custody"]["timestamps"] = []
    data["time_anchors"].update(tokens=[], covered=0, uncovered=[e["exhibit"] for e in data["exhibits"]])
    data["custody"]["head"] = {"seq": prev["seq"], "entry_hash": prev["entry_hash"]}
    (out / "custody" / "head.txt").write_text(f"{prev['seq']} {prev['entry_hash']}\n", encoding="ascii")
    (out / "bundle.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    # the indexes are rendered again from the forged bundle.json, as the verifier renders them
    for name, render in (("exhibits.csv", vb.render_csv), ("exhibits.html", vb.render_html),
                         ("exhibits.txt", vb.render_text)):
        (out / name).write_text(render(data), encoding="utf-8", newline="")
    text = (out / "VERIFY.md").read_text(encoding="utf-8")
    for old, new in shifted.items():
        text = text.replace(old, new)
    (out / "VERIFY.md").write_text(text, encoding="utf-8")
    regenerate_sums(out)


def test_redacted_log_discloses_only_the_entries_it_relies_on(setup: Setup, signed_and_stamped: Any) -> None:
    out = setup.tmp / "bundle"
    assert setup.export(out, setup.urls["c"], "--redact-log") == 0
    data = load(out)
    assert data["custody"]["scope"] == "entries"
    log = [json.loads(line) for line in (out / "custody" / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    subjects = {e["subject"] for e in log if e["event"] == "capture"}
    assert subjects == {setup.urls["c"]}  # the other captures of the archive stay undisclosed
    events = {e["event"] for e in log}
    assert {"capture", "keys-generate", "timestamp"} <= events
    assert log[-1]["seq"] == data["custody"]["head"]["seq"]
    result = run_verifier(out)
    assert result.returncode == 0, result.stdout
    assert "entries only (redacted log)" in result.stdout


# --------------------------------------------------------------------------- live checks

def test_check_evidence_and_the_live_state_of_each_source(setup: Setup) -> None:
    """After capture, page B vanished (404): the index says so, and --checks exports the 404."""
    from evarchive import CheckSettings, check_sources, select_sources

    setup.server.remove_route("/export/b")
    net = CaptureSettings(ca_file=setup.server.ca_pem_path, retries=0, total_timeout=10)
    report = check_sources(setup.arch, select_sources(setup.arch, report=TITLE),
                           CheckSettings(network=net, commit_interval=0.0))
    verdicts = {r.url: r.verdict for r in report.results}
    assert verdicts[setup.urls["b"]] == "gone" and verdicts[setup.urls["a"]] == "ok"

    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE, "--checks") == 0
    data = load(out)
    checks = [e for e in data["exhibits"] if e["kind"] == "check"]
    found = {e["source_url"]: (e["verdict"], e["http_status"]) for e in checks}
    assert found == {setup.urls["b"]: ("gone", 404), setup.urls["r"]: ("moved", 200)}  # the 301 moved
    assert data["claims"][1]["check_exhibits"] == sorted(e["exhibit"] for e in checks)
    assert not data["claims"][0]["check_exhibits"]  # page A checked ok: no evidence kept
    b = next(e for e in data["exhibits"] if e["kind"] == "capture" and e["source_url"] == setup.urls["b"])
    assert b["live"]["state"] == "gone" and "VANISHED" in b["live"]["text"]
    a = next(e for e in data["exhibits"] if e["source_url"] == setup.urls["a"])
    assert a["live"]["text"].startswith("live page unchanged")
    text = (out / "exhibits.txt").read_text(encoding="utf-8")
    assert "live page has VANISHED" in text and "(live-check evidence)" in text
    result = run_verifier(out)
    assert result.returncode == 0, result.stdout
    assert "live state of 3 source(s)" in result.stdout
    validate = subprocess.run([tool("wacz"), "validate", "-f", str(out / "evidence.wacz")],
                              capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0, validate.stdout

    # A check exhibit shows its vouched check row.
    gone = next(e for e in checks if e["verdict"] == "gone")
    assert gone["check_row"]["verdict"] == "gone" and gone["check_row"]["id"] == gone["check_id"]

    # Claiming a vanished page is still live is caught, even with a rewritten manifest.
    edited = (out / "bundle.json").read_text(encoding="utf-8").replace('"state": "gone"', '"state": "ok"')
    edited = edited.replace('"verdict": "gone"', '"verdict": "ok"')  # in the check rows too
    (out / "bundle.json").write_text(edited, encoding="utf-8")
    (out / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256((out / name).read_bytes()).hexdigest()}  {name}\n"
        for name in (ln.split("  ", 1)[1] for ln in (out / "SHA256SUMS").read_text().splitlines())))
    forged = run_verifier(out)
    assert forged.returncode == 1
    assert f"source {setup.urls['b']}: its live check {gone['check_id']} is not the one" in forged.stdout
    assert f"exhibit {gone['exhibit']}: check {gone['check_id']} is not the one custody-log entry" in forged.stdout


@pytest.mark.slow
def test_seed_report_bundle_passes_every_judge(tmp_path: Path, local_server: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The real report kept in the repository: 30 hosts, IDNA and non-ASCII URLs, footnotes."""
    from test_archive_cmd import SEED, archive_args, serve_seed

    archive_dir = tmp_path / "archive"
    assert cli.main(archive_args(archive_dir, local_server, SEED, serve_seed(local_server))) == 0
    out = tmp_path / "bundle"
    assert cli.main(["export", str(out), "--report", "seed_report", "--archive", str(archive_dir), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    data = load(out)
    assert result["exhibits"] == 30 and len(data["claims"]) == 24 and all(c["supported"] for c in data["claims"])
    cited = {c["url"] for claim in data["claims"] for c in claim["citations"]}
    assert any("\u2013" in url for url in cited)  # the non-ASCII dash, kept as cited
    html_text = (out / "exhibits.html").read_text(encoding="utf-8")
    assert all(f"Claim {n}" in html_text for n in range(1, 25))
    verified = run_verifier(out)
    assert verified.returncode == 0, verified.stdout
    validate = subprocess.run([tool("wacz"), "validate", "-f", str(out / "evidence.wacz")],
                              capture_output=True, text=True, timeout=120)
    assert validate.returncode == 0, validate.stdout


def test_a_check_row_edited_after_the_fact_is_shown_unverified(setup: Setup) -> None:
    from evarchive import CheckSettings, check_sources, select_sources

    setup.server.remove_route("/export/b")
    net = CaptureSettings(ca_file=setup.server.ca_pem_path, retries=0, total_timeout=10)
    check_sources(setup.arch, select_sources(setup.arch, [setup.urls["b"]]),
                  CheckSettings(network=net, commit_interval=0.0))
    with setup.arch.db.conn:  # someone "improves" the verdict with sqlite3
        setup.arch.db.conn.execute("UPDATE checks SET verdict = 'ok'")
    out = setup.tmp / "bundle"
    assert setup.export(out, setup.urls["b"]) == 0
    [ex] = load(out)["exhibits"]
    assert ex["live"]["vouched"] is False and "UNVERIFIED" in ex["live"]["text"]
    assert "UNVERIFIED: this check does not match the custody log" in (out / "exhibits.html").read_text()
    assert run_verifier(out).returncode == 0  # the bundle says so honestly


# --------------------------------------------------------------------------- killed exports

def start_paused_export(setup: Setup, out: Path, point: str) -> tuple[subprocess.Popen[str], Path]:
    """`evarchive export` in its own process, stopped at `point` (the library's test hook)."""
    flag = setup.tmp / f"paused-{point}"
    env = {**os.environ, publishing.PAUSE_ENV: f"{point}:{flag}"}
    proc = subprocess.Popen([sys.executable, "-m", "evarchive.cli", "export", str(out), "--report", TITLE,
                             "--archive", str(setup.archive_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not flag.exists():  # polled, not slept: returns as soon as the export is there
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the export never reached its pause point"
        time.sleep(0.01)
    return proc, flag


def export_entries(setup: Setup) -> list[dict[str, Any]]:
    rows = setup.arch.db.query("SELECT seq, event, details FROM custody_log WHERE event LIKE 'export%' ORDER BY seq")
    return [{"seq": r["seq"], "event": r["event"], **json.loads(r["details"])} for r in rows]


def manifest_sha256(bundle: Path) -> str:
    if bundle.suffix == ".zip":
        with zipfile.ZipFile(bundle) as zf:
            return hashlib.sha256(zf.read(f"{bundle.stem}/SHA256SUMS")).hexdigest()
    return hashlib.sha256((bundle / "SHA256SUMS").read_bytes()).hexdigest()


def assert_every_bundle_is_known(setup: Setup, bundle: Path) -> None:
    """The invariant: a bundle at OUT has an export entry naming exactly that bundle."""
    if bundle.exists():
        known = {(e["bundle"], e["manifest_sha256"]) for e in export_entries(setup) if e["event"] == "export"}
        assert (str(bundle.resolve()), manifest_sha256(bundle)) in known


def partials(setup: Setup) -> list[Path]:
    return sorted(p for p in setup.tmp.iterdir() if ".partial-" in p.name)


@pytest.mark.slow
@pytest.mark.parametrize(("point", "name", "outcome"), [
    ("built", "bundle", None),  # nothing logged yet: nothing to settle, only the leftover folder
    ("before-publish", "bundle", "export-unpublished"),
    ("after-publish", "bundle", "export-published"),
    ("before-publish", "bundle.zip", "export-unpublished"),
    ("after-publish", "bundle.zip", "export-published"),
])
def test_export_killed_at_each_moment_leaves_no_unknown_bundle_and_the_next_export_settles_it(
        setup: Setup, capsys: pytest.CaptureFixture[str], point: str, name: str, outcome: str | None) -> None:
    out = setup.tmp / name
    proc, _flag = start_paused_export(setup, out, point)
    staging = partials(setup)  # none once a folder bundle was renamed into place
    assert len(staging) == (0 if point == "after-publish" and name == "bundle" else 1)
    assert all(f".partial-{proc.pid}-" in p.name for p in staging)

    # While it lives, another export neither judges its entry nor touches its folder.
    before = [e["event"] for e in export_entries(setup) if e.get("bundle") == str(out.resolve())]
    assert setup.export(setup.tmp / "meanwhile", "--report", TITLE) == 0
    assert partials(setup) == staging
    assert [e["event"] for e in export_entries(setup) if e.get("bundle") == str(out.resolve())] == before

    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert out.exists() == (point == "after-publish")
    assert_every_bundle_is_known(setup, out)
    killed = [e for e in export_entries(setup) if e.get("bundle") == str(out.resolve())]
    assert [e["event"] for e in killed] == ([] if point == "built" else ["export"])
    assert partials(setup) == staging
    left = {p: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) for p in staging}

    capsys.readouterr()
    assert setup.export(setup.tmp / "next", "--report", TITLE, "--json") == 0
    housekeeping = json.loads(capsys.readouterr().out)["housekeeping"]
    assert partials(setup) == []
    settled = [e for e in export_entries(setup) if e.get("bundle") == str(out.resolve())]
    if outcome is None:
        assert settled == []
    else:
        assert [e["event"] for e in settled] == ["export", outcome]
        assert settled[1]["export_seq"] == settled[0]["seq"]
        assert settled[1]["manifest_sha256"] == settled[0]["manifest_sha256"]
        first, then = settled[0]["seq"], settled[1]["seq"]
        expected = {"export-unpublished": f"was prepared but never published; recorded in custody-log entry {then}",
                    "export-published": "was interrupted after publishing; the bundle is in place "
                                        f"(custody-log entry {then})"}[outcome]
        assert [n for n in housekeeping if not n.startswith("removed")] == [
            f"export of {out.resolve()} (custody-log entry {first}) {expected}"]
    assert [n for n in housekeeping if n.startswith("removed")] == [
        f"removed {p.resolve()} ({size:,} bytes), the staging folder of a killed export (pid {proc.pid})"
        for p, size in left.items()]
    assert_every_bundle_is_known(setup, out)
    if out.is_dir():
        assert run_verifier(out).returncode == 0


def test_a_staging_folder_without_an_owner_is_reported_and_kept(setup: Setup,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    # Earlier versions named staging folders without their pid: nothing says whether their
    # export still runs, so they are only reported.
    old = setup.tmp / ".bundle.partial-0badcafe"
    old.mkdir()
    (old / "evidence.wacz").write_bytes(b"half")
    assert setup.export(setup.tmp / "next", "--report", TITLE) == 0
    assert f"earlier export left in place {old}: a staging folder of an interrupted export" in \
        " ".join(capsys.readouterr().err.split())
    assert (old / "evidence.wacz").read_bytes() == b"half"
