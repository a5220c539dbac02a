"""`verify_bundle.py` on bundles that arrive hostile: links, FIFOs, bombs, names that leave the
bundle, deleted and truncated files. Each case must end within LIMIT_S seconds and LIMIT_RSS
bytes, with a verdict line and an exit code, never a traceback, and write nothing outside a
temporary folder that is gone afterwards."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evarchive import cli
from evarchive.archive import Archive
from evarchive.capture import CaptureSettings, capture_urls
from evarchive.reports import import_report

LIMIT_S = 10.0
LIMIT_RSS = 200 << 20
VERIFIED = "BUNDLE CONSISTENT, NOT ANCHORED"
NOT_AS_EXPORTED = "this bundle is NOT as exported"
UNREADABLE = "NOT VERIFIED: the bundle cannot be read"


@dataclass
class Verdict:
    code: int
    output: str
    seconds: float
    peak_rss: int

    def assert_bounded(self) -> None:
        assert "Traceback" not in self.output, self.output
        assert self.seconds < LIMIT_S, (self.seconds, self.output)
        assert self.peak_rss < LIMIT_RSS, (self.peak_rss, self.output)


# The verifier runs as the clerk runs it (-I -S, the bundle's own script), inside a shell that
# writes the process's own peak memory (VmHWM) when it ends: ru_maxrss would include the peak of
# the forking pytest process, whatever the verifier did.
PEAK_RECORDER = """
import runpy, sys
script, target, peak_file = sys.argv[1:4]
sys.argv = [script, target, *sys.argv[4:]]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def run_verifier(script: Path, target: Path, tmpdir: Path, *args: str) -> Verdict:
    """The bundle's own script as a clerk runs it, measured: wall time and peak memory of that
    process, killed if it runs past twice the limit so that a hang fails instead of stalling."""
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": str(tmpdir)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as measures:
        peak_file = Path(measures) / "peak-kb"
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", PEAK_RECORDER, str(script), str(target),
                                 str(peak_file), *args], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmpdir)
        try:
            start = time.monotonic()
            proc.wait(timeout=2 * LIMIT_S)
            seconds = time.monotonic() - start
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            seconds = 2 * LIMIT_S
        out.seek(0)
        peak = int(peak_file.read_text()) * 1024 if peak_file.exists() else LIMIT_RSS
        return Verdict(proc.returncode, out.read().decode("utf-8", "replace"), seconds, peak)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, local_server: Any) -> Path:
    """One real exported bundle (two captured pages, a report of two claims); tests copy it."""
    root = tmp_path_factory.mktemp("hostile")
    local_server.set_route("/hostile-bundle/a", body="<html><body><p>Page A</p></body></html>")
    local_server.set_route("/hostile-bundle/b", body="<html><body><p>Page B</p></body></html>")
    urls = [local_server.url("/hostile-bundle/a"), local_server.url("/hostile-bundle/b")]
    report = root / "report.md"
    report.write_text(f"Claim one.\n\n{urls[0]}\n\nClaim two.\n\n{urls[1]}\n", encoding="utf-8")
    arch = Archive.open(root / "archive")
    import_report(arch.db, report, "Hostile")
    outcomes = capture_urls(arch, urls, CaptureSettings(retries=0, total_timeout=20))
    assert [o.status for o in outcomes] == ["captured", "captured"]
    arch.close()
    out = root / "bundle"
    assert cli.main(["export", str(out), "--archive", str(root / "archive"), "--report", "Hostile"]) == 0
    return out


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "tmpdir"
    path.mkdir()
    return path


def verify(bundle_dir: Path, scratch: Path, target: Path | None = None, *args: str) -> Verdict:
    verdict = run_verifier(bundle_dir / "verify_bundle.py", target or bundle_dir, scratch, *args)
    verdict.assert_bounded()
    assert list(scratch.iterdir()) == []  # nothing left behind in the temporary folder
    return verdict


def test_an_untouched_copy_verifies(copy: Path, scratch: Path) -> None:
    verdict = verify(copy, scratch)
    assert (verdict.code, verdict.output.strip().splitlines()[-1].split(":")[0]) == (0, VERIFIED)


# --------------------------------------------------------------------------- files that are not files

def test_a_wacz_linked_to_dev_zero_is_refused_not_read(copy: Path, scratch: Path) -> None:
    (copy / "evidence.wacz").unlink()
    (copy / "evidence.wacz").symlink_to("/dev/zero")
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "evidence.wacz: is a symbolic link (refused, not followed)" in verdict.output
    assert NOT_AS_EXPORTED in verdict.output


def test_an_index_replaced_by_a_fifo_does_not_hang_the_verifier(copy: Path, scratch: Path) -> None:
    (copy / "exhibits.csv").unlink()
    os.mkfifo(copy / "exhibits.csv")
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "exhibits.csv: is not a regular file (refused, not read)" in verdict.output


def test_a_deleted_file_is_named_and_the_run_still_ends_with_a_verdict(copy: Path, scratch: Path) -> None:
    (copy / "exhibits.html").unlink()
    (copy / "custody" / "head.txt").unlink()
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "exhibits.html: missing (listed in SHA256SUMS)" in verdict.output
    assert "custody log: custody/head.txt: missing" in verdict.output
    assert NOT_AS_EXPORTED in verdict.output.splitlines()[-1]


def test_an_added_linked_folder_is_reported_and_not_followed(copy: Path, scratch: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("not part of the bundle")
    (copy / "extra").symlink_to(elsewhere, target_is_directory=True)
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "extra: a symbolic link, not part of the bundle (added after export; not followed)" in verdict.output
    assert "secret.txt" not in verdict.output


def test_a_wacz_path_pointing_outside_the_bundle_is_refused(copy: Path, scratch: Path, bundle: Path) -> None:
    data = json.loads((copy / "bundle.json").read_text(encoding="utf-8"))
    shutil.copy(copy / "evidence.wacz", copy.parent / "outside.wacz")
    data["wacz"] = "../outside.wacz"
    (copy / "bundle.json").write_text(json.dumps(data), encoding="utf-8")
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "'../outside.wacz' is not a plain path inside the bundle (refused)" in verdict.output


def test_a_truncated_wacz_is_a_failure_not_a_crash(copy: Path, scratch: Path) -> None:
    wacz = copy / "evidence.wacz"
    wacz.write_bytes(wacz.read_bytes()[: wacz.stat().st_size // 2])
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "evidence.wacz: cannot read the WACZ package" in verdict.output


def deflated(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED  # a bare ZipInfo would be stored, not a bomb
    return info


def test_a_bomb_inside_the_wacz_is_not_inflated(copy: Path, scratch: Path) -> None:
    """datapackage.json replaced by 1 GiB of spaces deflated to about 1 MB."""
    wacz = copy / "evidence.wacz"
    rebuilt = copy / "rebuilt.wacz"
    with zipfile.ZipFile(wacz) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for info in src.infolist():
            if info.filename == "datapackage.json":
                with dst.open(deflated("datapackage.json"), "w", force_zip64=True) as out:
                    info_out = b" " * (1 << 20)
                    for _ in range(1024):
                        out.write(info_out)
            else:
                dst.writestr(info, src.read(info))
    rebuilt.replace(wacz)
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert "datapackage.json inflates past" in verdict.output


def test_a_deflated_resource_that_datapackage_vouches_for_is_still_not_inflated_past_the_ratio(
        copy: Path, scratch: Path) -> None:
    """pages/pages.jsonl replaced by 128 MiB of zeros deflated to about 128 kB, with its true size
    and SHA-256 written into datapackage.json: the sizes the package gives are no bound."""
    size = 128 << 20
    wacz, rebuilt = copy / "evidence.wacz", copy / "rebuilt.wacz"
    with zipfile.ZipFile(wacz) as src:
        package = json.loads(src.read("datapackage.json"))
        for res in package["resources"]:
            if res["path"] == "pages/pages.jsonl":
                res["bytes"], res["hash"] = size, "sha256:" + hashlib.sha256(bytes(size)).hexdigest()
        with zipfile.ZipFile(rebuilt, "w") as dst:
            for info in src.infolist():
                if info.filename == "pages/pages.jsonl":
                    with dst.open(deflated(info.filename), "w", force_zip64=True) as out:
                        for _ in range(size >> 20):
                            out.write(bytes(1 << 20))
                elif info.filename == "datapackage.json":
                    dst.writestr(info, json.dumps(package))
                else:
                    dst.writestr(info, src.read(info))
    rebuilt.replace(wacz)
    verdict = verify(copy, scratch)
    assert verdict.code == 1
    assert ("FAIL  evidence.wacz > pages/pages.jsonl: it inflates more than 200 times its size (a decompression "
            "bomb?); not inflated further") in verdict.output


# --------------------------------------------------------------------------- the .zip form

def zipped(bundle: Path, dest: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]] = ()) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(bundle.rglob("*")):
            if path.is_file():
                zf.write(path, f"bundle/{path.relative_to(bundle).as_posix()}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a duplicate name is the point of one case
            for name, data in extra:
                zf.writestr(name, data)
    return dest


def test_a_zipped_bundle_verifies_and_leaves_nothing_behind(bundle: Path, tmp_path: Path, scratch: Path) -> None:
    verdict = verify(bundle, scratch, zipped(bundle, tmp_path / "b.zip"))
    assert verdict.code == 0, verdict.output
    assert VERIFIED in verdict.output


def _symlink_entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(("entry", "message"), [
    ("../evil.txt", "'../evil.txt' is not a plain path inside the bundle (refused)"),
    ("bundle/../../evil.txt", "'bundle/../../evil.txt' is not a plain path inside the bundle (refused)"),
    ("/tmp/evil.txt", "'/tmp/evil.txt' is not a plain path inside the bundle (refused)"),
    ("bundle/bundle.json", "'bundle/bundle.json' appears twice in the zip (refused)"),
    (_symlink_entry("bundle/zero"), "'bundle/zero' is a symbolic link in the zip (refused)"),
], ids=["dot-dot", "nested-dot-dot", "absolute", "duplicate", "symlink"])
def test_unsafe_zip_entries_are_refused_before_anything_is_written(
        bundle: Path, tmp_path: Path, scratch: Path, entry: Any, message: str) -> None:
    target = zipped(bundle, tmp_path / "b.zip", [(entry, b"/dev/zero")])
    before = sorted(p.name for p in tmp_path.iterdir())
    verdict = verify(bundle, scratch, target)
    assert verdict.code == 2
    assert message in verdict.output
    assert UNREADABLE in verdict.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not Path("/tmp/evil.txt").exists()


def test_a_zip_bomb_is_refused_without_inflating_it(bundle: Path, tmp_path: Path, scratch: Path) -> None:
    target = tmp_path / "bomb.zip"
    shutil.copy(zipped(bundle, tmp_path / "b.zip"), target)
    with zipfile.ZipFile(target, "a", zipfile.ZIP_DEFLATED) as zf, \
            zf.open(deflated("bundle/zeros.bin"), "w", force_zip64=True) as out:
        block = bytes(1 << 20)
        for _ in range(2048):  # 2 GiB of zeros, about 2 MB deflated
            out.write(block)
    verdict = verify(bundle, scratch, target)
    assert verdict.code == 2
    assert "'bundle/zeros.bin' would inflate more than 200 times (a zip bomb?)" in verdict.output


def test_a_truncated_zip_is_unreadable_with_a_verdict(bundle: Path, tmp_path: Path, scratch: Path) -> None:
    target = zipped(bundle, tmp_path / "b.zip")
    target.write_bytes(target.read_bytes()[:-200])
    verdict = verify(bundle, scratch, target)
    assert verdict.code == 2
    assert UNREADABLE in verdict.output


def test_a_fifo_given_as_the_bundle_is_refused(bundle: Path, tmp_path: Path, scratch: Path) -> None:
    fifo = tmp_path / "bundle.zip"
    os.mkfifo(fifo)
    verdict = verify(bundle, scratch, fifo)
    assert verdict.code == 2
    assert "is a FIFO, not a bundle folder or .zip (refused, not opened)" in verdict.output


# --------------------------------------------------------------------------- the inflation budget

@pytest.mark.slow
def test_many_records_to_inflate_stop_at_the_budget_with_a_verdict(
        tmp_path: Path, local_server: Any, scratch: Path) -> None:
    """A bundle.json that lists one gzip-encoded exhibit 40 times, its page 48 MiB of zeros served
    as 48 kB: nearly 2 GiB to decode for a WACZ of about 60 kB. Every record is still hashed, but
    nothing is inflated past the run's budget (128 MiB for a bundle this small)."""
    local_server.set_route("/hostile-bundle/zeros", body=gzip.compress(bytes(48 << 20), mtime=0),
                           headers=[("Content-Encoding", "gzip")])
    arch = Archive.open(tmp_path / "archive")
    [outcome] = capture_urls(arch, [local_server.url("/hostile-bundle/zeros")], CaptureSettings(retries=0))
    assert outcome.status == "captured"
    arch.close()
    out = tmp_path / "bundle"
    assert cli.main(["export", str(out), "--archive", str(tmp_path / "archive"),
                     local_server.url("/hostile-bundle/zeros")]) == 0
    data = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    data["exhibits"] = data["exhibits"] * 40
    (out / "bundle.json").write_text(json.dumps(data), encoding="utf-8")
    verdict = verify(out, scratch)
    last = verdict.output.strip().splitlines()[-1]
    assert verdict.code == 1
    # 40 exhibits of 3 records: the first two pages decode in full (96 MiB), the third passes 128 MiB
    assert last.endswith("; the inflation budget of 128 MiB was spent: 113 record(s) were checked only against "
                         "their SHA-256, not inflated"), last
    assert "FAIL  bundle.json: its SHA-256 differs from SHA256SUMS (the file was changed)" in verdict.output


def test_an_honest_bundle_past_a_budget_given_ends_not_verified_in_full(copy: Path, scratch: Path) -> None:
    verdict = verify(copy, scratch, None, "--inflate-budget", "0")
    assert verdict.code == 3, verdict.output
    assert verdict.output.strip().splitlines()[-1].startswith(
        "NOT VERIFIED IN FULL: the run spent its inflation budget of 0 MiB (a hostile bundle, or a very large one): "
        "6 record(s) were checked only against their SHA-256, not inflated. Nothing it checked was wrong; run it "
        "again with a larger --inflate-budget to check everything. (the WACZ's own signature")
