"""Tamper tests for `evarchive verify`: each change is detected and localised.

Archives are real: WARCs written by the project's WarcWriter, rows in a real
SQLite catalogue, edits made with a separate sqlite3 connection or by flipping
bytes on disk.
"""

from __future__ import annotations

import importlib
import json
import random
import sqlite3
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

import evidence

from evarchive.archive import Archive
from evarchive.cli import main
from evarchive.verify import VerifyResult, verify_archive


@pytest.fixture
def arch(tmp_path: Path) -> Archive:
    return evidence.build(tmp_path / "archive", pages=6, seed=7)


def _inflaters() -> list[Any]:
    from evarchive.verify import scan as v

    found = [pytest.param("libdeflate", id="libdeflate")] if v._LIBDEFLATE is not None else []
    for label, module in (("zlib-ng", "zlib_ng.zlib_ng"), ("isal", "isal.isal_zlib"), ("zlib", "zlib")):
        try:
            found.append(pytest.param(importlib.import_module(module), id=label))
        except ImportError:
            pass
    return found


@pytest.fixture(params=_inflaters())
def inflater(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run a deep test with each installed inflater (verify prefers the fastest one present).

    "libdeflate" is the default set-up: whole catalogued members through libdeflate, the rest
    streamed; the others stream every member through that module."""
    from evarchive.verify import scan as v

    module = request.param
    if module == "libdeflate":
        return module
    monkeypatch.setattr(v, "_LIBDEFLATE", None)
    monkeypatch.setattr(v, "_inflate_mod", module)
    monkeypatch.setattr(v, "_INFLATE_ERRORS", tuple({zlib.error, getattr(module, "error", zlib.error)}))
    return module


def records(a: Archive, record_type: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT r.*, s.url FROM capture_records r JOIN captures c ON c.id = r.capture_id " \
          "JOIN sources s ON s.id = c.source_id"
    rows = list(a.db.query(sql + " ORDER BY r.offset"))
    return [r for r in rows if record_type is None or r["record_type"] == record_type]


def warc_path(a: Archive, rec: dict[str, Any]) -> Path:
    return a.warcs_dir / rec["warc_file"]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def sql(a: Archive, statement: str, params: tuple = ()) -> None:
    """Edit the catalogue behind evarchive's back, as an attacker with sqlite3 would."""
    conn = sqlite3.connect(a.path / "catalogue.sqlite")
    conn.execute(statement, params)
    conn.commit()
    conn.close()


def kinds(result: VerifyResult) -> set[str]:
    return {p.kind for p in result.failures}


def assert_localised_to(result: VerifyResult, rec: dict[str, Any]) -> None:
    """Every problem that names a record names this one; the file-level one names its file."""
    assert not result.intact
    for p in result.failures:
        if p.file is not None:
            assert p.file == rec["warc_file"], p
        if p.record_id is not None:
            assert p.record_id == rec["record_id"], p
        if p.capture_id is not None:
            assert p.capture_id == rec["capture_id"], p
    named = [p for p in result.failures if p.record_id == rec["record_id"]]
    assert named, result.failures
    assert all(p.url == rec["url"] for p in named)


def test_intact_archive_passes_fast_and_deep_and_records_runs(arch: Archive) -> None:
    fast = verify_archive(arch)
    deep = verify_archive(arch, deep=True)
    assert fast.intact and deep.intact, fast.failures + deep.failures
    assert deep.records == len(records(arch)) + 1  # + warcinfo
    runs = list(arch.db.query("SELECT * FROM verification_runs ORDER BY id"))
    assert [(r["mode"], r["result"]) for r in runs] == [("fast", "intact"), ("deep", "intact")]
    events = [r["event"] for r in arch.db.query("SELECT event FROM custody_log ORDER BY seq")]
    assert events[-2:] == ["verify", "verify"]
    assert verify_archive(arch, deep=True).intact  # its own log entries verify too


def test_verify_never_writes_to_warcs(arch: Archive) -> None:
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in arch.warcs_dir.iterdir()}
    verify_archive(arch, deep=True)
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in arch.warcs_dir.iterdir()}
    assert before == after


@pytest.mark.parametrize("deep", [False, True])
def test_flipped_byte_in_record_body(arch: Archive, deep: bool, inflater: Any) -> None:
    rec = max(records(arch, "response"), key=lambda r: r["length"])
    flip(warc_path(arch, rec), rec["offset"] + rec["length"] // 2)
    result = verify_archive(arch, deep=deep)
    assert "file-hash" in kinds(result) and "record-changed" in kinds(result)
    if deep:
        assert kinds(result) & {"record-corrupt", "block-digest"}
    assert_localised_to(result, rec)


def test_flipped_byte_in_warc_header(arch: Archive) -> None:
    # The WARC header is the first thing deflated in a member: just past the 10-byte gzip header.
    rec = records(arch, "request")[2]
    flip(warc_path(arch, rec), rec["offset"] + 12)
    result = verify_archive(arch, deep=True)
    assert_localised_to(result, rec)


@pytest.mark.parametrize("where", ["magic", "trailer", "mtime"])
def test_flipped_byte_at_gzip_member_boundary(arch: Archive, where: str, inflater: Any) -> None:
    rec = records(arch, "metadata")[1]
    offset = {"magic": rec["offset"], "trailer": rec["offset"] + rec["length"] - 1,
              "mtime": rec["offset"] + 4}[where]
    flip(warc_path(arch, rec), offset)
    result = verify_archive(arch, deep=True)
    assert_localised_to(result, rec)
    # A gzip header byte (mtime) inflates fine: only the member hash can see it.
    assert "record-changed" in kinds(result)


def test_flipped_byte_in_warc_header_any_inflater(arch: Archive, inflater: Any) -> None:
    rec = records(arch, "response")[1]
    flip(warc_path(arch, rec), rec["offset"] + 12)
    assert_localised_to(verify_archive(arch, deep=True), rec)


@pytest.mark.parametrize("whole", [True, False], ids=["libdeflate", "streaming"])
def test_scan_members_takes_only_exact_members(tmp_path: Path, whole: bool,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A span is accepted only when it is exactly one clean gzip member, whichever inflater runs."""
    import gzip

    from evarchive.verify import scan as v

    if not whole:
        monkeypatch.setattr(v, "_LIBDEFLATE", None)
    elif v._LIBDEFLATE is None:
        pytest.skip("deflate wheel not installed")
    body = b"x" * 100
    record = (b"WARC/1.1\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:1>\r\n"
              b"Content-Length: 100\r\n\r\n" + body + b"\r\n\r\n")
    member = gzip.compress(record)
    path = tmp_path / "f.warc.gz"
    path.write_bytes(member + b"junk" + member)
    got = v.scan_members(path, [(0, len(member))])
    assert got is not None and got[0].record_id == "<urn:uuid:1>" and not got[0].errors
    assert got[0].block_sha256 == __import__("hashlib").sha256(body).hexdigest()
    assert v.scan_members(path, [(0, len(member) + 4)]) is None  # bytes after the member
    assert v.scan_members(path, [(0, len(member) - 1)]) is None  # member cut short
    lying = bytearray(member)
    lying[-4:] = (5).to_bytes(4, "little")  # ISIZE smaller than the inflated record
    path.write_bytes(bytes(lying))
    assert v.scan_members(path, [(0, len(lying))]) is None


def test_truncated_file(arch: Archive) -> None:
    recs = records(arch)
    cut = recs[-4]
    path = warc_path(arch, cut)
    with open(path, "r+b") as fh:
        fh.truncate(cut["offset"] + 5)
    result = verify_archive(arch)
    assert {"file-truncated", "capture-lost"} <= kinds(result)
    lost = {p.capture_id for p in result.failures if p.kind == "capture-lost"}
    assert lost == {r["capture_id"] for r in recs if r["offset"] + r["length"] > cut["offset"] + 5}
    trunc = next(p for p in result.failures if p.kind == "file-truncated")
    assert trunc.offset == cut["offset"] + 5


def test_deleted_file(arch: Archive) -> None:
    rec = records(arch)[0]
    warc_path(arch, rec).unlink()
    result = verify_archive(arch)
    assert {"file-missing", "capture-lost"} <= kinds(result)
    lost = {p.url for p in result.failures if p.kind == "capture-lost"}
    assert lost == {r["url"] for r in records(arch)}


def test_extra_file(arch: Archive) -> None:
    (arch.warcs_dir / "planted.warc.gz").write_bytes(b"\x1f\x8b not evidence")
    result = verify_archive(arch)
    assert [(p.kind, p.file) for p in result.failures] == [("unknown-file", "planted.warc.gz")]


def test_catalogue_hash_edited(arch: Archive) -> None:
    rec = records(arch, "response")[0]
    sql(arch, "UPDATE capture_records SET block_sha256 = ? WHERE id = ?", ("0" * 64, rec["id"]))
    result = verify_archive(arch, deep=True)
    edited = [p for p in result.failures if p.kind == "catalogue-edited"]
    assert [(p.table, p.column, p.record_id) for p in edited] == [
        ("capture_records", "block_sha256", rec["record_id"])]
    assert "record-mismatch" in kinds(result)
    assert_localised_to(result, rec)


def test_catalogue_offset_edited(arch: Archive) -> None:
    rec = records(arch, "response")[1]
    sql(arch, "UPDATE capture_records SET offset = offset + 7 WHERE id = ?", (rec["id"],))
    result = verify_archive(arch, deep=True)
    edited = [p for p in result.failures if p.kind == "catalogue-edited"]
    assert [(p.column, p.record_id) for p in edited] == [("offset", rec["record_id"])]
    assert "record-missing" in kinds(result)
    assert all(p.file in (None, rec["warc_file"]) for p in result.failures)


def test_catalogue_capture_time_edited(arch: Archive) -> None:
    cap = arch.db.execute("SELECT id FROM captures ORDER BY id LIMIT 1 OFFSET 2").fetchone()[0]
    sql(arch, "UPDATE captures SET started_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?", (cap,))
    result = verify_archive(arch)  # no WARC byte changed: the custody log catches it even in fast mode
    assert [(p.kind, p.table, p.column, p.capture_id) for p in result.failures] == [
        ("catalogue-edited", "captures", "started_at", cap)]
    assert result.failures[0].url


def test_catalogue_row_inserted_behind_evarchives_back(arch: Archive) -> None:
    sql(arch, "INSERT INTO captures (source_id, url_requested, status, started_at, ended_at) "
              "SELECT source_id, url_requested, status, started_at, ended_at FROM captures LIMIT 1")
    result = verify_archive(arch)
    assert kinds(result) == {"catalogue-unvouched"}


def test_log_entry_deleted(arch: Archive) -> None:
    sql(arch, "DELETE FROM custody_log WHERE seq = 3")
    result = verify_archive(arch)
    deleted = [p for p in result.failures if p.kind == "log-deleted"]
    assert deleted and deleted[0].log_seq == 3


def test_log_entries_reordered(arch: Archive) -> None:
    sql(arch, "UPDATE custody_log SET seq = -1 WHERE seq = 3")
    sql(arch, "UPDATE custody_log SET seq = 3 WHERE seq = 4")
    sql(arch, "UPDATE custody_log SET seq = 4 WHERE seq = -1")
    result = verify_archive(arch)
    reordered = {p.log_seq for p in result.failures if p.kind == "log-reordered"}
    assert reordered == {3, 4}


def test_log_entry_edited(arch: Archive) -> None:
    sql(arch, "UPDATE custody_log SET at = '2019-01-01T00:00:00.000000Z' WHERE seq = 2")
    result = verify_archive(arch)
    assert [(p.kind, p.log_seq) for p in result.failures] == [("log-edited", 2)]


def test_interrupted_tail_is_a_note_not_a_problem(tmp_path: Path) -> None:
    a = evidence.build(tmp_path / "a", pages=3, close=False)
    name = a.db.execute("SELECT name FROM warc_files").fetchone()[0]
    with open(a.warcs_dir / name, "ab") as fh:  # a record the dead writer never committed
        fh.write(b"\x1f\x8b\x08\x00partial")
    a.db.execute("UPDATE warc_files SET writer_lock = NULL WHERE name = ?", [name])
    from evarchive.warcwriter import recover_interrupted

    recover_interrupted(a.warcs_dir, a.db)
    result = verify_archive(a, deep=True)
    assert result.intact, result.failures
    assert "interrupted-tail" in {n.kind for n in result.notes}


def test_scope_by_url_limits_the_work(arch: Archive) -> None:
    recs = records(arch, "response")
    target, other = recs[0], recs[-1]
    sql(arch, "UPDATE captures SET http_status = 500 WHERE id = ?", (other["capture_id"],))
    assert verify_archive(arch, urls=[target["url"]]).intact
    assert not verify_archive(arch, urls=[other["url"]]).intact


def test_cli_exit_codes_json_and_quiet(arch: Archive, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(arch.path)
    assert main(["verify", "-a", root, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    rec = records(arch, "response")[0]
    flip(warc_path(arch, rec), rec["offset"] + rec["length"] // 2)
    assert main(["verify", "-a", root, "--deep", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["result"] == "problems"
    assert any(p.get("record_id") == rec["record_id"] and p.get("url") == rec["url"] for p in report["problems"])
    assert main(["verify", "-a", root, "--report", "nope"]) == 2
    assert main(["log", "-a", root, "--head"]) == 0
    seq, digest = capsys.readouterr().out.split()
    assert len(digest) == 64 and int(seq) > 0


@pytest.mark.slow
def test_random_single_byte_flips_are_all_detected_and_localised(tmp_path: Path) -> None:
    """Many random flips across WARC bytes and catalogue rows; each on a fresh copy."""
    import shutil

    base = evidence.build(tmp_path / "base", pages=8, seed=3, sizes=(200, 4000))
    base.close()
    rng = random.Random(11)
    for trial in range(int(__import__("os").environ.get("EVARCHIVE_FLIPS", "200"))):
        work = tmp_path / f"t{trial % 2}"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base.path, work)
        a = Archive.open(work)
        try:
            check_one_flip(a, rng)
        finally:
            a.close()


def check_one_flip(a: Archive, rng: random.Random) -> None:
    from evarchive.verify import uncovered

    recs = records(a)
    if rng.random() < 0.6:
        path = a.warcs_dir / recs[0]["warc_file"]
        recs = [r for r in recs if r["warc_file"] == recs[0]["warc_file"]]  # offsets are per file
        offset = rng.randrange(path.stat().st_size)
        flip(path, offset)
        result = verify_archive(a, deep=True, record=False)
        hit = next((r for r in recs if r["offset"] <= offset < r["offset"] + r["length"]), None)
        if hit is not None:
            assert_localised_to(result, hit)
        else:  # the warcinfo record: no capture to name
            assert any(p.kind in ("bytes-changed", "block-digest", "record-corrupt") for p in result.failures)
            assert all(p.capture_id is None for p in result.failures)
            assert any(a_ <= offset < b for a_, b in uncovered(recs, path.stat().st_size))
    else:
        rec = rng.choice(recs)
        column = rng.choice(["offset", "length", "block_sha256", "payload_sha256", "member_sha256",
                             "record_id", "target_uri"])
        value = rec[column]
        if value is None:
            return
        if isinstance(value, int):
            new: Any = value ^ (1 << rng.randrange(8))
        else:
            i = rng.randrange(len(value))
            new = value[:i] + chr(ord(value[i]) ^ 1) + value[i + 1:]
        sql(a, f"UPDATE capture_records SET [{column}] = ? WHERE id = ?", (new, rec["id"]))
        result = verify_archive(a, deep=True, record=False)
        assert not result.intact
        edited = [p for p in result.failures if p.kind == "catalogue-edited"]
        assert [(p.table, p.column) for p in edited] == [("capture_records", column)]
        for p in result.failures:
            assert p.capture_id in (None, rec["capture_id"]), p


def test_intact_capture_entries_are_matched_in_sql(arch: Archive) -> None:
    """The fast path: every capture entry is rebuilt from the current rows in SQL and matches."""
    from evarchive.verify import Verifier

    v = Verifier(arch)
    v.load()
    captures = v.log_checks(arch.db).unchanged_captures()
    ids = [c for (c,) in arch.db.execute("SELECT id FROM captures")]
    assert ids and all(c in captures for c in ids) and captures.count == len(ids)


@pytest.mark.parametrize("value", ["payload_size + 0.5", "'#' || payload_size", "X'00'"])
def test_catalogue_value_retyped(arch: Archive, value: str) -> None:
    """A REAL, text or BLOB where the entry has an integer: json_object cannot be trusted with
    some of these, so the entry must take the exact path and still be named to the column."""
    cap = arch.db.execute("SELECT id FROM captures ORDER BY id LIMIT 1 OFFSET 1").fetchone()[0]
    sql(arch, f"UPDATE captures SET payload_size = {value} WHERE id = ?", (cap,))
    result = verify_archive(arch, record=False)
    assert [(p.kind, p.table, p.column, p.capture_id) for p in result.failures] == [
        ("catalogue-edited", "captures", "payload_size", cap)]


def test_record_moved_to_another_capture(arch: Archive) -> None:
    """A record row re-pointed at another capture (another source's evidence) is named."""
    recs = records(arch, "metadata")
    moved, other = recs[0], recs[1]
    sql(arch, "UPDATE capture_records SET capture_id = ? WHERE id = ?", (other["capture_id"], moved["id"]))
    result = verify_archive(arch, record=False)
    edited = [(p.kind, p.column, p.record_id) for p in result.failures]
    assert edited == [("catalogue-edited", "capture_id", moved["record_id"])]


def test_parallel_scan_finds_what_the_sequential_walk_finds(tmp_path: Path, inflater: Any,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """deep splits a file at catalogued offsets; members, digests and errors must be the same
    as a front-to-back walk, including a member larger than one work unit and an interrupted tail."""
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import asdict

    from evarchive.verify import Verifier
    from evarchive.verify import scan as v
    from evarchive.warcwriter import recover_interrupted

    # Small work units and reads, so small bodies cover every path (batch, streamed member, tail).
    monkeypatch.setattr(v, "SPAN_BATCH", 64 << 10)
    monkeypatch.setattr(v, "READ_SIZE", 16 << 10)
    monkeypatch.setattr(v, "SPAN_IN", 8 << 10)
    monkeypatch.setattr(v, "SPAN_OUT", 16 << 10)

    a = evidence.build(tmp_path / "a", pages=5, seed=4, sizes=(100, 30_000), close=False)
    from evarchive.warcwriter import WarcWriter

    big = WarcWriter(a.warcs_dir, a.locks_dir, a.db, max_size=1 << 30)
    evidence.add_capture(a, big, "http://example.org/big.bin", evidence.binary_body(v.SPAN_BATCH + 12345),
                         "application/octet-stream")
    evidence.add_capture(a, big, "http://example.org/big.html",
                         evidence.html_body(random.Random(2), 3 * v.SPAN_BATCH), "text/html")
    name = big.begin_capture()
    with open(a.warcs_dir / name, "ab") as fh:  # the uncommitted tail of a dead writer
        fh.write(b"\x1f\x8b\x08\x00partial")
    a.db.execute("UPDATE warc_files SET writer_lock = NULL, status = 'open'")
    recover_interrupted(a.warcs_dir, a.db)

    verifier = Verifier(a, deep=True)
    verifier.load()
    files = [(n, a.warcs_dir / n) for n, r in verifier.scope.files.items() if r["status"] != "open"]
    assert files
    with ThreadPoolExecutor(2) as pool:
        for n, path in files:
            parallel = verifier.file_checks._submit(pool, n, path)()
            known = [r[0] for r in a.db.execute("SELECT offset FROM capture_records WHERE warc_file = ?", [n])]
            sequential = v.scan_file(path, n, known + [0])
            assert parallel.sha256 == sequential.sha256 and parallel.size == sequential.size
            assert [asdict(m) for m in parallel.members] == [asdict(m) for m in sequential.members]
            assert parallel.damaged == sequential.damaged
    result = verify_archive(a, deep=True, record=False)
    assert result.intact, result.failures


@pytest.mark.parametrize("seed", range(6))
def test_record_parser_does_not_depend_on_chunking(seed: int) -> None:
    """Heads split anywhere, trailers short or long: the same findings for any chunking."""
    from dataclasses import asdict

    from evarchive.verify import Member, RecordParser

    rng = random.Random(seed)
    body = rng.randbytes(rng.randint(0, 5000))
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body
    head = (f"WARC/1.1\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:{seed}>\r\n"
            f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http)}\r\n\r\n").encode()
    trailer = rng.choice([b"\r\n\r\n", b"\r\n", b"\r\n\r\nextra", b""])
    record = head + http + trailer

    def parse(cuts: list[int]) -> dict[str, Any]:
        parser = RecordParser(Member(0))
        bounds = [0, *sorted(cuts), len(record)]
        for a_, b in zip(bounds, bounds[1:], strict=False):
            parser.feed(record[a_:b])
        return asdict(parser.finish())

    whole = parse([])
    for _ in range(30):
        assert parse([rng.randrange(len(record) + 1) for _ in range(rng.randint(1, 6))]) == whole
    assert whole["block_sha256"] == __import__("hashlib").sha256(http).hexdigest()
    assert whole["payload_sha256"] == __import__("hashlib").sha256(body).hexdigest()
    assert bool(whole["errors"]) == (trailer != b"\r\n\r\n")


def test_record_row_inserted_behind_evarchives_back(arch: Archive) -> None:
    rec = records(arch, "metadata")[2]
    sql(arch, "INSERT INTO capture_records (capture_id, warc_file, offset, length, record_id, record_type, "
              "target_uri, block_sha256, payload_sha256, member_sha256) SELECT capture_id, warc_file, offset, length, "
              "'<urn:uuid:planted>', record_type, target_uri, block_sha256, payload_sha256, member_sha256 "
              "FROM capture_records WHERE id = ?", (rec["id"],))
    result = verify_archive(arch, record=False)
    assert [(p.kind, p.table, p.record_id, p.capture_id) for p in result.failures] == [
        ("catalogue-unvouched", "capture_records", "<urn:uuid:planted>", rec["capture_id"])]


# ------------------------------------------------------------------ the evidence of live checks

def checked_archive(tmp_path: Path, server: Any) -> Archive:
    """capture -> check with evidence: a drifted page, a gone page and a redirect home."""
    from fakes import FakeClock, NoSleep
    from localserver import article_page

    from evarchive.capture import CaptureSettings, capture_urls
    from evarchive import CheckSettings, check_sources, select_sources

    a = Archive.open(tmp_path / "checked")
    urls = [server.url("/article/kappa"), server.url("/status/404"), server.url("/redirect-home")]
    capture_urls(a, urls[:1], CaptureSettings(sleep=NoSleep(), ca_file=server.ca_pem_path))
    server.set_route("/article/kappa", body=article_page("kappa", True, 1))
    net = CaptureSettings(sleep=NoSleep(), clock=FakeClock(), retries=1, ca_file=server.ca_pem_path)
    check_sources(a, select_sources(a, urls), CheckSettings(network=net, commit_interval=0.0))
    return a


def check_records(a: Archive) -> list[dict[str, Any]]:
    return list(a.db.query("SELECT r.*, s.url FROM check_records r JOIN checks k ON k.id = r.check_id "
                           "JOIN sources s ON s.id = k.source_id ORDER BY r.warc_file, r.offset"))


def test_a_routine_check_leaves_the_archive_intact(local_server: Any, tmp_path: Path) -> None:
    a = checked_archive(tmp_path, local_server)
    recs = check_records(a)
    assert {r["record_type"] for r in recs} >= {"request", "response", "metadata"}
    fast, deep = verify_archive(a), verify_archive(a, deep=True)
    assert fast.failures == [] and deep.failures == []
    assert deep.records == len(records(a)) + len(recs) + a.db.execute("SELECT COUNT(*) FROM warc_files").fetchone()[0]


@pytest.mark.parametrize("deep", [False, True])
def test_a_tampered_check_record_is_named(local_server: Any, tmp_path: Path, deep: bool) -> None:
    a = checked_archive(tmp_path, local_server)
    rec = max((r for r in check_records(a) if r["record_type"] == "response"), key=lambda r: r["length"])
    flip(a.warcs_dir / rec["warc_file"], rec["offset"] + rec["length"] // 2)
    result = verify_archive(a, deep=deep)
    assert "record-changed" in kinds(result)
    named = [p for p in result.failures if p.record_id is not None]
    assert named and {(p.record_id, p.check_id, p.url) for p in named} == {
        (rec["record_id"], rec["check_id"], rec["url"])}
    assert all(p.file == rec["warc_file"] for p in result.failures)


@pytest.mark.parametrize("edit, column", [
    ("UPDATE checks SET verdict = 'ok' WHERE id = ?", "verdict"),
    ("UPDATE checks SET checked_at = '2020-01-01T00:00:00.000000Z' WHERE id = ?", None),
])
def test_an_edited_check_row_is_named(local_server: Any, tmp_path: Path, edit: str, column: str | None) -> None:
    a = checked_archive(tmp_path, local_server)
    check_id = a.db.execute("SELECT id FROM checks WHERE verdict = 'gone' ORDER BY id LIMIT 1").fetchone()[0]
    sql(a, edit, (check_id,))
    result = verify_archive(a, deep=True)
    edited = [(p.kind, p.table, p.check_id) for p in result.failures]
    assert set(edited) == {("catalogue-edited", "checks", check_id)}
    assert {p.column for p in result.failures} == {column}


def test_an_edited_check_record_row_is_named(local_server: Any, tmp_path: Path) -> None:
    a = checked_archive(tmp_path, local_server)
    rec = [r for r in check_records(a) if r["record_type"] == "metadata"][0]
    sql(a, "UPDATE check_records SET member_sha256 = ? WHERE id = ?", ("0" * 64, rec["id"]))
    result = verify_archive(a)
    assert sorted((p.kind, p.table, p.column, p.record_id, p.check_id) for p in result.failures) == [
        ("catalogue-edited", "check_records", "member_sha256", rec["record_id"], rec["check_id"]),
        ("record-changed", None, None, rec["record_id"], rec["check_id"])]  # the bytes there hash otherwise
    sql(a, "UPDATE check_records SET member_sha256 = ?, target_uri = 'http://elsewhere.example/' WHERE id = ?",
        (rec["member_sha256"], rec["id"]))
    result = verify_archive(a, deep=True)
    assert [(p.kind, p.column, p.record_id) for p in result.failures] == [
        ("record-mismatch", "target_uri", rec["record_id"])]


@pytest.mark.parametrize("edit, deep, found", [
    ("UPDATE check_records SET offset = offset + 1 WHERE id = ?", True, {"record-missing", "record-orphan"}),
    ("UPDATE check_records SET offset = offset + 1 WHERE id = ?", False, {"record-changed"}),
    ("UPDATE check_records SET length = length - 1 WHERE id = ?", False, {"record-changed"}),
    ("DELETE FROM check_records WHERE id = ?", False, {"catalogue-deleted"}),
    ("DELETE FROM check_records WHERE id = ?", True, {"catalogue-deleted", "record-orphan"}),
])
def test_a_moved_or_deleted_check_record_row_is_found(local_server: Any, tmp_path: Path, edit: str, deep: bool,
                                                      found: set[str]) -> None:
    a = checked_archive(tmp_path, local_server)
    rec = [r for r in check_records(a) if r["record_type"] == "response"][0]
    sql(a, edit, (rec["id"],))
    result = verify_archive(a, deep=deep)
    assert kinds(result) == found
    assert all(p.file in (None, rec["warc_file"]) and p.record_id in (None, rec["record_id"])
               for p in result.failures), result.failures
    named = {(p.check_id, p.url) for p in result.failures if p.kind != "record-orphan" or "UPDATE" in edit}
    assert named == {(rec["check_id"], rec["url"])}


def test_check_rows_added_behind_evarchives_back_are_reported(local_server: Any, tmp_path: Path) -> None:
    a = checked_archive(tmp_path, local_server)
    sql(a, "INSERT INTO checks (source_id, checked_at, ended_at, verdict, reason) "
           "SELECT source_id, checked_at, ended_at, 'ok', 'planted' FROM checks LIMIT 1")
    planted = a.db.execute("SELECT MAX(id) FROM checks").fetchone()[0]
    result = verify_archive(a)
    assert [(p.kind, p.table, p.check_id) for p in result.failures] == [
        ("catalogue-unvouched", "checks", planted)]


# ------------------------------------------------------------------ one snapshot

@pytest.mark.parametrize("owner, point", [("run.Verifier", "load"), ("files.FileChecks", "check_files"),
                                          ("rows.UnvouchedRows", "find"), ("run", "attach_claims")])
def test_a_capture_committed_during_verify_is_not_judged(arch: Archive, owner: str, point: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever moment a capture commits while verify runs, verify judges the state it started from."""
    from evarchive.warcwriter import WarcWriter

    module, _, cls = owner.partition(".")
    target = importlib.import_module(f"evarchive.verify.{module}")
    target = getattr(target, cls) if cls else target
    original = getattr(target, point)
    committed: list[int] = []

    def commit_then_go_on(self: Any, *args: Any) -> Any:
        if not committed:
            other = Archive.open(arch.path)  # another process's connection, in effect
            writer = WarcWriter(other.warcs_dir, other.locks_dir, other.db)
            committed.append(evidence.add_capture(other, writer, "http://example.org/late", b"late" * 100))
            writer.close()
            other.close()
        return original(self, *args)

    monkeypatch.setattr(target, point, commit_then_go_on)
    for deep in (False, True):
        committed.clear()
        result = verify_archive(arch, deep=deep)
        assert committed and result.failures == [], result.failures
    monkeypatch.undo()
    assert verify_archive(arch, deep=True).failures == []  # and the next run sees it all, intact
    runs = list(arch.db.query("SELECT result FROM verification_runs"))
    assert [r["result"] for r in runs] == ["intact"] * 3


CAPTURE_LOOP = """
import sys
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
arch = Archive.open(sys.argv[1])
urls = [sys.argv[2] + f"?n={i}" for i in range(int(sys.argv[3]))]
capture_urls(arch, urls, CaptureSettings(concurrency=4, per_host=4, workers=1, commit_every=1))
"""


@pytest.mark.slow
def test_verify_while_a_capture_process_commits(local_server: Any, tmp_path: Path) -> None:
    import subprocess

    root = tmp_path / "busy"
    Archive.open(root).close()
    for attempt in range(2):
        proc = subprocess.Popen([sys.executable, "-c", CAPTURE_LOOP, str(root), local_server.url("/plain"), "40"])
        runs = 0
        try:
            while proc.poll() is None or runs == 0:
                a = Archive.open(root)
                try:
                    result = verify_archive(a, deep=runs % 2 == 1)
                finally:
                    a.close()
                assert result.failures == [], (attempt, runs, result.failures)
                runs += 1
        finally:
            proc.wait(timeout=60)
        assert proc.returncode == 0
    a = Archive.open(root)
    assert a.db.execute("SELECT COUNT(*) FROM verification_runs WHERE result <> 'intact'").fetchone()[0] == 0
    assert verify_archive(a, deep=True).failures == []
    a.close()


# ------------------------------------------------------------------ past verifications

@pytest.mark.parametrize("column, value", [("started_at", "2001-01-01T00:00:00.000000Z"), ("result", "problems"),
                                           ("problems", 3)])
def test_an_edited_verification_run_is_named(arch: Archive, column: str, value: Any) -> None:
    verify_archive(arch)
    run_id = arch.db.execute("SELECT MAX(id) FROM verification_runs").fetchone()[0]
    sql(arch, f"UPDATE verification_runs SET {column} = ? WHERE id = ?", (value, run_id))
    result = verify_archive(arch, deep=True, record=False)
    assert [(p.kind, p.table, p.column) for p in result.failures] == [
        ("catalogue-edited", "verification_runs", column)]


def test_a_verification_run_added_behind_evarchives_back_is_reported(arch: Archive) -> None:
    verify_archive(arch)
    sql(arch, "INSERT INTO verification_runs (started_at, ended_at, mode, scope, result) "
              "VALUES ('2001-01-01T00:00:00.000000Z', '2001-01-01T00:00:01.000000Z', 'deep', '{}', 'intact')")
    result = verify_archive(arch, record=False)
    assert [(p.kind, p.table) for p in result.failures] == [("catalogue-unvouched", "verification_runs")]


# ------------------------------------------------------------------ --report

def test_every_report_option_finds_a_report_by_title_path_and_id(local_server: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command that takes --report resolves a reference the same way."""
    import typer.main

    from evarchive.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EVARCHIVE_ARCHIVE", raising=False)
    Path("r.txt").write_text(f"The ministry confirmed the figures.\n{local_server.url('/article/lambda')}\n")
    root = str(tmp_path / "archive")
    assert main(["archive", "r.txt", "-a", root, "--title", "Our Brief"]) == 0
    taking_report = sorted(name for name, cmd in typer.main.get_command(app).commands.items()
                           if any("--report" in p.opts for p in cmd.params))
    extra = {"check": ["--quiet"], "claims": [], "export": ["OUT"], "rot": [], "verify": ["--quiet"], "cite": [],
             "witness": ["--quiet", "--endpoint", "http://127.0.0.1:9"]}
    # witness finds the report, then cannot reach its (closed) service: a finding, exit 1, not 2
    found = {"witness": 1}
    monkeypatch.setenv("EVARCHIVE_SPN2_KEYS", "ACCESS:SECRET")
    assert taking_report == sorted(extra)
    for n, ref in enumerate(["Our Brief", "r.txt", str(tmp_path / "r.txt"), "1"]):
        for command in taking_report:
            args = [f"bundle-{n}" if a == "OUT" else a for a in extra[command]]
            assert main([command, "--report", ref, "-a", root, *args]) == found.get(command, 0), (command, ref)
    for command in taking_report:
        assert main([command, "--report", "No such report", "-a", root, *extra[command]]) == 2, command


@pytest.mark.parametrize("deep", [False, True])
def test_a_file_still_open_is_counted_with_the_records_it_checks(tmp_path: Path, deep: bool) -> None:
    """A WARC a crashed run left open is checked record by record; the summary counts it, instead
    of saying "0 file(s), 0 records" about records it did check."""
    from evarchive.warcwriter import WarcWriter

    a = Archive.open(tmp_path / "open")
    writer = WarcWriter(a.warcs_dir, a.locks_dir, a.db)
    for n in range(2):
        evidence.add_capture(a, writer, f"http://example.org/open/{n}", f"page {n}".encode() * 100)
    # the writer is never closed: the file stays 'open', as after a kill
    result = verify_archive(a, deep=deep, record=False)
    assert result.intact and "file-open" in {n.kind for n in result.notes}
    assert (result.files, result.records) == (1, 6 if deep else 0)  # records are counted by deep runs
    assert result.bytes == sum(r["length"] for r in records(a))
    rec = records(a, "response")[0]
    flip(warc_path(a, rec), rec["offset"] + rec["length"] - 10)
    assert "record-changed" in kinds(verify_archive(a, deep=deep, record=False))
    a.close()
