"""Crash safety and concurrency: real processes, killed with SIGKILL, and two writers at once."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator

from evarchive.archive import Archive


def cli(*args: str, archive: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "evarchive.cli", *args, "--archive", str(archive)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def assert_catalogue_points_at_intact_bytes(archive_dir: Path) -> None:
    """Every record the catalogue knows is on disk, at its offset, with its hash."""
    arch = Archive.open(archive_dir)
    try:
        rows = list(arch.db.query("SELECT * FROM capture_records"))
        for row in rows:
            path = arch.warcs_dir / row["warc_file"]
            with open(path, "rb") as fh:
                fh.seek(row["offset"])
                member = fh.read(row["length"])
            assert len(member) == row["length"], row
            assert hashlib.sha256(member).hexdigest() == row["member_sha256"], row
        for wf in arch.db.query("SELECT * FROM warc_files"):
            size = (arch.warcs_dir / wf["name"]).stat().st_size
            assert wf["referenced_size"] <= size
    finally:
        arch.close()


def wait_until(predicate, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll a condition (not a fixed sleep): returns as soon as it holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_kill_during_capture_then_rerun_finishes(tmp_path, local_server):
    archive_dir = tmp_path / "archive"
    urls = [local_server.url(f"/drip?count=4&size=2000&interval=0.05&n={i}") for i in range(30)]
    url_file = tmp_path / "urls.txt"
    url_file.write_text("\n".join(urls))
    proc = cli("capture", "--from", str(url_file), "--per-host", "3", "--quiet", archive=archive_dir)
    # Kill once some captures are committed and others are in flight.
    wait_until(lambda: len([e for e in local_server.exchanges("/drip") if e.finished]) >= 8,
               what="eight finished downloads")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert_catalogue_points_at_intact_bytes(archive_dir)

    again = cli("capture", "--pending", "--json", archive=archive_dir)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert "left open by an interrupted run" in err
    assert_catalogue_points_at_intact_bytes(archive_dir)
    arch = Archive.open(archive_dir)
    try:
        missing = arch.db.execute(
            "SELECT COUNT(*) FROM sources WHERE id NOT IN "
            "(SELECT source_id FROM captures WHERE status = 'ok')").fetchone()[0]
        assert missing == 0
        statuses = {r["status"] for r in arch.db.query("SELECT status FROM warc_files")}
        assert statuses == {"closed", "interrupted"}
    finally:
        arch.close()


WRITE_THEN_HANG = textwrap.dedent("""
    import sys, time
    from evarchive.archive import Archive
    from evarchive.warcwriter import RecordBlock, RecordSpec, WarcWriter
    from evarchive.catalogue import utc_now
    arch = Archive.open(sys.argv[1])
    writer = WarcWriter(arch.warcs_dir, arch.locks_dir, arch.db)
    writer.begin_capture()
    writer.write(RecordSpec("resource", "urn:test:uncommitted", utc_now(), RecordBlock(b"x" * 5000)))
    writer.sync()
    print("written", flush=True)
    time.sleep(60)
""")


def test_unreferenced_tail_is_found_and_kept(tmp_path):
    """A writer killed after writing but before committing leaves a tail: reported, never cut."""
    archive_dir = tmp_path / "archive"
    proc = subprocess.Popen([sys.executable, "-c", WRITE_THEN_HANG, str(archive_dir)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "written"
    arch = Archive.open(archive_dir)
    from evarchive.warcwriter import recover_interrupted

    assert recover_interrupted(arch.warcs_dir, arch.db) == []  # the writer is alive: hands off
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [found] = recover_interrupted(arch.warcs_dir, arch.db)
    path = arch.warcs_dir / found.name
    assert found.tail > 0 and found.size == path.stat().st_size
    row = arch.db.execute("SELECT status, size, sha256 FROM warc_files").fetchone()
    assert row[0] == "interrupted" and row[1] == found.size
    assert row[2] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert recover_interrupted(arch.warcs_dir, arch.db) == []  # sealed once
    with open(path, "rb") as fh:  # the file, tail included, still reads as WARC
        assert [r.rec_type for r in ArchiveIterator(fh)] == ["warcinfo", "resource"]
    arch.close()


def test_two_capture_processes_never_share_a_file(tmp_path, local_server):
    archive_dir = tmp_path / "archive"
    Archive.open(archive_dir).close()
    procs = []
    for name in ("a", "b"):
        urls = [local_server.url(f"/drip?count=2&size=500&interval=0.01&set={name}&n={i}")
                for i in range(15)]
        procs.append(cli("capture", "--json", *urls, archive=archive_dir))
    results = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert len(out.splitlines()) == 15
    arch = Archive.open(archive_dir)
    try:
        files = list(arch.db.query("SELECT name, pid, status FROM warc_files"))
        assert len(files) == 2 and len({f["pid"] for f in files}) == 2
        assert {f["status"] for f in files} == {"closed"}
        # Each file holds only the captures of the process that wrote it.
        for f in files:
            sets = {r["url_requested"].split("set=")[1][0]
                    for r in arch.db.query("SELECT url_requested FROM captures WHERE warc_file = ?",
                                           [f["name"]])}
            assert len(sets) == 1
        assert arch.db.execute("SELECT COUNT(*) FROM captures WHERE status='ok'").fetchone()[0] == 30
        seqs = [r[0] for r in arch.db.execute("SELECT seq FROM custody_log ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        arch.close()
    assert_catalogue_points_at_intact_bytes(archive_dir)


@pytest.mark.slow
def test_200mb_response_keeps_memory_flat(tmp_path, local_server):
    size = 200 * 1024 * 1024
    code = textwrap.dedent(f"""
        import sys
        from evarchive.archive import Archive
        from evarchive.capture import CaptureSettings, capture_urls
        [o] = capture_urls(Archive.open(sys.argv[1]), [sys.argv[2]], CaptureSettings())
        assert o.status == "captured" and o.payload_size == {size}, o
        # VmHWM is this process's own peak; ru_maxrss would include the forking pytest's.
        peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
        kb = int(peak[0].split()[1]) if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(kb, o.payload_sha256)
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a"),
                             local_server.url(f"/large?size={size}")],
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    peak_kb, digest = result.stdout.split()
    import localserver

    assert digest == localserver.large_body_sha256(size)
    assert int(peak_kb) < 150 * 1024, f"peak RSS {int(peak_kb) // 1024} MB"


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    from evarchive.archive import Archive
    from evarchive.capture import CaptureSettings, capture_urls
    from evarchive.errors import CouldNotRunError
    arch = Archive.open(sys.argv[1])  # the catalogue exists before the limit
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        capture_urls(arch, sys.argv[3:], CaptureSettings(per_host=1, concurrency=1))
    except CouldNotRunError as exc:
        print("STOPPED", exc.message)
        sys.exit(3)
    print("FINISHED")
""")


def test_full_disk_stops_cleanly_and_rerun_finishes(tmp_path, local_server):
    """A write that fails half way (EFBIG stands in for ENOSPC) leaves a consistent archive."""
    archive_dir = tmp_path / "archive"
    Archive.open(archive_dir).close()
    # Incompressible 400 kB bodies: the WARC passes the 1.5 MB limit within a few captures.
    urls = [local_server.url(f"/large?size=400000&n={i}") for i in range(8)]
    result = subprocess.run([sys.executable, "-c", FULL_DISK, str(archive_dir), str(1_500_000), *urls],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "STOPPED writing the archive failed" in result.stdout
    assert "--pending" in result.stdout
    assert_catalogue_points_at_intact_bytes(archive_dir)

    again = cli("capture", "--pending", archive=archive_dir)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert_catalogue_points_at_intact_bytes(archive_dir)
    arch = Archive.open(archive_dir)
    try:
        ok = arch.db.execute("SELECT COUNT(DISTINCT source_id) FROM captures WHERE status = 'ok'").fetchone()[0]
        assert ok == len(urls)
        statuses = sorted(r["status"] for r in arch.db.query("SELECT status FROM warc_files"))
        assert "interrupted" in statuses and "open" not in statuses
    finally:
        arch.close()
