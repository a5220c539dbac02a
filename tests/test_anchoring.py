"""Time anchored at capture: with a TSA configured, capture, archive and check runs end by
timestamping the custody-log head; a failing TSA is a recorded finding that the next run makes
good; export says which exhibits no token covers and can take a token itself.

The TSA is tests.tsa.LocalTSA on loopback, the pages come from the shared local server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier
from localserver import LocalServer
from tsa import LocalTSA, TSAKeys

from evarchive.archive import Archive
from evarchive.cli import main


@pytest.fixture(scope="module")
def keys() -> TSAKeys:
    return TSAKeys()


@pytest.fixture
def tsa(keys: TSAKeys) -> Iterator[LocalTSA]:
    with LocalTSA(keys) as server:
        yield server


@pytest.fixture(autouse=True)
def _no_tsa_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVARCHIVE_TSA", raising=False)
    monkeypatch.delenv("EVARCHIVE_TSA_ROOTS", raising=False)


def capture(server: LocalServer, root: Path, *args: str) -> int:
    return main(["capture", *args, "-a", str(root), "--ca-file", str(server.ca_pem_path), "--retries", "0"])


def rows(root: Path, sql: str) -> list[dict[str, Any]]:
    arch = Archive.existing(root)
    try:
        return list(arch.db.query(sql))
    finally:
        arch.close()


def capture_seqs(root: Path) -> list[int]:
    return [r["seq"] for r in rows(root, "SELECT seq FROM custody_log WHERE event = 'capture' ORDER BY seq")]


def tokens(root: Path) -> list[dict[str, Any]]:
    return rows(root, "SELECT id, covers_seq, gen_time FROM timestamps ORDER BY id")


def failures(root: Path) -> list[dict[str, Any]]:
    found = rows(root, "SELECT seq, details FROM custody_log WHERE event = 'timestamp-failed' ORDER BY seq")
    return [{"seq": r["seq"], **json.loads(r["details"])} for r in found]


# --------------------------------------------------------------------------- capture, archive, check

def test_capture_with_a_tsa_ends_with_a_token_covering_its_entry(
        local_server: LocalServer, tsa: LocalTSA, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", tsa.url) == 0
    [seq] = capture_seqs(root)
    [token] = tokens(root)
    assert token["covers_seq"] >= seq
    last = rows(root, "SELECT event, details FROM custody_log ORDER BY seq DESC LIMIT 1")[0]
    assert last["event"] == "timestamp" and json.loads(last["details"])["timestamp_id"] == token["id"]
    assert f"timestamp {token['id']}: log entries" in capsys.readouterr().err


@pytest.mark.parametrize("fault, reason", [("http_status", "HTTP 500"), ("wrong_imprint", "token for other data")])
def test_a_failing_tsa_never_loses_the_capture_and_the_next_run_covers_both(
        local_server: LocalServer, tsa: LocalTSA, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        fault: str, reason: str) -> None:
    root = tmp_path / "archive"
    setattr(tsa, fault, 500 if fault == "http_status" else True)
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", tsa.url, "--json") == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert lines[0]["status"] == "captured"  # the capture is committed
    stamp = lines[-1]["timestamp"]
    [first] = capture_seqs(root)
    [failed] = failures(root)
    assert (stamp["status"], stamp["failure_log_seq"], stamp["uncovered_from"]) == ("failed", failed["seq"], first)
    assert reason in stamp["error"] and reason in failed["error"] and failed["uncovered_from_seq"] == first
    assert tokens(root) == []

    setattr(tsa, fault, 200 if fault == "http_status" else False)
    assert capture(local_server, root, local_server.url("/article/beta"), "--tsa", tsa.url) == 0
    [token] = tokens(root)
    assert token["covers_seq"] >= max(capture_seqs(root)) and len(capture_seqs(root)) == 2
    assert f"log entries {first} to {token['covers_seq']}" in capsys.readouterr().err


def test_a_tsa_that_is_down_is_a_finding_in_the_run_output(
        local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", "http://127.0.0.1:9/tsa") == 1
    text = " ".join(capsys.readouterr().err.split())
    assert "finding no timestamp: no TSA gave a valid token (http://127.0.0.1:9/tsa: ConnectError" in text
    assert "no TSA timestamped them" in text
    assert len(failures(root)) == 1 and rows(root, "SELECT status FROM captures")[0]["status"] == "ok"


def test_a_run_with_nothing_new_asks_no_tsa(local_server: LocalServer, tsa: LocalTSA, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", tsa.url) == 0
    asked = tsa.requests
    assert capture(local_server, root, "--pending", "--tsa", tsa.url) == 0  # nothing pending: no entry
    assert tsa.requests == asked and len(tokens(root)) == 1


def test_check_run_stamps_with_the_archives_tsa_list(
        local_server: LocalServer, tsa: LocalTSA, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha")) == 0  # no TSA yet
    assert tokens(root) == []
    (root / "keys").mkdir(exist_ok=True)
    (root / "keys" / "tsa-urls.txt").write_text(f"# our TSAs\n{tsa.url}\n")
    assert main(["check", "-a", str(root), "--ca-file", str(local_server.ca_pem_path), "--no-probe"]) == 0
    [token] = tokens(root)
    checked = rows(root, "SELECT MAX(seq) AS seq FROM custody_log WHERE event = 'check'")[0]["seq"]
    assert token["covers_seq"] >= checked > capture_seqs(root)[0]


def test_archive_run_stamps_from_the_environment(local_server: LocalServer, tsa: LocalTSA, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    report = tmp_path / "report.md"
    report.write_text(f"# Report\n\nSoldiers entered the village [1].\n\n[1]: {local_server.url('/article/alpha')}\n")
    monkeypatch.setenv("EVARCHIVE_TSA", tsa.url)
    assert main(["archive", str(report), "-a", str(root), "--ca-file", str(local_server.ca_pem_path),
                 "--json"]) == 0
    stamp = json.loads(capsys.readouterr().out)["timestamp"]
    [token] = tokens(root)
    assert stamp["status"] == "stamped" and stamp["timestamp"]["id"] == token["id"]
    assert token["covers_seq"] >= capture_seqs(root)[0]


# --------------------------------------------------------------------------- export

@pytest.fixture
def half_stamped(local_server: LocalServer, tsa: LocalTSA, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Page A captured and stamped; page B captured while the TSA answered 500 (not covered)."""
    root = tmp_path / "archive"
    urls = {"a": local_server.url("/article/alpha"), "b": local_server.url("/article/beta")}
    assert capture(local_server, root, urls["a"], "--tsa", tsa.url) == 0
    tsa.http_status = 500
    assert capture(local_server, root, urls["b"], "--tsa", tsa.url) == 1
    tsa.http_status = 200
    return root, urls


def exhibit_of(data: dict[str, Any], url: str) -> int:
    return next(e["exhibit"] for e in data["exhibits"] if e["source_url"] == url)


def test_export_says_which_exhibits_no_token_covers(half_stamped: tuple[Path, dict[str, str]], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    root, urls = half_stamped
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root)]) == 0
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    a, b = exhibit_of(data, urls["a"]), exhibit_of(data, urls["b"])
    anchors = data["time_anchors"]
    assert anchors["uncovered"] == [b] and anchors["covered"] == 1
    [token] = anchors["tokens"]
    assert (token["exhibits"], token["taken_at_export"]) == ([a], False)
    assert f"not timestamped exhibits {b}: no RFC 3161 token covers" in " ".join(capsys.readouterr().err.split())
    text = (out / "exhibits.txt").read_text(encoding="utf-8")
    assert f"Not covered by any timestamp: exhibit {b}: no RFC 3161 token" in text
    assert f"exhibit {a} existed no later than this time" in text
    assert "Not covered by any timestamp" in (out / "exhibits.html").read_text(encoding="utf-8")
    assert run_verifier(out).returncode == 0


def test_export_timestamp_covers_them_and_says_it_proves_no_later_than_the_export(
        half_stamped: tuple[Path, dict[str, str]], tsa: LocalTSA, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, urls = half_stamped
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root), "--timestamp", "--tsa", tsa.url, "--json"]) == 0
    anchors = json.loads(capsys.readouterr().out)["time_anchors"]
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    b = exhibit_of(data, urls["b"])
    assert anchors == data["time_anchors"] and anchors["uncovered"] == []
    late = next(t for t in anchors["tokens"] if t["taken_at_export"])
    assert late["exhibits"] == [b]
    assert late["timestamp_id"] in {t["id"] for t in data["custody"]["timestamps"]}
    for name in ("exhibits.txt", "exhibits.html", "VERIFY.md"):
        shown = " ".join((out / name).read_text(encoding="utf-8").split())
        assert "proves these exhibits existed no later than the export, not at the time of capture" in shown, name
    root_pem = tmp_path / "tsa-root.pem"
    root_pem.write_bytes(tsa.keys.root_pem)
    if shutil.which("openssl"):
        checked = run_verifier(out, "--tsa-root", str(root_pem))
        assert checked.returncode == 0 and "BUNDLE VERIFIED AND ANCHORED" in checked.stdout, checked.stdout


def test_export_timestamp_with_the_tsa_down_still_writes_the_bundle(
        half_stamped: tuple[Path, dict[str, str]], tsa: LocalTSA, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    root, urls = half_stamped
    out = tmp_path / "bundle"
    before = len(failures(root))
    tsa.http_status = 500
    assert main(["export", str(out), "-a", str(root), "--timestamp", "--tsa", tsa.url]) == 1
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    assert data["time_anchors"]["uncovered"] == [exhibit_of(data, urls["b"])]
    assert "HTTP 500" in data["time_anchors"]["export_timestamp_failed"]["error"]
    assert len(failures(root)) == before + 1
    assert "no TSA gave the token --timestamp asked for" in " ".join(capsys.readouterr().err.split())
    assert "Timestamp at export: asked for, not obtained" in (out / "exhibits.txt").read_text(encoding="utf-8")


def test_export_timestamp_without_a_tsa_is_a_usage_error_writing_nothing(
        half_stamped: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, _urls = half_stamped
    out = tmp_path / "bundle"
    seqs = rows(root, "SELECT MAX(seq) AS seq FROM custody_log")
    assert main(["export", str(out), "-a", str(root), "--timestamp"]) == 2
    assert main(["export", str(out), "-a", str(root), "--tsa", "http://127.0.0.1:9/"]) == 2
    assert not out.exists() and rows(root, "SELECT MAX(seq) AS seq FROM custody_log") == seqs


# --------------------------------------------------------------------------- verify_bundle.py

def regenerate_sums(out: Path) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "SHA256SUMS"
                   and "__pycache__" not in p.parts)
    (out / "SHA256SUMS").write_text("".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}\n" for p in files),
        encoding="utf-8")


def test_verifier_refuses_a_capture_dated_after_the_token_covering_it(
        local_server: LocalServer, tsa: LocalTSA, tmp_path: Path) -> None:
    """The TSA's clock says the head was stamped six hours before the page's WARC-Date: the token
    cannot vouch for that capture, however consistent everything else is."""
    root = tmp_path / "archive"
    tsa.gen_time = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", tsa.url) == 0
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root)]) == 0
    [token] = json.loads((out / "bundle.json").read_text(encoding="utf-8"))["custody"]["timestamps"]
    result = run_verifier(out)
    assert result.returncode == 1
    assert f"is after {token['gen_time']}, the time of {token['token']}, which covers its custody-log entry" \
        in result.stdout


def test_verifier_reads_the_tokens_time_from_the_token_not_from_bundle_json(
        local_server: LocalServer, tsa: LocalTSA, tmp_path: Path) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", tsa.url) == 0
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root)]) == 0
    assert run_verifier(out).returncode == 0
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    [token] = data["custody"]["timestamps"]
    real = token["gen_time"]
    token["gen_time"] = "2099-01-01T00:00:00Z"  # a later time would hide a capture made after the token
    (out / "bundle.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    regenerate_sums(out)
    result = run_verifier(out)
    assert result.returncode == 1
    assert f"bundle.json gives its time as 2099-01-01T00:00:00Z, the token says {real}" in result.stdout


def test_an_unusable_tsa_url_is_refused_before_anything_is_captured(
        local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "archive"
    assert capture(local_server, root, local_server.url("/article/alpha"), "--tsa", "ftp://tsa.example") == 2
    assert "TSA 'ftp://tsa.example' is not an http:// or https:// URL" in capsys.readouterr().err
    assert rows(root, "SELECT id FROM captures") == []


def test_a_token_that_no_longer_verifies_covers_nothing_in_the_bundle(
        half_stamped: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The archive now trusts another TSA's roots: its only token does not chain to them."""
    root, urls = half_stamped
    other = tmp_path / "other-roots.pem"
    other.write_bytes(TSAKeys("Other").root_pem)
    monkeypatch.setenv("EVARCHIVE_TSA_ROOTS", str(other))
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root)]) == 0
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    [token] = tokens(root)
    assert data["time_anchors"]["tokens"] == [] and data["custody"]["timestamps"] == []
    assert sorted(data["time_anchors"]["uncovered"]) == [exhibit_of(data, urls["a"]), exhibit_of(data, urls["b"])]
    [rejected] = data["time_anchors"]["rejected"]
    assert rejected["timestamp_id"] == token["id"] and "configured root" in rejected["reason"]
    assert f"timestamp not used {token['id']}" in capsys.readouterr().err


def test_verifier_refuses_an_index_claiming_a_token_the_bundle_does_not_carry(
        half_stamped: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, urls = half_stamped
    out = tmp_path / "bundle"
    assert main(["export", str(out), "-a", str(root)]) == 0
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    [token] = data["time_anchors"]["tokens"]
    token["exhibits"].append(exhibit_of(data, urls["b"]))  # "exhibit B is covered too"
    data["time_anchors"]["uncovered"] = []
    (out / "bundle.json").write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    regenerate_sums(out)
    result = run_verifier(out)
    assert result.returncode == 1
    assert "bundle.json time_anchors: the exhibits it says each timestamp covers" in result.stdout
