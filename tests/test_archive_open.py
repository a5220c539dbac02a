"""How the archive is opened: readers never create, lost or damaged catalogues stop every
command with exit 3 and leave the file as it was, a read-only archive can still be read, and
paths that are not UTF-8 never end in a traceback.

Every case runs the real CLI in a subprocess and checks its exit code, its message and what is
on disk afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import evidence
import pytest

from evarchive.archive import CATALOGUE_NAME
from evarchive.reports import import_report

NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff")  # Latin-1 bytes, as an old USB stick names a folder


def cli(*args: str | Path, archive: Path | str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "evarchive.cli", *map(str, args), "--archive", str(archive)],
                          capture_output=True, text=True, errors="backslashreplace", timeout=120, cwd=cwd)
    # Neither a traceback nor a usage error from the argument parser: the case under test ran.
    assert "Traceback" not in done.stderr and not done.stderr.startswith("Error:"), done.stderr
    return done


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report_file(directory: Path, name: str = "report.txt") -> Path:
    path = directory / name
    path.write_text("The village was shelled on 3 May, as reported at http://example.org/page/0 .\n")
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A closed archive with captures and a report, copied by each test that damages it."""
    root = tmp_path_factory.mktemp("built") / "archive"
    arch = evidence.build(root, pages=20, seed=5, sizes=(100, 300))
    import_report(arch.db, report_file(root.parent), "Report", None)
    arch.close()
    return root


def copy_of(built: Path, where: Path) -> Path:
    import shutil

    shutil.copytree(built, where)
    return where


# --------------------------------------------------------------------------- readers never create

@pytest.mark.parametrize("command", [["verify"], ["verify", "--deep"], ["log"], ["sources"], ["export", "OUT"]])
def test_reader_on_a_mistyped_archive_is_exit_2_and_creates_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "archve"
    args = [str(tmp_path / "bundle") if a == "OUT" else a for a in command]
    done = cli(*args, archive=missing)
    assert done.returncode == 2
    assert f"no archive at {missing}" in done.stderr
    assert not missing.exists() and not (tmp_path / "bundle").exists()


def test_check_on_a_mistyped_archive_is_exit_3_and_creates_nothing(tmp_path: Path) -> None:
    done = cli("check", archive=tmp_path / "archve")
    assert done.returncode == 3 and "no archive at" in done.stderr
    assert not (tmp_path / "archve").exists()


@pytest.mark.parametrize("args", [["capture", "ftp://example.org/file"],
                                  ["capture", "--from", "no-such-list.txt"],
                                  ["capture", "--pending"]])
def test_refused_capture_creates_nothing(tmp_path: Path, args: list[str]) -> None:
    done = cli(*args, archive=tmp_path / "new", cwd=tmp_path)
    assert done.returncode == 2
    assert not (tmp_path / "new").exists()


# --------------------------------------------------------------------------- lost catalogue

@pytest.mark.parametrize(("state", "command"), [
    *(("empty", c) for c in (["sources"], ["verify"], ["import", "REPORT"], ["capture", "http://127.0.0.1:9/"])),
    *(("missing", c) for c in (["verify"], ["capture", "http://127.0.0.1:9/"])),
])
def test_lost_catalogue_beside_warcs_is_exit_3_and_never_recreated(tmp_path: Path, built: Path, state: str,
                                                                   command: list[str]) -> None:
    root = copy_of(built, tmp_path / "archive")
    catalogue = root / CATALOGUE_NAME
    if state == "empty":
        catalogue.write_bytes(b"")
    else:
        catalogue.unlink()
    args = [str(report_file(tmp_path)) if a == "REPORT" else a for a in command]
    done = cli(*args, archive=root)
    assert done.returncode == 3
    message = " ".join(done.stderr.split())
    what = "is empty (0 bytes)" if state == "empty" else "is missing"
    assert f"{catalogue} {what} beside 1 file(s) in {root / 'warcs'}" in message
    assert "Restore catalogue.sqlite from a backup" in message
    if state == "empty":
        assert catalogue.stat().st_size == 0
    else:
        assert not catalogue.exists()
    assert {p.name for p in root.iterdir()} == {"locks", "tmp", "warcs"} | (
        {CATALOGUE_NAME} if state == "empty" else set())


# --------------------------------------------------------------------------- damaged catalogue

def damage_interior_page(catalogue: Path, table: str) -> None:
    """Overwrite the right-most child pointer and cell pointers of an interior B-tree page."""
    with sqlite3.connect(catalogue) as conn:
        pages = conn.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'internal'",
                             [table]).fetchall()
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    assert pages, f"{table} has no interior page: build a bigger archive"
    with open(catalogue, "r+b") as fh:
        fh.seek((pages[0][0] - 1) * size + 8)
        fh.write(b"\xff" * 32)


def garbage(catalogue: Path) -> None:
    catalogue.write_bytes(os.urandom(64 * 1024))


def truncated(catalogue: Path) -> None:
    with open(catalogue, "r+b") as fh:
        fh.truncate(catalogue.stat().st_size // 2)


def btree(catalogue: Path) -> None:
    damage_interior_page(catalogue, "captures")


EVERY_KIND = [["verify"], ["verify", "--deep"], ["sources"], ["export", "OUT"], ["import", "REPORT"],
              ["keys", "generate"]]


@pytest.mark.parametrize(("damage", "command"), [
    *((garbage, c) for c in (["sources"], ["import", "REPORT"])),
    *((truncated, c) for c in (["verify"], ["keys", "generate"])),
    *((btree, c) for c in EVERY_KIND),
])
def test_damaged_catalogue_is_exit_3_naming_integrity_check_and_is_left_unchanged(
        tmp_path: Path, built: Path, damage: object, command: list[str]) -> None:
    root = copy_of(built, tmp_path / "archive")
    catalogue = root / CATALOGUE_NAME
    damage(catalogue)  # type: ignore[operator]
    before = sha256(catalogue)
    extra = report_file(tmp_path, "new-report.txt")
    extra.write_text("A second claim, citing http://example.org/page/1 .\n")
    args = [str(tmp_path / "bundle") if a == "OUT" else str(extra) if a == "REPORT" else a for a in command]
    done = cli(*args, archive=root)
    assert done.returncode == 3
    message = " ".join(done.stderr.split())
    assert "catalogue" in message and "is damaged" in message
    assert "'PRAGMA integrity_check'" in message and "restore catalogue.sqlite from a backup" in message
    assert sha256(catalogue) == before
    assert not (root / "keys").exists() and not (tmp_path / "bundle").exists()


# --------------------------------------------------------------------------- read-only archive

@pytest.fixture
def read_only_archive(tmp_path: Path, built: Path) -> Iterator[Path]:
    """The archive on a tmpfs remounted read-only: what a write-protected disk or a ro mount is."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only filesystem needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)], check=True)
    try:
        copy_of(built, mnt / "archive")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        yield mnt / "archive"
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_read_only_archive_can_be_verified_browsed_and_exported(tmp_path: Path, read_only_archive: Path) -> None:
    root = read_only_archive
    before = sha256(root / CATALOGUE_NAME)
    for deep in ([], ["--deep"]):
        done = cli("verify", *deep, archive=root)
        assert done.returncode == 0, done.stderr
        message = " ".join(done.stderr.split())
        assert "the archive is read-only: this verification run was not recorded" in message
        assert "intact:" in message
    for args in (["sources"], ["show", "http://example.org/page/0"], ["claims"], ["reports"], ["log"]):
        done = cli(*args, archive=root)
        assert done.returncode == 0, (args, done.stderr)
    assert "http://example.org/page/0" in {s["url"] for s in json.loads(cli("sources", "--json", archive=root).stdout)}
    done = cli("export", tmp_path / "bundle", archive=root)
    assert done.returncode == 0, done.stderr
    assert "the export is NOT recorded in its custody log" in " ".join(done.stderr.split())
    assert (tmp_path / "bundle" / "evidence.wacz").is_file()
    assert sha256(root / CATALOGUE_NAME) == before
    assert {p.name for p in root.iterdir()} == {CATALOGUE_NAME, "locks", "tmp", "warcs"}


def test_read_only_archive_refuses_writers_with_exit_3(tmp_path: Path, read_only_archive: Path) -> None:
    for args in (["import", str(report_file(tmp_path))], ["keys", "generate"], ["capture", "http://127.0.0.1:9/"]):
        done = cli(*args, archive=read_only_archive)
        assert done.returncode == 3
        assert f"the archive at {read_only_archive} is read-only: this command writes to it" in done.stderr


def test_read_only_archive_with_commits_only_in_its_wal_is_exit_3(tmp_path: Path, built: Path) -> None:
    """Without its -shm file, a WAL's commits cannot be read on a read-only mount: no stale answer."""
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only filesystem needs root (CI runs as root)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mnt)], check=True)
    try:
        root = copy_of(built, mnt / "archive")
        catalogue = root / CATALOGUE_NAME
        # A writer that ended without checkpointing (power cut): the commit is only in the WAL.
        script = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                  "c.execute('PRAGMA wal_autocheckpoint = 0'); "
                  "c.execute(\"INSERT INTO meta VALUES ('late', 'commit')\"); os._exit(0)")
        subprocess.run([sys.executable, "-c", script, str(catalogue)], check=True)
        (root / (CATALOGUE_NAME + "-shm")).unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        done = cli("sources", archive=root)
        assert done.returncode == 3
        assert "has commits still in catalogue.sqlite-wal and the archive is read-only" in " ".join(done.stderr.split())
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


# --------------------------------------------------------------------------- paths that are not UTF-8

def test_archive_path_that_is_not_utf8(tmp_path: Path, built: Path) -> None:
    root = copy_of(built, tmp_path / NOT_UTF8)
    assert cli("verify", archive=root).returncode == 0
    assert cli("verify", "--deep", archive=root).returncode == 0
    assert cli("sources", "--json", archive=root).returncode == 0
    assert cli("import", report_file(tmp_path, NOT_UTF8 + ".txt"), archive=root).returncode == 0
    assert cli("keys", "generate", "--path", root / "elsewhere" / "custody.key", archive=root).returncode == 0
    assert cli("export", tmp_path / (NOT_UTF8 + "-bundle"), archive=root).returncode == 0
    assert cli("log", archive=root).returncode == 0
    assert cli("verify", archive=root).returncode == 0
    new = tmp_path / (NOT_UTF8 + "-new")
    assert cli("import", report_file(tmp_path), archive=new).returncode == 0
    assert cli("verify", archive=new).returncode == 0


def test_file_in_warcs_whose_name_is_not_utf8_is_a_finding_not_a_traceback(tmp_path: Path, built: Path) -> None:
    root = copy_of(built, tmp_path / "archive")
    (root / "warcs" / (NOT_UTF8 + ".warc.gz")).write_bytes(b"not evidence")
    for deep in ([], ["--deep"]):
        done = cli("verify", "--json", *deep, archive=root)
        assert done.returncode == 1
        [problem] = json.loads(done.stdout)["problems"]
        assert problem["kind"] == "unknown-file" and problem["file"] == NOT_UTF8 + ".warc.gz"
        assert problem["message"] == "caf\\xe9-\\xff.warc.gz is in warcs/ but the catalogue does not know it"
