"""The stored decoded-content hashes (decoded.py) against the bytes they were derived from.

Export shows a page's stored decoded-content SHA-256 without inflating the page again, so a
wrong stored value would reach a court bundle (where the clerk's verifier would then reject
it). Deep verify recomputes each one from its record and reports a value that differs. They are
derived data: the finding says so, and how to have it recomputed. Records whose bytes changed
are left to the file checks, which already report them.

Decoding every page again with Python's zlib would triple the time of a deep run over an archive
of compressed pages, so a value is first confirmed with the scan's faster inflater (the same
bytes out, so the same SHA-256); only what that does not confirm (an error, a coding it does
not take, a difference) is decided by verify_bundle.py's own rules, which give the reason too.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .. import decoded
from ..records import member_sha256
from ..verify_bundle import CONTENT_CODINGS, DECODED_LIMIT, MAX_FLOOR, MAX_RATIO
from .findings import Findings
from .scan import _INFLATE_ERRORS, MAX_HEAD, _inflate_mod
from .scope import Scope
from .sql import columns_of, dict_rows

STEP = 1 << 20  # inflated bytes per call, WARC member and page alike: bounds memory

_STORED = ("SELECT r.capture_id, r.warc_file, r.offset, r.length, r.record_id, r.payload_sha256, d.member_sha256, "
           "d.decoded_sha256, d.decoded_note FROM capture_records r "
           "JOIN decoded_contents d ON d.member_sha256 = r.member_sha256 "
           "WHERE r.record_type = 'response' ORDER BY r.warc_file, r.offset")


class DecodedChecks:
    """The stored-value checks of one deep run."""

    def __init__(self, db: Any, warcs_dir: Path, scope: Scope, findings: Findings, workers: int) -> None:
        self.db = db
        self.warcs_dir = warcs_dir
        self.scope = scope
        self.add = findings.add
        self.workers = workers

    def run(self) -> None:
        if not columns_of(self.db, "decoded_contents"):
            return  # a read-only catalogue from before the table (it is never migrated)
        rows = [r for r in dict_rows(self.db, _STORED)
                if self.scope.captures is None or r["capture_id"] in self.scope.captures]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:  # zlib and hashlib release the GIL
            found = list(pool.map(self._found, rows))
        for row, value in zip(rows, found, strict=True):
            if value is not None and value != (row["decoded_sha256"], row["decoded_note"]):
                self._wrong(row, value)

    def _found(self, row: dict[str, Any]) -> tuple[str | None, str | None] | None:
        """The value the record's bytes give; None when they are not the bytes it was stored for."""
        try:
            fd = os.open(self.warcs_dir / row["warc_file"], os.O_RDONLY)
        except OSError:
            return None  # a missing file is the file checks' finding
        try:
            if _confirmed(fd, row):
                return row["decoded_sha256"], row["decoded_note"]
            value = decoded.recomputed(fd, row["offset"], row["length"], row["payload_sha256"])
            if value == (row["decoded_sha256"], row["decoded_note"]):
                return value
            # Only a disagreement costs a second read: is it the stored value, or the bytes?
            with os.fdopen(os.dup(fd), "rb") as fh:
                intact = member_sha256(fh, row["offset"], row["length"]) == row["member_sha256"]
            return value if intact else None
        finally:
            os.close(fd)

    def _wrong(self, row: dict[str, Any], value: tuple[str | None, str | None]) -> None:
        stored = row["decoded_sha256"] or row["decoded_note"]
        self.add("decoded-hash-wrong",
                 f"the decoded-content SHA-256 stored for record {row['record_id']} of capture {row['capture_id']} "
                 f"is {stored}, but the record's bytes give {value[0] or value[1]}. It is derived data, not "
                 "evidence (the record itself is intact), but an export would show the stored value: delete "
                 "the row (DELETE FROM decoded_contents WHERE member_sha256 = "
                 f"'{row['member_sha256']}') and the next export computes it again",
                 file=row["warc_file"], offset=row["offset"], record_id=row["record_id"], table="decoded_contents")


# --------------------------------------------------------------------------- the fast path

def _confirmed(fd: int, row: dict[str, Any]) -> bool:
    """Does the record give the stored hash, decoded by the fast inflater? False decides nothing."""
    try:
        parts = _payload(fd, row["offset"], row["length"])
        coding = next(parts)
        if coding in ("", "identity"):
            return (row["payload_sha256"], None) == (row["decoded_sha256"], row["decoded_note"])
        if coding not in CONTENT_CODINGS or row["decoded_sha256"] is None:
            return False
        return _decoded_sha256(coding, parts) == row["decoded_sha256"]
    except (*_INFLATE_ERRORS, ValueError, StopIteration):
        return False


def _payload(fd: int, offset: int, length: int) -> Iterator[Any]:
    """The response's Content-Encoding (as verify_bundle reads it), then its payload's pieces."""
    inflater = _inflate_mod.decompressobj(31)
    head, left, produced, read = b"", -1, 0, 0
    for chunk in decoded.read_span(fd, offset, length):
        read += len(chunk)
        while chunk:
            data = inflater.decompress(chunk, STEP)
            chunk = inflater.unconsumed_tail
            produced += len(data)
            if produced > max(MAX_FLOOR, MAX_RATIO * read):  # verify_bundle's bound on a member
                raise ValueError("it inflates more than the verifier allows")
            if left < 0:
                head += data
                warc_end = head.find(b"\r\n\r\n")
                http_end = head.find(b"\r\n\r\n", warc_end + 4) if warc_end >= 0 else -1
                if http_end < 0:
                    if len(head) > 2 * MAX_HEAD:
                        raise ValueError("no end of the heads")
                    continue
                block = int(_fields(head[:warc_end]).get("content-length", "0") or 0)
                yield _fields(head[warc_end + 4:http_end]).get("content-encoding", "").strip().lower()
                left = block - (http_end - warc_end)
                data, head = head[http_end + 4:], b""
            take = data[:left]
            left -= len(take)
            if take:
                yield take
            if inflater.eof:
                return


def _decoded_sha256(coding: str, parts: Iterator[bytes]) -> str | None:
    """SHA-256 of the payload with its coding undone, or None unless it decodes cleanly in full."""
    first = next(parts, b"")
    wbits = 31
    if coding == "deflate":  # a zlib header, or raw deflate: ContentDecoder's test
        wbits = 15 if len(first) >= 2 and first[0] & 0x0F == 8 and ((first[0] << 8) | first[1]) % 31 == 0 else -15
    inflater = _inflate_mod.decompressobj(wbits)
    digest, produced = hashlib.sha256(), 0
    for piece in itertools.chain((first,), parts):
        while piece:
            if inflater.eof:
                return None  # bytes after the stream: the exact rules give the reason
            out = inflater.decompress(piece, STEP)
            piece = inflater.unconsumed_tail or inflater.unused_data
            produced += len(out)
            if produced > DECODED_LIMIT:
                return None
            digest.update(out)
    return digest.hexdigest() if inflater.eof else None


def _fields(raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            out.setdefault(name.strip().lower(), value.strip())
    return out
