"""`verify_bundle.py --jobs`: the records inflated and hashed by worker processes give the same
verdict and the same findings, in the same order, as one process; a worker that dies costs time,
never a finding, a traceback or a hang."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from clerk import run_verifier

from evarchive import cli
from evarchive import verify_bundle as vb
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls

PAGES = 6
WORKER_NOTE = "note  records: inflated and hashed by 2 worker processes and this one"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, local_server: Any) -> Path:
    """Six gzip-coded pages, so every record has its decoded content hashed as well."""
    root = tmp_path_factory.mktemp("jobs")
    rng = random.Random(11)
    urls = []
    for n in range(PAGES):
        words = " ".join(rng.choice(["court", "record", "exhibit", "witness", str(rng.random())]) for _ in range(8000))
        body = gzip.compress(f"<html><body><p>Page {n}: {words}</p></body></html>".encode(), mtime=0)
        local_server.set_route(f"/jobs/{n}", body=body, headers=[("Content-Encoding", "gzip")])
        urls.append(local_server.url(f"/jobs/{n}"))
    return captured_bundle(root, urls)


def captured_bundle(root: Path, urls: list[str]) -> Path:
    """Capture ``urls`` into an archive under ``root`` and export them all to ``root``/bundle."""
    arch = Archive.open(root / "archive")
    outcomes = capture_urls(arch, urls, CaptureSettings(retries=0, total_timeout=20))
    assert {o.status for o in outcomes} == {"captured"}
    arch.close()
    out = root / "bundle"
    assert cli.main(["export", str(out), "--archive", str(root / "archive"), *urls]) == 0
    return out


def both(bundle: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """The run with two workers, checked line for line against the run in one process; the lines
    the two have in common."""
    one, two = run_verifier(bundle, "--jobs", "1", *args), run_verifier(bundle, "--jobs", "2", *args)
    assert (one.stderr, two.stderr) == ("", "")
    assert WORKER_NOTE not in one.stdout.splitlines()
    lines = two.stdout.splitlines()
    assert WORKER_NOTE in lines  # the records really were inspected by workers
    assert (two.returncode, [line for line in lines if line != WORKER_NOTE]) == (one.returncode,
                                                                                 one.stdout.splitlines())
    return two, one.stdout.splitlines()


def main_response(data: dict[str, Any], number: int) -> dict[str, Any]:
    ex = data["exhibits"][number]
    return next(r for r in ex["records"] if r["record_id"] == ex["main_record"])


def resum(bundle: Path, name: str) -> None:
    """A forger's new SHA256SUMS line for an edited file."""
    digest = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    sums = bundle / "SHA256SUMS"
    lines = [f"{digest}  {name}" if line.endswith(f"  {name}") else line for line in sums.read_text().splitlines()]
    sums.write_text("\n".join(lines) + "\n")


def test_a_clean_bundle_reads_the_same_with_workers(copy: Path) -> None:
    records = sum(len(e["records"]) for e in json.loads((copy / "bundle.json").read_text())["exhibits"])
    run, lines = both(copy)
    assert run.returncode == 0
    assert f"ok    {records} exhibit records: bytes, WARC digests and custody entries agree" in lines
    assert lines[-1].startswith("BUNDLE CONSISTENT, NOT ANCHORED")
    assert not [line for line in lines if line.startswith("FAIL")]


def test_a_flipped_byte_is_named_the_same_with_workers(copy: Path) -> None:
    data = json.loads((copy / "bundle.json").read_text())
    rec = main_response(data, 3)
    wacz = bytearray((copy / "evidence.wacz").read_bytes())
    wacz[rec["wacz_offset"] + rec["length"] // 2] ^= 0x01
    (copy / "evidence.wacz").write_bytes(bytes(wacz))
    run, lines = both(copy)
    assert run.returncode == 1
    where = (f"exhibit {data['exhibits'][3]['exhibit']} record {rec['record_id']} (response) in evidence.wacz > "
             f"{rec['bundle_file']} at offset {rec['bundle_offset']}")
    assert [line for line in lines if line.startswith("FAIL")] == [
        "FAIL  evidence.wacz: its SHA-256 differs from SHA256SUMS (the file was changed)",
        f"FAIL  evidence.wacz > {rec['bundle_file']}: its SHA-256 or size differs from datapackage.json",
        f"FAIL  {where}: its bytes differ from the recorded SHA-256 {rec['member_sha256']}"]
    assert lines[-1].startswith("3 problem(s): this bundle is NOT as exported")


def test_a_decoded_hash_shown_wrongly_is_named_the_same_with_workers(copy: Path) -> None:
    """The decoded content's SHA-256 is computed by the workers: an index that states another one
    (SHA256SUMS regenerated) fails on the record, named the same way."""
    data = json.loads((copy / "bundle.json").read_text())
    ex = data["exhibits"][2]
    shown, ex["decoded_sha256"] = ex["decoded_sha256"], "0" * 64
    (copy / "bundle.json").write_text(json.dumps(data), encoding="utf-8")
    resum(copy, "bundle.json")
    run, lines = both(copy)
    assert run.returncode == 1
    assert (f"FAIL  exhibit {ex['exhibit']} ({ex['main_record']}): the decoded content's SHA-256 is {shown}, "
            f"the index says {'0' * 64}") in lines


def test_a_spent_budget_is_the_same_with_workers(copy: Path) -> None:
    """No budget at all: every record is hashed, none inflated, however many processes share it."""
    records = sum(len(e["records"]) for e in json.loads((copy / "bundle.json").read_text())["exhibits"])
    run, lines = both(copy, "--inflate-budget", "0")
    assert run.returncode == 3
    assert lines[-1].startswith("NOT VERIFIED IN FULL: the run spent its inflation budget of 0 MiB (a hostile "
                                f"bundle, or a very large one): {records} record(s) were checked only against "
                                "their SHA-256, not inflated.")


@pytest.mark.parametrize("jobs", ["0", "17"])
def test_jobs_must_be_from_1_to_16(copy: Path, jobs: str) -> None:
    run = run_verifier(copy, "--jobs", jobs)
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr.strip().endswith("error: --jobs must be from 1 to 16")


def test_a_small_bundle_stays_in_one_process_unless_jobs_are_given(copy: Path) -> None:
    data = json.loads((copy / "bundle.json").read_text())
    vb.set_budget(str(copy), data, None)
    assert vb.start_workers(str(copy), None) is None
    assert vb.start_workers(str(copy), 1) is None
    workers = vb.start_workers(str(copy), 2)
    assert workers is not None
    try:
        assert vb.start_inspection(str(copy), data, None, workers) is None  # had they been started for more
        assert vb.start_inspection(str(copy), data, 2, workers) is not None
    finally:
        workers.stop()


def records_step(root: Path, inspection: vb.Inspection | None, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """check_records' lines for the bundle at ``root``, its records inspected by ``inspection``."""
    data = json.loads((root / "bundle.json").read_text())
    report = vb.Report(quiet=False)
    with vb.open_bundle_file(str(root), data["wacz"]) as fh:
        entries = vb.data_offsets(fh)
    args = argparse.Namespace(all_signatures=False, head=None, public_key=[])
    log = vb.check_log(str(root), data, vb.load_keys(str(root), [], report), args, report)
    capsys.readouterr()
    vb.check_records(str(root), data, entries, log, report, inspection)
    return capsys.readouterr().out.splitlines()


def flip_in_record(bundle: Path, number: int, at: int) -> tuple[dict[str, Any], dict[str, Any]]:
    data = json.loads((bundle / "bundle.json").read_text())
    rec = main_response(data, number)
    wacz = bytearray((bundle / "evidence.wacz").read_bytes())
    wacz[rec["wacz_offset"] + at] ^= 0x01
    (bundle / "evidence.wacz").write_bytes(bytes(wacz))
    return data, rec


def test_workers_killed_before_their_work_cost_time_not_findings(copy: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Both workers stopped, then killed, before they take a batch: this process inspects every
    record, the findings (a flipped byte here) are those of a run without workers, and it ends."""
    data, rec = flip_in_record(copy, 4, 40)
    vb.set_budget(str(copy), data, None)
    alone = records_step(copy, None, capsys)

    before = set(multiprocessing.active_children())
    workers = vb.start_workers(str(copy), 2)
    assert workers is not None
    try:
        started = set(multiprocessing.active_children()) - before
        assert len(started) == 2
        for worker in started:
            os.kill(worker.pid, signal.SIGSTOP)
        inspection = vb.start_inspection(str(copy), data, 2, workers)
        assert inspection is not None
        for worker in started:
            worker.kill()
        lines = records_step(copy, inspection, capsys)
    finally:
        workers.stop()
    assert lines == ["note  records: inflated and hashed by 2 worker processes and this one", *alone]
    assert any(line.startswith(f"FAIL  exhibit {data['exhibits'][4]['exhibit']} record {rec['record_id']}")
               for line in alone)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


@pytest.mark.slow
def test_a_worker_killed_while_it_works_costs_time_not_findings(copy: Path) -> None:
    """The clerk's run, one of its workers killed as soon as it exists: the verdict and every
    finding are those of a run in one process, with no traceback."""
    data, rec = flip_in_record(copy, 1, 60)
    one = run_verifier(copy, "--jobs", "1")
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(copy / "verify_bundle.py"), "--jobs", "2"],
                            cwd=copy, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while not children(proc.pid) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.001)  # polling for the worker to exist, not waiting for an outcome
    killed = children(proc.pid)[:1]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert killed and err == ""
    lines = [line for line in out.splitlines() if not line.startswith("note  records: ")]
    assert (proc.returncode, lines) == (one.returncode, one.stdout.splitlines())
    assert f"record {rec['record_id']} (response)" in out


# --------------------------------------------------------------------------- the faster scans find the same

TOKENS_AS_A_REGEX = r"<urn:uuid:[0-9a-fA-F-]{36}>|(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])"


def test_the_tokens_an_index_shows_are_those_the_plain_expression_finds() -> None:
    import re

    pieces = ["a" * 64, "0" * 63, "f" * 65, "<urn:uuid:0f8e2a3c-1b2d-4c5e-8f90-a1b2c3d4e5f6>", "é", " ", "g", "A",
              "b" * 64 + "é", "-", "<urn:uuid:", "9" * 64, "\n", "&lt;", "€" + "c" * 64]
    rng = random.Random(5)
    for _ in range(2000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        assert vb.shown_tokens(text) == set(re.findall(TOKENS_AS_A_REGEX, text)), text


def test_html_text_still_replaces_every_code_point_html_forbids() -> None:
    for text in ("plain", "tab\tand\nnew line\r", "nul\x00", "c1\x85", "lone \ud800 surrogate", "non\ufdd0char",
                 "plane\U0001fffe", "<&>\"'", "soft\u00adhyphen"):
        assert vb.html_text(text) == __import__("html").escape(vb._NOT_IN_HTML.sub("\ufffd", text)), text


# --------------------------------------------------------------------------- the whole process tree's memory

def tree_peak_rss(proc: subprocess.Popen[str]) -> int:
    """The sum of the peak memory (VmHWM) of a process and each of its children, sampled until it
    ends: an upper bound of the tree's peak, shared pages counted once per process."""
    peaks: dict[int, int] = {}
    while proc.poll() is None:
        try:
            pids = [proc.pid, *children(proc.pid)]
        except OSError:
            continue
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[pid] = max(peaks.get(pid, 0), int(line.split()[1]) << 10)
        time.sleep(0.005)  # sampling, not waiting for an outcome
    return sum(peaks.values())


@pytest.mark.slow
def test_four_workers_and_the_verifier_stay_under_200_mb(tmp_path: Path, local_server: Any) -> None:
    """A bundle past the size where workers start by default (six pages of 3 MiB), checked with
    four workers: the peaks of all five processes together stay under 200 MB."""
    rng = random.Random(3)
    urls = []
    for n in range(6):
        local_server.set_route(f"/jobs-big/{n}", body=rng.randbytes(3 << 20),
                               headers=[("Content-Type", "application/octet-stream")])
        urls.append(local_server.url(f"/jobs-big/{n}"))
    out = captured_bundle(tmp_path, urls)
    assert (out / "evidence.wacz").stat().st_size > vb.PARALLEL_MIN_BYTES
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(out / "verify_bundle.py"), "--jobs", "4"],
                            cwd=out, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = tree_peak_rss(proc)
    stdout, stderr = proc.communicate(timeout=60)
    assert (proc.returncode, stderr) == (0, "")
    assert "note  records: inflated and hashed by 4 worker processes and this one" in stdout.splitlines()
    assert peak < 200 << 20, peak


def test_workers_started_by_spawn_as_on_macos_and_windows_read_the_same(copy: Path, tmp_path: Path) -> None:
    """Where fork is not used (spawn: the default on macOS and Windows), each worker imports the
    script afresh: the run must still give one process's lines. The script is the bundle's own,
    copied outside the bundle with the start method forced, and pointed at the bundle."""
    source = (copy / "verify_bundle.py").read_text()
    forced = source.replace('get_context("fork" if fork else None)', 'get_context("spawn")')
    assert forced != source
    script = tmp_path / "verify_bundle_spawn.py"
    script.write_text(forced)
    one = run_verifier(copy, "--jobs", "1")
    two = subprocess.run([sys.executable, "-I", "-S", str(script), str(copy), "--jobs", "2"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert (one.stderr, two.stderr) == ("", "")
    lines = two.stdout.splitlines()
    assert WORKER_NOTE in lines
    without_note = [line for line in lines if line != WORKER_NOTE]
    assert (two.returncode, without_note) == (one.returncode, one.stdout.splitlines())
