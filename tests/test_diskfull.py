"""A disk that fills up during a run: a real tmpfs, real processes, real WARC bytes read back.

What must hold after the failure: every record the catalogue names is on disk, whole, at its
offsets; the run says exactly how many captures it committed; the failure is the archive's (exit
3), never a site's; and once there is room again, ``capture --pending`` finishes the job.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOM_AGAIN_MB = 200


def cli(*args: str, archive: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evarchive.cli", *args, "--archive", str(archive)],
                          capture_output=True, text=True, timeout=180)


def catalogue(archive_dir: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{archive_dir / 'catalogue.sqlite'}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def bad_records(archive_dir: Path) -> list[str]:
    """Every catalogued record (captures' and checks') whose bytes are not what it names."""
    conn = catalogue(archive_dir)
    try:
        rows = list(conn.execute("SELECT * FROM warc_records"))
    finally:
        conn.close()
    bad = []
    for row in rows:
        with open(archive_dir / "warcs" / row["warc_file"], "rb") as fh:
            fh.seek(row["offset"])
            member = fh.read(row["length"])
        if hashlib.sha256(member).hexdigest() != row["member_sha256"]:
            bad.append(f"{row['warc_file']}@{row['offset']}+{row['length']}")
    return bad


def count(archive_dir: Path, sql: str) -> int:
    conn = catalogue(archive_dir)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def url_file(tmp_path: Path, urls: list[str]) -> Path:
    path = tmp_path / "urls.txt"
    path.write_text("\n".join(urls))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("run", range(20))
def test_disk_full_commits_only_intact_records_and_pending_finishes(run, tmp_path, small_fs, local_server):
    archive_dir = small_fs.path / "archive"
    small_fs.resize(16)  # small enough to keep twenty runs quick
    # Bodies over 1 MiB are spooled to archive/tmp on the same filesystem, and closing a spool
    # gives its space back: just what lets a write after the failure succeed.
    sizes = [300_000, 1_500_000] * 12  # about 22 MB for a 16 MB filesystem
    urls = [local_server.url(f"/large?size={size}&run={run}&n={i}") for i, size in enumerate(sizes)]

    first = cli("capture", "--from", str(url_file(tmp_path, urls)), "--per-host", "16",
                "--quiet", archive=archive_dir)

    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert bad_records(archive_dir) == []
    assert "the disk is full" in first.stderr  # the WARC or the catalogue, whichever failed first
    assert "capture --pending" in first.stderr
    said = re.search(r"(\d+) of the (\d+) captures of this run are committed", first.stderr)
    assert said, first.stderr
    assert int(said[2]) == len(urls)
    assert int(said[1]) == count(archive_dir, "SELECT COUNT(*) FROM captures")
    assert count(archive_dir, "SELECT COUNT(*) FROM captures WHERE status = 'failed'") == 0

    small_fs.resize(ROOM_AGAIN_MB)
    again = cli("capture", "--pending", "--per-host", "16", "--quiet", archive=archive_dir)
    assert again.returncode == 0, again.stderr
    assert count(archive_dir, "SELECT COUNT(DISTINCT source_id) FROM captures WHERE status = 'ok'") == len(urls)
    assert bad_records(archive_dir) == []
    final = cli("verify", "--deep", archive=archive_dir)
    assert final.returncode == 0, final.stdout + final.stderr


def test_full_disk_while_spooling_a_body_is_the_archives_failure(tmp_path, small_fs, local_server):
    """ENOSPC in archive/tmp is a local storage failure: no site is blamed, --pending retries."""
    archive_dir = small_fs.path / "archive"
    url = local_server.url("/large?size=40000000")  # spooled to archive/tmp, past 30 MB

    first = cli("capture", url, archive=archive_dir)

    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert "no space left" in first.stderr.lower()
    assert "0 of the 1 captures of this run are committed" in first.stderr
    assert count(archive_dir, "SELECT COUNT(*) FROM captures") == 0

    small_fs.resize(ROOM_AGAIN_MB)
    again = cli("capture", "--pending", archive=archive_dir)
    assert again.returncode == 0, again.stderr
    assert count(archive_dir, "SELECT COUNT(*) FROM captures WHERE status = 'ok'") == 1
    assert bad_records(archive_dir) == []


def test_full_disk_while_a_check_spools_a_body_blames_no_source(tmp_path, small_fs, local_server):
    """ENOSPC while ``check`` spools a live body is this machine's failure, never the site's: no
    check row, no strike, exit 3 with the disk-full message; what was committed before stays."""
    archive_dir = small_fs.path / "archive"
    page = local_server.url("/article/kept")
    large = local_server.url("/large?size=40000000")  # spooled to archive/tmp, past 30 MB
    assert cli("check", page, archive=archive_dir).returncode == 0

    second = cli("check", large, "--max-body", "40000000", archive=archive_dir)

    assert second.returncode == 3, second.stderr
    assert "Traceback" not in second.stderr
    assert "the disk is full" in second.stderr
    assert "0 of the 1 checks of this run are committed" in second.stderr
    conn = catalogue(archive_dir)
    try:
        checks = [tuple(r) for r in conn.execute(
            "SELECT s.url, k.verdict, k.strikes FROM checks k JOIN sources s ON s.id = k.source_id")]
    finally:
        conn.close()
    assert checks == [(page, "ok", 0)]
    assert bad_records(archive_dir) == []

    small_fs.resize(ROOM_AGAIN_MB)
    again = cli("check", large, "--max-body", "40000000", archive=archive_dir)
    assert again.returncode == 0, again.stderr
    assert count(archive_dir, "SELECT COUNT(*) FROM checks WHERE verdict = 'ok' AND strikes = 0") == 2
    final = cli("verify", "--deep", archive=archive_dir)
    assert final.returncode == 0, final.stdout + final.stderr


def test_no_room_for_the_catalogue_is_a_clear_exit_3(tmp_path, small_fs, local_server):
    archive_dir = small_fs.path / "archive"
    assert cli("capture", local_server.url("/large?size=1000"), archive=archive_dir).returncode == 0
    filler = small_fs.path / "filler"
    with open(filler, "wb") as fh:  # the test's own file, beside the archive: fills the disk
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass

    second = local_server.url("/large?size=2000")
    for args in (["capture", second], ["capture", "--pending"], ["verify"]):
        result = cli(*args, archive=archive_dir)
        assert result.returncode == 3, (args, result.stderr)
        assert "Traceback" not in result.stderr, args
        assert "disk is full" in result.stderr, (args, result.stderr)

    filler.unlink()
    assert bad_records(archive_dir) == []
    assert cli("capture", second, archive=archive_dir).returncode == 0
    assert bad_records(archive_dir) == []
    assert count(archive_dir, "SELECT COUNT(DISTINCT source_id) FROM captures WHERE status = 'ok'") == 2


@pytest.mark.slow
def test_disk_full_in_parallel_workers_counts_every_workers_commits(tmp_path, small_fs, multi_host_server):
    """Two worker processes share the full disk: the message counts both workers' commits."""
    archive_dir = small_fs.path / "archive"
    hosts = ("127.0.0.2", "127.0.0.3")
    urls = [multi_host_server.url(f"/large?size=200000&n={i}", host_ip=hosts[i % 2]) for i in range(240)]

    first = cli("capture", "--from", str(url_file(tmp_path, urls)), "--workers", "2", "--quiet",
                archive=archive_dir)

    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    said = re.search(r"(\d+) of the (\d+) captures of this run are committed", first.stderr)
    assert said, first.stderr
    assert int(said[2]) == len(urls)
    assert int(said[1]) == count(archive_dir, "SELECT COUNT(*) FROM captures")
    assert count(archive_dir, "SELECT COUNT(DISTINCT run_id) FROM captures") == 2
    assert bad_records(archive_dir) == []

    small_fs.resize(ROOM_AGAIN_MB)
    again = cli("capture", "--pending", "--quiet", archive=archive_dir)
    assert again.returncode == 0, again.stderr
    assert count(archive_dir, "SELECT COUNT(DISTINCT source_id) FROM captures WHERE status = 'ok'") == len(urls)
    assert bad_records(archive_dir) == []


@pytest.mark.slow
def test_disk_full_in_check_workers_blames_no_source_and_counts_every_commit(tmp_path, small_fs,
                                                                             multi_host_server):
    """Two check workers spool bodies past 1 MiB on the full disk: the run stops with exit 3,
    no check says unreachable, and the message counts what the parent committed."""
    archive_dir = small_fs.path / "archive"
    hosts = ("127.0.0.2", "127.0.0.3")
    urls = [multi_host_server.url(f"/large?size=4000000&n={i}", host_ip=hosts[i % 2]) for i in range(240)]

    first = cli("check", *urls, "--workers", "2", "--quiet", archive=archive_dir)

    assert first.returncode == 3, first.stderr
    assert "Traceback" not in first.stderr
    assert "the disk is full" in first.stderr
    said = re.search(r"(\d+) of the (\d+) checks of this run are committed", first.stderr)
    assert said, first.stderr
    assert int(said[2]) == len(urls)
    assert int(said[1]) == count(archive_dir, "SELECT COUNT(*) FROM checks")
    assert count(archive_dir, "SELECT COUNT(*) FROM checks WHERE verdict != 'ok' OR strikes != 0") == 0
    assert bad_records(archive_dir) == []


def test_pending_recaptures_a_committed_capture_whose_bytes_are_not_intact(tmp_path, local_server):
    """An archive damaged by an older evarchive: a capture committed `ok` with offsets that name
    the wrong bytes, in a file its failed run left interrupted. --pending must capture it again."""
    archive_dir = tmp_path / "archive"
    damaged, fine = local_server.url("/large?size=5000&n=1"), local_server.url("/large?size=5000&n=2")
    assert cli("capture", damaged, fine, archive=archive_dir).returncode == 0
    conn = sqlite3.connect(archive_dir / "catalogue.sqlite")
    with conn:  # what the old bug left: the record really lies further on than the row says
        conn.execute("UPDATE warc_files SET status = 'interrupted'")
        conn.execute("UPDATE capture_records SET offset = offset - 7 WHERE record_type = 'response' "
                     "AND target_uri = ?", [damaged])
    conn.close()

    again = cli("capture", "--pending", archive=archive_dir)

    assert again.returncode == 0, again.stderr
    assert len(local_server.exchanges("/large?size=5000&n=1")) == 2
    assert len(local_server.exchanges("/large?size=5000&n=2")) == 1
    conn = catalogue(archive_dir)
    try:
        last = conn.execute("SELECT MAX(c.id) FROM captures c JOIN sources s ON s.id = c.source_id "
                            "WHERE s.url = ? AND c.status = 'ok'", [damaged]).fetchone()[0]
        records = list(conn.execute("SELECT * FROM capture_records WHERE capture_id = ?", [last]))
    finally:
        conn.close()
    for row in records:
        with open(archive_dir / "warcs" / row["warc_file"], "rb") as fh:
            fh.seek(row["offset"])
            assert hashlib.sha256(fh.read(row["length"])).hexdigest() == row["member_sha256"]


def test_writer_appends_nothing_after_a_failed_write(small_fs):
    """Once a write has failed, the file never grows again, even when space comes back, and
    every record written before the failure is whole at the offset it names."""
    import io
    import os

    from evarchive.archive import Archive
    from evarchive.warcwriter import RecordBlock, RecordSpec, WarcWriter

    arch = Archive.open(small_fs.path / "archive")
    writer = WarcWriter(arch.warcs_dir, arch.locks_dir, arch.db)
    body = os.urandom(1_000_000)  # incompressible: 1 MB of file per record
    written = []
    try:
        with pytest.raises(OSError) as failed:
            for _ in range(40):
                written.append(writer.write(RecordSpec(
                    "resource", "urn:test", "2026-01-01T00:00:00Z", RecordBlock(b"", io.BytesIO(body), len(body)))))
        assert failed.value.errno == 28
        path = arch.warcs_dir / writer.current_name
        size = path.stat().st_size
        small_fs.resize(ROOM_AGAIN_MB)
        with pytest.raises(OSError, match="no more writes after a failed one"):
            writer.write(RecordSpec("resource", "urn:test", "2026-01-01T00:00:00Z", RecordBlock(b"small")))
        with pytest.raises(OSError, match="no more writes after a failed one"):
            writer.begin_capture()
        writer.sync()  # fsyncs what the OS holds; appends nothing
        assert path.stat().st_size == size
        writer.close()  # a failed writer is abandoned, never sealed as if whole
        assert path.stat().st_size == size
    finally:
        arch.close()
    assert written
    with open(path, "rb") as fh:
        for record in written:
            fh.seek(record.offset)
            assert hashlib.sha256(fh.read(record.length)).hexdigest() == record.member_sha256
