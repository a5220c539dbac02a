"""Export bench: the cost of hashing each page's decoded content.

Builds an archive of N pages (default 2,000, about 100 MB of WARC), every page gzip-encoded
(Content-Encoding: gzip, the worst case: each one is inflated at export) or, with --plain, none,
then times `evarchive export` of all of it with the evarchive found on PYTHONPATH (run it once
with the old tree's src, once with the new one, on the same archive).

The builder writes each page as a capture does, including, with an evarchive that has them, the
stored decoded-content hash (decoded.py), through the very function a capture calls. An older
tree's build has none: exporting that archive measures the path every archive made before them
takes (the page inflated at export).

    PYTHONPATH=src python bench/export.py [--pages 2000] [--plain] [--dir DIR] [--build-only]
"""

from __future__ import annotations

import argparse
import gzip
import io
import hashlib
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import evidence  # noqa: E402

from evarchive import custody  # noqa: E402
from evarchive.archive import Archive  # noqa: E402
from evarchive.catalogue import ensure_source, insert, transaction, utc_now  # noqa: E402
from evarchive.warcwriter import RecordBlock, RecordSpec, WarcWriter  # noqa: E402

try:  # the decoded-content hashes a capture stores; an older evarchive has none
    from evarchive import decoded
except ImportError:
    decoded = None


class SpooledHop:
    """What a capture hands decoded.at_capture for its final hop: URL, HTTP head, payload."""

    def __init__(self, url: str, head: bytes, body: bytes, payload_sha256: str) -> None:
        self.url, self.response_head, self.payload_sha256 = url, head, payload_sha256
        self.body = io.BytesIO(body)


def add_page(archive: Archive, writer: WarcWriter, url: str, body: bytes, coding: str | None) -> None:
    """One response record (and its capture row and custody entry), as served with ``coding``."""
    db = archive.db
    source_id = ensure_source(db, url)
    name = writer.begin_capture()
    now = utc_now()
    extra = f"Content-Encoding: {coding}\r\n" if coding else ""
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n{extra}Content-Length: {len(body)}\r\n\r\n").encode()
    payload_hex = hashlib.sha256(body).hexdigest()
    response = writer.write(RecordSpec("response", url, now, RecordBlock(head + body),
                                       content_type="application/http; msgtype=response", payload_sha256=payload_hex))
    row = {"source_id": source_id, "run_id": None, "url_requested": url, "status": "ok", "kind": "response",
           "started_at": now, "ended_at": now, "warc_date": now, "final_url": url, "redirect_chain": "[]",
           "http_status": 200, "server_ip": "127.0.0.1", "server_port": 80, "http_version": "HTTP/1.1",
           "insecure": 0, "proxy_used": 0, "content_type": "text/html", "payload_size": len(body),
           "payload_sha256": payload_hex, "truncated": 0, "warc_file": name}
    capture_id = insert(db, "captures", row)
    insert(db, "capture_records", {"capture_id": capture_id, **response.as_row()})
    custody.append(db, "capture", url, {"capture_id": capture_id, "capture": row, "records": [response.as_row()]})
    if decoded is not None:
        decoded.store(db, decoded.at_capture([SpooledHop(url, head, body, payload_hex)], [response]))


def build(root: Path, pages: int, plain: bool, scale: float = 1.0) -> None:
    """An archive of ``pages`` pages of 100-300 kB of HTML (times ``scale``), gzip-coded unless ``plain``."""
    rng = random.Random(1)
    archive = Archive.open(root)
    writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db, max_size=100 << 20)
    for start in range(0, pages, 100):
        with transaction(archive.db):
            for i in range(start, min(pages, start + 100)):
                html = evidence.html_body(rng, int(rng.randint(100_000, 300_000) * scale))
                body = html if plain else gzip.compress(html, compresslevel=6, mtime=0)
                add_page(archive, writer, f"http://bench.example/page/{i}", body, None if plain else "gzip")
        writer.sync()
    writer.close()
    archive.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--plain", action="store_true", help="no content coding")
    parser.add_argument("--dir", type=Path, default=None, help="keep (or reuse) the archive here")
    parser.add_argument("--build-only", action="store_true", help="build the archive in --dir, export nothing")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="evarchive-export-bench-"))
    if not (root / "catalogue.sqlite").exists():
        build(root, args.pages, args.plain)
    if args.build_only:
        return
    size = sum(p.stat().st_size for p in (root / "warcs").glob("*"))
    out = root.parent / f"{root.name}-bundle-{time.time_ns()}"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "evarchive.cli", "export", str(out), "--archive", str(root), "--quiet"],
                   check=False)
    took = time.perf_counter() - started
    print(f"export of {args.pages} pages, {size / 2**20:.0f} MiB of WARC: {took:.2f} s")
    shutil.rmtree(out, ignore_errors=True)
    if args.dir is None:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
