"""A page's decoded-content SHA-256 is computed once, at capture, and stored; export shows the
stored value, an archive without stored values exports the same index (and gains them), and
verify --deep finds a stored value its record's bytes do not give. Real loopback server, real
captures and exports, the records read back and decoded by verify_bundle.py's own functions."""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from test_export import TITLE, Setup, load

from evarchive import verify_bundle
from evarchive.capture import capture_urls
from evarchive.reports import import_report
from evarchive.verify import verify_archive

ARTICLE = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Decoded once</title></head><body>"
           "<article><h1>Decoded once</h1>" + "<p>The convoy passed the checkpoint at dawn.</p>" * 80
           + "</article></body></html>").encode()


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    return packer.compress(data) + packer.flush()


# path: (body as served, Content-Encoding header or None)
PAGES = {
    "/decoded/gzip": (gzip.compress(ARTICLE, mtime=0), "gzip"),
    "/decoded/deflate-raw": (raw_deflate(ARTICLE), "deflate"),
    "/decoded/deflate-zlib": (zlib.compress(ARTICLE), "Deflate"),
    "/decoded/identity": (ARTICLE, "identity"),
    "/decoded/plain": (ARTICLE.replace(b"dawn", b"dusk"), None),
    "/decoded/br": (b"\x1b\x03\x00\xf8\xa5\x0c", "br"),
    "/decoded/unknown": (ARTICLE, "x-evidence"),
    "/decoded/non-ascii-coding": (ARTICLE, "x-\u00e9vidence"),  # one byte 0xE9 on the wire
    "/decoded/corrupt-gzip": (gzip.compress(ARTICLE, mtime=0)[:40] + b"\x00" * 64, "gzip"),
    "/decoded/truncated-gzip": (gzip.compress(ARTICLE, mtime=0)[:-30], "gzip"),
}


@pytest.fixture(name="setup")
def setup_fixture(tmp_path: Path, local_server: Any):  # type: ignore[no-untyped-def]
    s = Setup(tmp_path, local_server)
    for path, (body, coding) in PAGES.items():
        local_server.set_route(path, body=body, headers=[("Content-Encoding", coding)] if coding else [])
    with open(s.report, "a", encoding="utf-8") as fh:
        fh.write("".join(f"\nA claim resting on {path}.\n\n{local_server.url(path)}\n" for path in PAGES))
    import_report(s.arch.db, s.report, TITLE)
    outcomes = capture_urls(s.arch, [local_server.url(p) for p in PAGES], s.settings)
    assert {o.status for o in outcomes} == {"captured"}, outcomes
    yield s
    s.close()


def main_records(setup: Setup) -> dict[str, dict[str, Any]]:
    """Each source URL's last response record (the record an export shows)."""
    rows = setup.arch.db.query(
        "SELECT s.url, r.* FROM capture_records r JOIN captures c ON c.id = r.capture_id "
        "JOIN sources s ON s.id = c.source_id WHERE r.record_type = 'response' ORDER BY r.id")
    return {row["url"]: row for row in rows}


def stored(setup: Setup) -> dict[str, tuple[str | None, str | None]]:
    return {r["member_sha256"]: (r["decoded_sha256"], r["decoded_note"])
            for r in setup.arch.db.query("SELECT * FROM decoded_contents")}


def verifier_value(setup: Setup, rec: dict[str, Any]) -> tuple[str | None, str | None]:
    """What the clerk's verifier computes from the record's own bytes (check_decoded's rules)."""
    with open(setup.archive_dir / "warcs" / rec["warc_file"], "rb") as fh:
        fh.seek(rec["offset"])
        member = fh.read(rec["length"])
    decoder = verify_bundle.ContentDecoder(verify_bundle.Budget(verify_bundle.UNBOUNDED))
    *_, error = verify_bundle.parse_member([member], decoder)
    assert error is None
    return (rec["payload_sha256"], None) if decoder.coding in ("", "identity") else decoder.result()


def decoded_fields(bundle: Path) -> dict[str, tuple[Any, ...]]:
    return {ex["main_record"]: (ex["content_encoding"], ex["decoded_sha256"], ex["decoded_note"])
            for ex in load(bundle)["exhibits"]}


def edit(setup: Setup, statement: str, params: tuple[Any, ...] = ()) -> None:
    with sqlite3.connect(setup.archive_dir / "catalogue.sqlite") as conn:
        conn.execute(statement, params)


# --------------------------------------------------------------------------- at capture

def test_capture_stores_the_value_the_bundle_verifier_computes(setup: Setup, local_server: Any) -> None:
    records = main_records(setup)
    values = stored(setup)
    article = hashlib.sha256(ARTICLE).hexdigest()
    expected = {
        "/decoded/gzip": (article, None), "/decoded/deflate-raw": (article, None),
        "/decoded/deflate-zlib": (article, None), "/decoded/identity": (hashlib.sha256(ARTICLE).hexdigest(), None),
        "/decoded/plain": (hashlib.sha256(PAGES["/decoded/plain"][0]).hexdigest(), None),
        "/decoded/br": (None, "not computed: evarchive does not decode the 'br' content coding"),
        "/decoded/unknown": (None, "not computed: evarchive does not decode the 'x-evidence' content coding"),
        "/decoded/truncated-gzip": (None, "not computed: the gzip stream is incomplete"),
    }
    for path in PAGES:
        rec = records[local_server.url(path)]
        assert values[rec["member_sha256"]] == verifier_value(setup, rec), path
        if path in expected:
            assert values[rec["member_sha256"]] == expected[path], path
    corrupt = values[records[local_server.url("/decoded/corrupt-gzip")]["member_sha256"]]
    assert corrupt[0] is None and corrupt[1].startswith("not computed: the body does not decode as gzip")


def test_a_revisit_stores_nothing_and_shows_its_originals_value(setup: Setup) -> None:
    # Setup captured page A twice: the second capture is a revisit, which has no body to decode.
    revisits = list(setup.arch.db.query("SELECT member_sha256 FROM capture_records WHERE record_type = 'revisit'"))
    assert revisits and not set(stored(setup)) & {r["member_sha256"] for r in revisits}


# --------------------------------------------------------------------------- export

def test_an_archive_without_stored_values_exports_the_same_index_and_gains_them(setup: Setup) -> None:
    before = stored(setup)
    assert len(before) == len(PAGES) + 3  # each page's final response, and A, B, A2 (after the redirect)
    with_values = setup.tmp / "with-values"
    assert setup.export(with_values, "--report", TITLE) == 0
    assert stored(setup) == before  # nothing recomputed, nothing added
    edit(setup, "DELETE FROM decoded_contents")  # as an archive captured by an older evarchive
    without = setup.tmp / "without-values"
    assert setup.export(without, "--report", TITLE) == 0
    assert decoded_fields(without) == decoded_fields(with_values)
    assert stored(setup) == before  # computed once more by the export, and kept
    assert verify_archive(setup.arch, deep=True).intact
    result = run_verifier(with_values)
    assert result.returncode == 0, result.stdout


def test_export_takes_the_stored_value_and_verify_deep_finds_a_wrong_one(setup: Setup, local_server: Any) -> None:
    assert verify_archive(setup.arch, deep=True).intact
    rec = main_records(setup)[local_server.url("/decoded/gzip")]
    forged = hashlib.sha256(b"another page").hexdigest()
    edit(setup, "UPDATE decoded_contents SET decoded_sha256 = ? WHERE member_sha256 = ?",
         (forged, rec["member_sha256"]))
    out = setup.tmp / "bundle"
    assert setup.export(out, "--report", TITLE) == 0
    assert decoded_fields(out)[rec["record_id"]] == ("gzip", forged, None)  # not inflated again
    result = run_verifier(out)  # the clerk's verifier decodes the page and disagrees
    assert result.returncode == 1
    assert f"the decoded content's SHA-256 is {hashlib.sha256(ARTICLE).hexdigest()}, the index says {forged}" \
        in result.stdout

    assert verify_archive(setup.arch).intact  # fast mode does not decode pages
    deep = verify_archive(setup.arch, deep=True)
    [problem] = deep.failures
    assert (problem.kind, problem.record_id, problem.file, problem.offset, problem.table) == (
        "decoded-hash-wrong", rec["record_id"], rec["warc_file"], rec["offset"], "decoded_contents")
    assert f"is {forged}, but the record's bytes give {hashlib.sha256(ARTICLE).hexdigest()}" in problem.message


def test_verify_deep_leaves_a_damaged_record_to_the_file_checks(setup: Setup, local_server: Any) -> None:
    rec = main_records(setup)[local_server.url("/decoded/gzip")]
    path = setup.archive_dir / "warcs" / rec["warc_file"]
    data = bytearray(path.read_bytes())
    data[rec["offset"] + rec["length"] // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    deep = verify_archive(setup.arch, deep=True)
    assert deep.failures and "decoded-hash-wrong" not in {p.kind for p in deep.failures}


@pytest.mark.parametrize(("path", "forged"), [
    ("/decoded/plain", (hashlib.sha256(b"another page").hexdigest(), None)),
    ("/decoded/deflate-zlib", (hashlib.sha256(ARTICLE.upper()).hexdigest(), None)),
    ("/decoded/br", (None, "not computed: the body does not decode as br")),
    ("/decoded/corrupt-gzip", (hashlib.sha256(ARTICLE).hexdigest(), None)),
    ("/decoded/gzip", (None, "not computed: the gzip stream is incomplete")),
])
def test_verify_deep_finds_each_kind_of_wrong_stored_value(setup: Setup, local_server: Any, path: str,
                                                         forged: tuple[str | None, str | None]) -> None:
    rec = main_records(setup)[local_server.url(path)]
    edit(setup, "UPDATE decoded_contents SET decoded_sha256 = ?, decoded_note = ? WHERE member_sha256 = ?",
         (*forged, rec["member_sha256"]))
    [problem] = verify_archive(setup.arch, deep=True).failures
    assert (problem.kind, problem.record_id) == ("decoded-hash-wrong", rec["record_id"])
    assert f"is {forged[0] or forged[1]}, but the record's bytes give " in problem.message
