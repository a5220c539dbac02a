"""Build archives of real WARC evidence quickly, for verify tests and bench/verify.py.

Records are written by the project's own WarcWriter and committed exactly as the
capture engine commits them (capture row, record rows, one custody entry that
carries both), without a network round trip per page.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

from evarchive import custody
from evarchive.archive import Archive
from evarchive.catalogue import ensure_source, insert, transaction, utc_now
from evarchive.warcwriter import RecordBlock, RecordSpec, WarcWriter, warc_fields

WORDS = [w.encode() for w in (
    "evidence witness report village attack statement court human rights archive source "
    "photograph video soldiers civilians testimony document investigation map date location "
    "the of and to in a is that for on with as by at from this be are was were".split())]


_CORPUS: bytes = b""


def _corpus() -> bytes:
    """8 MB of HTML-like text, made once; pages are slices of it (fast to build)."""
    global _CORPUS
    if not _CORPUS:
        rng = random.Random(0)
        parts, total = [], 0
        while total < 8 << 20:
            para = b" ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            chunk = b'<p id="' + rng.randbytes(4).hex().encode() + b'">' + para + b"</p>\n"
            parts.append(chunk)
            total += len(chunk)
        _CORPUS = b"".join(parts)
    return _CORPUS


def html_body(rng: random.Random, size: int) -> bytes:
    """Text that compresses like real HTML (about 3-4x): `size` bytes of the corpus from a random
    point, wrapping around (slices only: no 16 MB concatenation per page)."""
    corpus = _corpus()
    start = rng.randrange(len(corpus))
    want = max(0, size - 12)
    parts = [b"<html><body>"]
    while want > 0:
        piece = corpus[start:start + want]
        parts.append(piece)
        want -= len(piece)
        start = 0
    return b"".join(parts)


def binary_body(size: int) -> bytes:
    """Already-compressed payloads (images, gzip-encoded pages) do not shrink."""
    return os.urandom(size)


def add_capture(archive: Archive, writer: WarcWriter, url: str, body: bytes,
                content_type: str = "text/html", sync: bool = True) -> int:
    """Write request/response/metadata records for one page and commit them like capture/run.py."""
    db = archive.db
    source_id = ensure_source(db, url)
    name = writer.begin_capture()
    now = utc_now()
    host = url.split("/")[2]
    path = "/" + url.split("/", 3)[3] if url.count("/") >= 3 else "/"
    req = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: evarchive-test\r\n\r\n".encode()
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    payload_hex = hashlib.sha256(body).hexdigest()
    response = writer.write(RecordSpec("response", url, now, RecordBlock(head + body),
                                       content_type="application/http; msgtype=response",
                                       payload_sha256=payload_hex))
    request = writer.write(RecordSpec("request", url, now, RecordBlock(req),
                                      content_type="application/http; msgtype=request",
                                      headers=[("WARC-Concurrent-To", response.record_id)],
                                      payload_sha256=hashlib.sha256(b"").hexdigest()))
    meta = writer.write(RecordSpec("metadata", url, now,
                                   RecordBlock(warc_fields([("capture-software", "evarchive-test")])),
                                   content_type="application/warc-fields",
                                   headers=[("WARC-Refers-To", response.record_id)]))
    records = [response, request, meta]
    if sync:  # the bench batches: one fsync per batch instead of per page
        writer.sync()
    row: dict[str, Any] = {
        "source_id": source_id, "run_id": None, "url_requested": url, "status": "ok",
        "kind": "response", "started_at": now, "ended_at": utc_now(), "warc_date": now,
        "final_url": url, "redirect_chain": "[]", "http_status": 200, "server_ip": "127.0.0.1",
        "server_port": 80, "http_version": "HTTP/1.1", "insecure": 0, "proxy_used": 0,
        "content_type": content_type, "payload_size": len(body), "payload_sha256": payload_hex,
        "truncated": 0, "warc_file": name,
    }
    with transaction(db):
        capture_id = insert(db, "captures", row)
        for rec in records:
            insert(db, "capture_records", {"capture_id": capture_id, **rec.as_row()})
        end = records[-1].offset + records[-1].length
        db.execute("UPDATE warc_files SET referenced_size = MAX(referenced_size, ?) WHERE name = ?",
                   [end, name])
        custody.append(db, "capture", url, {"capture_id": capture_id, "capture": row,
                                            "records": [r.as_row() for r in records]})
    return capture_id


def build(root: Path, pages: int = 6, *, seed: int = 1, max_warc_size: int = 1 << 30,
          sizes: tuple[int, int] = (500, 20_000), binary_share: float = 0.3,
          close: bool = True) -> Archive:
    """An archive with `pages` captured pages of mixed sizes."""
    rng = random.Random(seed)
    archive = Archive.open(root)
    writer = WarcWriter(archive.warcs_dir, archive.locks_dir, archive.db, max_size=max_warc_size)
    for i in range(pages):
        size = rng.randint(*sizes)
        if rng.random() < binary_share:
            add_capture(archive, writer, f"http://example.org/img/{i}.jpg", binary_body(size), "image/jpeg")
        else:
            add_capture(archive, writer, f"http://example.org/page/{i}", html_body(rng, size))
    if close:
        writer.close()
    return archive
