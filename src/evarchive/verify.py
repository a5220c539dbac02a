"""Verification: prove that the evidence and the record of it are intact.

Two levels:

* fast: every WARC file the catalogue knows is present, has the recorded
  size and whole-file SHA-256; files the catalogue does not know are
  reported. This is one sequential read per file, hashed in large buffers on
  a thread pool (hashlib releases the GIL), so it runs at hash/disk speed.
* deep: additionally every gzip member is inflated and parsed as a WARC
  record; block and payload digests are recomputed; every catalogued record
  must be found at its recorded offset with its recorded length, id and
  hashes; every record on disk must belong to a capture, be the file's
  warcinfo, or lie in the known tail of an interrupted run.

Whatever the level, the custody log is checked (chain, signatures, the rows
each entry vouches for) and stored RFC 3161 tokens are verified offline.

When a file's hash does not match, a localisation pass hashes each
catalogued member (offset/length/member_sha256) so the problem names the
record, not just the file. Every problem is tied to the capture, its source
URL and the claims citing it.

Verification never writes to `warcs/`; it records its run in the catalogue.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

try:  # ISA-L inflates 2-3x faster than zlib and releases the GIL.
    from isal import isal_zlib as _inflate_mod

    INFLATER = "isal"
except ImportError:  # pragma: no cover - exercised only without isal installed
    try:
        import zlib_ng.zlib_ng as _inflate_mod  # type: ignore[no-redef]

        INFLATER = "zlib-ng"
    except ImportError:
        _inflate_mod = zlib  # type: ignore[no-redef]
        INFLATER = "zlib"

READ_SIZE = 4 << 20  # large reads: syscall and GIL overhead vanish
INFLATE_IN = 64 << 10  # input slice per inflate call: bounds the copy of unused_data
INFLATE_OUT = 4 << 20  # output cap per call: bounds memory for highly compressible members
MAX_HEAD = 1 << 20  # a WARC or HTTP head longer than this is malformed
WORKERS = max(1, min(4, os.cpu_count() or 1))
_INFLATE_ERRORS: tuple[type[BaseException], ...] = tuple(
    {zlib.error, getattr(_inflate_mod, "error", zlib.error)}
)


# ------------------------------------------------------------------ digests


def parse_digest(value: str | None) -> tuple[str, bytes] | None:
    """('sha256', raw) from a WARC digest header, base32 or hex; None if absent/bad."""
    if not value or ":" not in value:
        return None
    alg, _, text = value.strip().partition(":")
    alg = alg.lower().replace("-", "")
    text = text.strip()
    try:
        if len(text) in (40, 64, 128) and all(c in "0123456789abcdefABCDEF" for c in text):
            return alg, bytes.fromhex(text)
        return alg, base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None


def digest_matches(declared: str | None, computed_hex: str | None) -> bool | None:
    """True/False when a sha256 digest is declared and computable, else None."""
    parsed = parse_digest(declared)
    if parsed is None or computed_hex is None:
        return None
    alg, raw = parsed
    if alg != "sha256":
        return None
    return raw.hex() == computed_hex


# ---------------------------------------------------------- record parsing


@dataclass
class Member:
    """One gzip member as found on disk, and the WARC record inside it."""

    offset: int
    length: int = 0
    record_id: str | None = None
    record_type: str | None = None
    target_uri: str | None = None
    content_type: str | None = None
    declared_block: str | None = None
    declared_payload: str | None = None
    block_sha256: str | None = None
    payload_sha256: str | None = None
    errors: list[str] = field(default_factory=list)


class RecordParser:
    """Streaming WARC record parser fed with inflated bytes of one member."""

    __slots__ = ("member", "_state", "_head", "_remaining", "_block", "_payload", "_http_head", "_trailer")

    def __init__(self, member: Member) -> None:
        self.member = member
        self._state = 0  # 0 WARC head, 1 block, 2 trailer
        self._head = bytearray()
        self._remaining = 0
        self._block = hashlib.sha256()
        self._payload: Any = None  # hasher once past the HTTP head
        self._http_head: bytearray | None = None  # collecting the HTTP head
        self._trailer = bytearray()

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._state == 0:
                view = self._feed_head(view)
            elif self._state == 1:
                view = self._feed_block(view)
            else:
                self._trailer += view
                view = view[len(view):]
                if len(self._trailer) > 4:
                    return  # reported by finish()

    def _feed_head(self, view: memoryview) -> memoryview:
        start = max(0, len(self._head) - 3)
        self._head += view
        end = self._head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self.member.errors.append("WARC header is not terminated")
                self._state = 2
            return view[len(view):]
        rest = len(self._head) - (end + 4)
        self._parse_head(bytes(self._head[:end]))
        self._state = 1
        return view[len(view) - rest:] if rest else view[len(view):]

    def _parse_head(self, raw: bytes) -> None:
        lines = raw.decode("utf-8", "replace").split("\r\n")
        m = self.member
        if lines[0] not in ("WARC/1.1", "WARC/1.0"):
            m.errors.append(f"not a WARC record (starts {lines[0][:20]!r})")
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields.setdefault(name.strip().lower(), value.strip())
        m.record_id = fields.get("warc-record-id")
        m.record_type = fields.get("warc-type")
        m.target_uri = fields.get("warc-target-uri")
        m.content_type = fields.get("content-type")
        m.declared_block = fields.get("warc-block-digest")
        m.declared_payload = fields.get("warc-payload-digest")
        try:
            self._remaining = int(fields["content-length"])
        except (KeyError, ValueError):
            m.errors.append("no valid Content-Length")
            self._remaining = 0
        http = (m.content_type or "").lower().startswith("application/http")
        if http and m.record_type in ("response", "request"):
            self._http_head = bytearray()
        elif m.record_type not in ("revisit",) and not http:
            # For non-HTTP records the payload is the block itself.
            self._payload = self._block

    def _feed_block(self, view: memoryview) -> memoryview:
        take = view[: self._remaining]
        self._block.update(take)
        if self._http_head is not None:
            self._feed_http(take)
        elif self._payload is not None and self._payload is not self._block:
            self._payload.update(take)
        self._remaining -= len(take)
        if self._remaining == 0:
            self._state = 2
        return view[len(take):]

    def _feed_http(self, take: memoryview) -> None:
        assert self._http_head is not None
        start = max(0, len(self._http_head) - 3)
        self._http_head += take
        end = self._http_head.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self._http_head) > MAX_HEAD:
                self._http_head = None  # no HTTP head: payload undefined
            return
        self._payload = hashlib.sha256(memoryview(self._http_head)[end + 4:])
        self._http_head = None

    def finish(self) -> Member:
        m = self.member
        if self._state == 0:
            m.errors.append("member ends inside the WARC header")
        elif self._state == 1:
            m.errors.append(f"record block is {self._remaining} bytes shorter than its Content-Length")
        elif bytes(self._trailer) != b"\r\n\r\n":
            extra = len(self._trailer) - 4
            m.errors.append(
                f"{extra} unexpected bytes after the record block" if extra > 0 else "record does not end with CRLF CRLF"
            )
        m.block_sha256 = self._block.hexdigest()
        if self._http_head is not None:
            self._http_head = None  # HTTP head never ended: no payload
        if self._payload is not None:
            m.payload_sha256 = self._payload.hexdigest()
        return m


# -------------------------------------------------------------- file scans


@dataclass
class FileScan:
    name: str
    size: int = 0
    sha256: str = ""
    members: list[Member] = field(default_factory=list)
    # (start, end, why): byte ranges that are not a well-formed gzip member
    damaged: list[tuple[int, int, str]] = field(default_factory=list)
    error: str | None = None  # the file could not be read at all


def hash_file(path: Path, name: str) -> FileScan:
    """Whole-file SHA-256 and size: one sequential pass, large buffers."""
    scan = FileScan(name)
    digest = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                digest.update(view[:n])
                scan.size += n
    except OSError as exc:
        scan.error = f"cannot read: {exc.strerror}"
    scan.sha256 = digest.hexdigest()
    return scan


class _MemberWalker:
    """Splits a byte stream into gzip members and parses each record.

    After a corrupt member the walker resynchronises at the next offset the
    catalogue knows (or the next gzip magic), so one damaged record does not
    hide the state of the rest of the file.
    """

    def __init__(self, scan: FileScan, known_offsets: list[int]) -> None:
        self.scan = scan
        self.known = sorted(set(known_offsets))
        self.decomp: Any = None
        self.parser: RecordParser | None = None
        self.start = 0
        self.skip_to = 0  # after damage: ignore bytes before this offset

    def feed(self, view: memoryview, pos: int) -> None:
        """Feed bytes found at file offset `pos`."""
        i = 0
        n = len(view)
        while i < n:
            if pos + i < self.skip_to:
                i = min(n, self.skip_to - pos)
                continue
            if self.decomp is None:
                self._begin(pos + i, view[i:])
                if pos + i < self.skip_to:
                    continue
            i = self._inflate(view, pos, i)

    def _begin(self, offset: int, ahead: memoryview) -> None:
        if len(ahead) >= 2 and bytes(ahead[:2]) != b"\x1f\x8b":
            self._damage(offset, "no gzip member starts here")
            return
        self.decomp = _inflate_mod.decompressobj(wbits=31)
        self.start = offset
        self.parser = RecordParser(Member(offset))

    def _inflate(self, view: memoryview, pos: int, i: int) -> int:
        piece = view[i : i + INFLATE_IN]
        assert self.parser is not None
        try:
            out = self.decomp.decompress(piece, INFLATE_OUT)
            self.parser.feed(out)
            while self.decomp.unconsumed_tail and not self.decomp.eof:
                out = self.decomp.decompress(self.decomp.unconsumed_tail, INFLATE_OUT)
                self.parser.feed(out)
        except _INFLATE_ERRORS as exc:
            self._damage(self.start, f"gzip member is corrupt ({exc})")
            return max(i, min(len(view), self.skip_to - pos))
        if self.decomp.eof:
            used = len(piece) - len(self.decomp.unused_data)
            end = pos + i + used
            member = self.parser.finish()
            member.length = end - self.start
            self.scan.members.append(member)
            self.decomp = None
            self.parser = None
            return i + used
        return i + len(piece)

    def _damage(self, start: int, why: str) -> None:
        nxt = next((k for k in self.known if k > start), None)
        self.skip_to = nxt if nxt is not None else 1 << 62
        self.scan.damaged.append((start, self.skip_to, why))
        self.decomp = None
        self.parser = None

    def close(self, size: int) -> None:
        if self.decomp is not None and not self.decomp.eof:
            # Output may be pending when the last call hit the output cap exactly.
            try:
                while not self.decomp.eof and (out := self.decomp.decompress(b"", INFLATE_OUT)):
                    assert self.parser is not None
                    self.parser.feed(out)
            except _INFLATE_ERRORS:
                pass
            if self.decomp.eof and self.parser is not None:
                member = self.parser.finish()
                member.length = size - self.start - len(self.decomp.unused_data)
                self.scan.members.append(member)
                self.decomp = None
        if self.decomp is not None:
            self.scan.damaged.append((self.start, size, "file ends inside a gzip member (truncated?)"))
        self.scan.damaged = [(s, min(e, size), why) for s, e, why in self.scan.damaged]


def scan_file(path: Path, name: str, known_offsets: Iterable[int] = ()) -> FileScan:
    """One pass: whole-file SHA-256, and every member inflated and parsed."""
    scan = FileScan(name)
    walker = _MemberWalker(scan, list(known_offsets))
    digest = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                chunk = view[:n]
                digest.update(chunk)
                walker.feed(chunk, scan.size)
                scan.size += n
    except OSError as exc:
        scan.error = f"cannot read: {exc.strerror}"
    walker.close(scan.size)
    scan.sha256 = digest.hexdigest()
    return scan


def member_hashes(path: Path, spans: Iterable[tuple[int, int]]) -> dict[tuple[int, int], str | None]:
    """SHA-256 of the exact bytes at each (offset, length); None past the end."""
    out: dict[tuple[int, int], str | None] = {}
    with open(path, "rb", buffering=0) as fh:
        size = os.fstat(fh.fileno()).st_size
        for offset, length in sorted(spans):
            if offset + length > size:
                out[(offset, length)] = None
                continue
            fh.seek(offset)
            digest = hashlib.sha256()
            left = length
            while left:
                chunk = fh.read(min(READ_SIZE, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            out[(offset, length)] = digest.hexdigest()
    return out


def parallel_map(fn: Callable[[Any], Any], items: list[Any], workers: int = WORKERS) -> Iterator[Any]:
    """Map over files on threads, largest first so the pool ends together."""
    if len(items) <= 1 or workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(fn, items)
