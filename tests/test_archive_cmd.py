"""`evarchive archive REPORT`: import, capture every source not yet preserved, report per claim.

The seed report's 30 hosts are served as look-alike pages by the shared local server; the
capture layer's own ``--resolve`` mapping sends each host to it (no hosts file is touched), and
``--ca-file`` trusts the test CA so the HTTPS captures validate as they would on the real web.
"""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from evarchive import cli
from evarchive.archive import Archive
from evarchive.citedurls import find_urls

SEED = Path(__file__).parent / "data" / "seed_report.txt"


def seed_urls() -> list[str]:
    return list(dict.fromkeys(u.url for u in find_urls(SEED.read_text(encoding="utf-8"))))


def look_alike(url: str) -> str:
    return (f"<!DOCTYPE html><html><head><title>Article</title></head><body><h1>Article at {url}</h1>"
            f"<p>Look-alike page served for evarchive's tests.</p></body></html>")


def serve_seed(server: object, skip: set[str] = frozenset()) -> list[str]:
    """Routes for the seed's URLs; returns the --resolve options pointing their hosts at the server."""
    hosts = set()
    for url in seed_urls():
        if url not in skip:
            server.set_route(url, body=look_alike(url))  # type: ignore[attr-defined]
        hosts.add(urlsplit(url).hostname)
    port = server.https_port  # type: ignore[attr-defined]
    return [option for host in sorted(hosts) for option in ("--resolve", f"{host}:127.0.0.1:{port}")]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def archive_args(archive_dir: Path, server: object, report: Path, resolve: list[str]) -> list[str]:
    return ["archive", str(report), "--archive", str(archive_dir), "--ca-file",
            server.ca_pem_path, "--retries", "0", "--timeout", "20", *resolve]  # type: ignore[attr-defined]


def test_archive_seed_preserves_every_claim(tmp_path: Path, local_server: object,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert len(seed_urls()) == 30
    archive_dir = tmp_path / "archive"
    args = archive_args(archive_dir, local_server, SEED, serve_seed(local_server))
    assert cli.main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["preserved"], result["unpreserved"]) == (24, 0)
    assert len(result["captures"]) == 30
    assert {c["status"] for c in result["captures"]} == {"captured"}
    assert all(s["preserved"] and s["capture_id"] for c in result["claims"] for s in c["sources"])

    archive = Archive.open(archive_dir)
    ok = archive.db.execute("SELECT COUNT(DISTINCT source_id) FROM captures WHERE status = 'ok'").fetchone()[0]
    assert ok == 30
    # The server saw TLS for the cited host names, and the non-ASCII dash percent-encoded on the wire.
    seen = {(e.sni, e.host) for e in local_server.log}  # type: ignore[attr-defined]
    assert ("rus.lsm.lv", "rus.lsm.lv") in seen and ("www.delfi.lt", "www.delfi.lt") in seen
    assert any("belarusi%E2%80%93uspel" in e.path for e in local_server.log)  # type: ignore[attr-defined]

    # Run again: nothing left to capture, and every claim is still preserved.
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "24 of 24 claims preserved" in " ".join(captured.out.split())
    assert archive.db.execute("SELECT COUNT(*) FROM captures").fetchone()[0] == 30


def test_archive_exits_1_when_a_claim_has_no_preserved_source(tmp_path: Path, local_server: object,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.txt"
    shutil.copy(SEED, report)
    resolve = serve_seed(local_server)
    # The claim citing brestcity.com has no other source: its host now points at a closed port.
    resolve += ["--resolve", f"brestcity.com:127.0.0.1:{closed_port()}"]
    archive_dir = tmp_path / "archive"
    assert cli.main([*archive_args(archive_dir, local_server, report, resolve), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["unpreserved"] == 1
    lost = [c for c in result["claims"] if not c["preserved"]]
    assert [s["url"] for s in lost[0]["sources"]] == ["https://brestcity.com/blog/litva-uzhestochila"]
    assert lost[0]["text"].startswith("In Lithuania, all conditions are created")
    failed = [c for c in result["captures"] if c["status"] == "failed"]
    assert [c["url"] for c in failed] == ["https://brestcity.com/blog/litva-uzhestochila"]

    # `claims` shows the same verdict, and a later run with the host reachable repairs it.
    assert cli.main(["claims", "--archive", str(archive_dir), "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert sum(not c["preserved"] for c in claims) == 1
    assert cli.main(archive_args(archive_dir, local_server, report, serve_seed(local_server))) == 0


def test_a_claim_with_one_preserved_source_of_two_is_preserved(tmp_path: Path, local_server: object,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.md"
    good = local_server.url("/archive-cmd/good")  # type: ignore[attr-defined]
    local_server.set_route("/archive-cmd/good", body=look_alike(good))  # type: ignore[attr-defined]
    bad = f"http://127.0.0.1:{closed_port()}/gone"
    report.write_text(f"A claim with two sources.\n\n{good}\n\n{bad}\n", encoding="utf-8")
    archive_dir = tmp_path / "archive"
    assert cli.main(["archive", str(report), "--archive", str(archive_dir), "--retries", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["preserved"], result["unpreserved"]) == (1, 0)
    assert [s["preserved"] for s in result["claims"][0]["sources"]] == [True, False]


def test_archive_refuses_bad_input_before_capturing(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("No links in this report.\n", encoding="utf-8")
    assert cli.main(["archive", str(report), "--archive", str(tmp_path / "archive")]) == 2


def flip_a_byte(archive_dir: Path, capture_id: int) -> None:
    """Damage the capture's response record on disk (as a failing disk or a careless hand would)."""
    archive = Archive.open(archive_dir)
    try:
        record = archive.db.execute("SELECT warc_file, offset, length FROM capture_records "
                                    "WHERE capture_id = ? AND record_type = 'response'", [capture_id]).fetchone()
    finally:
        archive.close()
    with open(archive_dir / "warcs" / record[0], "r+b") as fh:
        fh.seek(record[1] + record[2] // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_capture_preserves_nothing_and_archive_captures_anew(
        tmp_path: Path, local_server: object, capsys: pytest.CaptureFixture[str]) -> None:
    one, two = (local_server.url(f"/archive-cmd/{n}") for n in ("one", "two"))  # type: ignore[attr-defined]
    for url in (one, two):
        local_server.set_route(url, body=look_alike(url))  # type: ignore[attr-defined]
    report = tmp_path / "report.md"
    report.write_text(f"The first claim.\n\n{one}\n\nThe second claim.\n\n{two}\n", encoding="utf-8")
    archive_dir = tmp_path / "archive"
    args = ["archive", str(report), "--archive", str(archive_dir), "--retries", "0", "--json"]
    assert cli.main(args) == 0
    first = json.loads(capsys.readouterr().out)
    old_capture = first["claims"][0]["sources"][0]["capture_id"]
    flip_a_byte(archive_dir, old_capture)

    assert cli.main(["claims", "--archive", str(archive_dir), "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)
    assert [(c["text"], c["preserved"]) for c in claims] == [("The first claim.", False), ("The second claim.", True)]
    assert claims[0]["sources"][0] | {"capture_id": None, "damaged": True, "preserved": False} == \
        claims[0]["sources"][0]
    assert cli.main(["reports", "--archive", str(archive_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["claims_preserved"] == 1
    assert cli.main(["claims", "--archive", str(archive_dir)]) == 0
    assert "(capture damaged)" in capsys.readouterr().out

    # `archive` captures it anew: in full, although the page is unchanged (a revisit record would
    # point at the damaged bytes and preserve nothing), and the claim is preserved again.
    assert cli.main(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert [(c["url"], c["status"]) for c in again["captures"]] == [(one, "captured")]  # only that one
    assert again["unpreserved"] == 0
    new_capture = again["claims"][0]["sources"][0]["capture_id"]
    assert new_capture > old_capture
    archive = Archive.open(archive_dir)
    try:  # the damaged capture is kept as it is: never repaired, overwritten or deleted
        assert archive.db.execute("SELECT status FROM captures WHERE id = ?", [old_capture]).fetchone() == ("ok",)
    finally:
        archive.close()
