"""Verification: prove that the evidence and the record of it are intact.

Two levels:

* fast: every WARC file the catalogue knows is present, has the recorded
  size and whole-file SHA-256; files the catalogue does not know are
  reported. This is one sequential read per file, hashed in large buffers on
  a thread pool (hashlib releases the GIL), so it runs at hash/disk speed.
* deep: additionally every gzip member is inflated and parsed as a WARC
  record; block and payload digests are recomputed; every catalogued record
  must be found at its recorded offset with its recorded length, id and
  hashes; every record on disk must belong to a capture or to a check (the
  evidence a live check wrote), be the file's warcinfo, or lie in the known
  tail of an interrupted run. Files are split
  at catalogued member offsets so one large file keeps every core busy (one
  thread hashes the whole file meanwhile); each catalogued member is inflated
  whole by libdeflate, and accepted only if it is exactly one clean gzip
  member; where the catalogue and the bytes disagree, the file is walked front
  to back instead (streaming zlib-ng, ISA-L or zlib).

Whatever the level, the custody log is checked (chain, signatures, the rows
each entry vouches for) and stored RFC 3161 tokens are verified offline. The
log and the catalogue are streamed, never loaded whole: capture entries are
rebuilt from the current rows and compared as strings inside SQLite, and only
an entry that differs is parsed and compared column by column.

When a file's hash does not match, a localisation pass hashes each
catalogued member (offset/length/member_sha256) so the problem names the
record, not just the file. Every problem is tied to the capture, its source
URL and the claims citing it.

Every catalogue query of a run reads one snapshot (see Verifier._snapshot): rows, log entries
and WARC bytes committed by a capture running meanwhile are left to the next run. A file still
open is judged only by the records the snapshot references.

Verification never writes to `warcs/`; it records its run (row and custody entry) at the end.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from .catalogue import read_only_connection, writer_connection
from .custody import catalogue_path
from .errors import CouldNotRunError

# Inflater: both below release the GIL and inflate 2-3x faster than zlib. On the bench corpus
# (HTML-like text and incompressible bodies, AMD EPYC with AVX-512) zlib-ng took about 12% less
# CPU than ISA-L for the whole deep scan, so it is preferred when installed; ISA-L is the
# declared dependency; zlib is the last resort.
try:
    import zlib_ng.zlib_ng as _inflate_mod

    INFLATER = "zlib-ng"
except ImportError:
    try:
        from isal import isal_zlib as _inflate_mod  # type: ignore[no-redef]

        INFLATER = "isal"
    except ImportError:  # pragma: no cover - exercised only without isal installed
        _inflate_mod = zlib  # type: ignore[no-redef]
        INFLATER = "zlib"

# libdeflate (the `deflate` wheel) inflates a whole member in one call about 1.4x faster than
# zlib-ng's streaming inflate (bench corpus: 2.0 s against 2.8 s of CPU). Its Python API cannot
# tell where a member ends, so the library the wheel links in is called through ctypes (which
# releases the GIL), with the _ex entry point that reports the bytes consumed. Used only for
# catalogued members read whole; anything it does not accept exactly is handed to the streaming
# inflater, which decides.
_LIBDEFLATE: Any = None
try:
    import ctypes

    import deflate._deflate as _deflate_ext

    _lib = ctypes.CDLL(_deflate_ext.__file__)
    _lib.libdeflate_alloc_decompressor.restype = ctypes.c_void_p
    _lib.libdeflate_alloc_decompressor.argtypes = []
    _lib.libdeflate_gzip_decompress_ex.restype = ctypes.c_int
    _lib.libdeflate_gzip_decompress_ex.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    _lib.libdeflate_free_decompressor.restype = None
    _lib.libdeflate_free_decompressor.argtypes = [ctypes.c_void_p]
    _LIBDEFLATE = _lib
except (ImportError, OSError, AttributeError):  # pragma: no cover - the wheel is a dependency
    pass
else:
    INFLATER = f"libdeflate, {INFLATER} streaming"
WHOLE_MAX = 16 << 20  # libdeflate path: members whose declared inflated size (ISIZE) is at most this

READ_SIZE = 4 << 20  # large reads: syscall and GIL overhead vanish
INFLATE_IN = 64 << 10  # input slice per inflate call: bounds the copy of unused_data
INFLATE_OUT = 4 << 20  # output cap per call: bounds memory for highly compressible members
SPAN_IN = 128 << 10  # deep, catalogued members: input per inflate call ...
SPAN_OUT = 512 << 10  # ... and output cap (CPU measured flat from 256 KB to 4 MB; smaller keeps RSS down)
SPAN_BATCH = 8 << 20  # deep: compressed bytes of consecutive members per work unit
IN_FLIGHT = 512 << 20  # deep: file bytes handed to the pool ahead of the comparison (bounds memory)
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


# base64's b32 codec is pure Python in 3.11 (about 8 us a call, twice per record). The RFC 4648
# alphabet maps one to one onto int()'s base-32 digits, so a declared SHA-256 can be read in C.
_B32_DIGITS = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", "0123456789ABCDEFGHIJKLMNOPQRSTUV")
_B32_SHA256 = re.compile(r"[A-Z2-7]{52}")


def digest_matches(declared: str | None, computed_hex: str | None) -> bool | None:
    """True/False when a sha256 digest is declared and computable, else None."""
    if declared is not None and computed_hex is not None and declared.startswith("sha256:"):
        # Fast path for the form writers use (base32, padded or not). Only a match is decided
        # here; anything else takes the full parse below.
        text = declared[7:].strip().upper().rstrip("=")
        if _B32_SHA256.fullmatch(text) and int(text.translate(_B32_DIGITS), 32) >> 4 == int(computed_hex, 16):
            return True
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


_CRLF2 = b"\r\n\r\n"


class RecordParser:
    """Streaming WARC record parser fed with inflated bytes of one member.

    Works on offsets into each chunk it is fed: the WARC and HTTP heads are searched for in
    place and only a head split across chunks is buffered (at most MAX_HEAD bytes), so a
    record costs its two hash passes and no copies. What it finds does not depend on how the
    bytes were chunked.
    """

    __slots__ = ("member", "_state", "_head", "_remaining", "_block", "_payload", "_http_head", "_trailer",
                 "_trailer_len")

    def __init__(self, member: Member) -> None:
        self.member = member
        self._state = 0  # 0 WARC head, 1 block, 2 trailer, 3 head never ended (reported; rest ignored)
        self._head = bytearray()
        self._remaining = 0
        self._block = hashlib.sha256()
        self._payload: Any = None  # hasher once past the HTTP head
        self._http_head: bytearray | None = None  # collecting the HTTP head
        self._trailer = bytearray()  # its first 8 bytes: enough to tell CRLF CRLF from anything else
        self._trailer_len = 0

    def feed(self, data: bytes | bytearray, n: int = -1) -> None:
        """Parse data[:n] (all of data when n is -1)."""
        pos = 0
        if n < 0:
            n = len(data)
        while pos < n:
            state = self._state
            if state == 1:
                pos = self._feed_block(data, pos, n)
            elif state == 0:
                pos = self._feed_head(data, pos, n)
            elif state == 2:
                if len(self._trailer) < 8:
                    self._trailer += data[pos:min(n, pos + 8 - len(self._trailer))]
                self._trailer_len += n - pos
                return
            else:
                return

    def _feed_head(self, data: bytes, pos: int, n: int) -> int:
        head = self._head
        if not head:  # usual case: the whole head is in this chunk
            end = data.find(_CRLF2, pos, min(n, pos + MAX_HEAD + 4))
            if end >= 0:
                self._parse_head(data[pos:end])
                self._state = 1
                return end + 4
            start = 0
        else:
            start = max(0, len(head) - 3)
        take = min(n - pos, MAX_HEAD + 4 - len(head))
        head += memoryview(data)[pos:pos + take]
        end = head.find(_CRLF2, start)
        if end >= 0:
            self._parse_head(bytes(head[:end]))
            self._state = 1
            return pos + take - (len(head) - end - 4)
        if len(head) >= MAX_HEAD + 4:
            self.member.errors.append("WARC header is not terminated")
            self._state = 3
            return n
        return pos + take

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
        if self._remaining < 0:
            m.errors.append("no valid Content-Length")
            self._remaining = 0
        http = (m.content_type or "").lower().startswith("application/http")
        if http and m.record_type in ("response", "request"):
            self._http_head = bytearray()
        elif m.record_type not in ("revisit",) and not http:
            # For non-HTTP records the payload is the block itself.
            self._payload = self._block
        if self._remaining == 0:
            self._state = 2  # nothing to read: the next bytes are the trailer

    def _feed_block(self, data: bytes, pos: int, n: int) -> int:
        take = min(self._remaining, n - pos)
        chunk = data if take == len(data) else memoryview(data)[pos:pos + take]
        self._block.update(chunk)
        if self._http_head is not None:
            self._feed_http(data, pos, take)
        elif self._payload is not None and self._payload is not self._block:
            self._payload.update(chunk)
        self._remaining -= take
        if self._remaining == 0:
            self._state = 2
        return pos + take

    def _feed_http(self, data: bytes, pos: int, take: int) -> None:
        """Find the end of the HTTP head (within MAX_HEAD bytes of the block); the payload follows it."""
        buf = self._http_head
        assert buf is not None
        if not buf:
            end = data.find(_CRLF2, pos, pos + min(take, MAX_HEAD + 4))
            if end >= 0:
                self._payload = hashlib.sha256(memoryview(data)[end + 4:pos + take])
                self._http_head = None
                return
            start = 0
        else:
            start = max(0, len(buf) - 3)
        piece = min(take, MAX_HEAD + 4 - len(buf))
        buf += memoryview(data)[pos:pos + piece]
        end = buf.find(_CRLF2, start)
        if end >= 0:
            payload = hashlib.sha256(memoryview(buf)[end + 4:])
            if take > piece:
                payload.update(memoryview(data)[pos + piece:pos + take])
            self._payload = payload
            self._http_head = None
        elif len(buf) >= MAX_HEAD + 4:
            self._http_head = None  # no HTTP head: payload undefined

    def finish(self) -> Member:
        m = self.member
        if self._state == 0:
            m.errors.append("member ends inside the WARC header")
        elif self._state == 1:
            m.errors.append(f"record block is {self._remaining} bytes shorter than its Content-Length")
        elif self._state == 2 and (self._trailer_len != 4 or bytes(self._trailer) != _CRLF2):
            extra = self._trailer_len - 4
            m.errors.append(f"{extra} unexpected bytes after the record block" if extra > 0
                            else "record does not end with CRLF CRLF")
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


def _sequential(fd: int) -> None:
    """Ask for aggressive read-ahead: a cold file then streams at disk speed."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        except OSError:
            pass


def hash_file(path: Path, name: str) -> FileScan:
    """Whole-file SHA-256 and size: one sequential pass, large buffers."""
    scan = FileScan(name)
    digest = hashlib.sha256()
    view = _thread_buffer(READ_SIZE)
    try:
        with open(path, "rb", buffering=0) as fh:
            _sequential(fh.fileno())
            while n := fh.readinto(view):
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


def scan_span(path: Path, name: str, offset: int, length: int) -> FileScan:
    """Parse the bytes at one catalogued position on their own.

    Used after damage made the streaming pass lose step (a corrupt gzip header
    can swallow the start of the next member): every catalogued record still
    gets checked at the place the catalogue says it is.
    """
    scan = FileScan(name, size=offset + length)
    walker = _MemberWalker(scan, [])
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(length)
    walker.feed(memoryview(data), offset)
    walker.close(offset + len(data))
    return scan


# ------------------------------------------------------- parallel deep scan
# A sealed file's catalogue says where every member starts and how long it is (warcinfo_length
# for the first, capture_records for the rest). When those spans tile the file, each span can
# be inflated and parsed on its own, on any core, while one thread hashes the whole file. A span
# that is not exactly one clean gzip member (damage, an edited offset, a truncated file) voids
# the shortcut for its file, and the file is walked sequentially instead (scan_file), exactly
# as before: the parallel result is used only where the sequential walk would find the same
# members at the same places.

_local = threading.local()


class _ShortRead(Exception):
    """The file ended before a catalogued span did."""


def _thread_buffer(size: int) -> memoryview:
    """A read buffer reused by this thread (no 8 MB allocation and page faults per work unit)."""
    buf = getattr(_local, "buf", None)
    if buf is None or len(buf) < size:
        buf = _local.buf = bytearray(max(size, READ_SIZE))
    return memoryview(buf)[:size]


def _read_exact(fd: int, view: memoryview, offset: int) -> None:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise _ShortRead
        got += n


def _chunks(fd: int, offset: int, length: int) -> Iterator[memoryview]:
    """The bytes [offset, offset + length) in READ_SIZE pieces (one buffer, reused)."""
    pos, end = offset, offset + length
    while pos < end:
        view = _thread_buffer(min(READ_SIZE, end - pos))
        _read_exact(fd, view, pos)
        yield view
        pos += len(view)


def inflate_member(chunks: Iterable[memoryview | bytes], offset: int, length: int) -> Member | None:
    """Inflate and parse one member whose `length` compressed bytes arrive in `chunks`.

    None unless those bytes are exactly one well-formed gzip member, ending at the last byte.
    """
    decomp = _inflate_mod.decompressobj(wbits=31)
    parser = RecordParser(Member(offset, length))
    feed = parser.feed
    try:
        for chunk in chunks:
            for i in range(0, len(chunk), SPAN_IN):
                if decomp.eof:
                    return None  # bytes left after the member ended
                feed(decomp.decompress(chunk[i:i + SPAN_IN], SPAN_OUT))
                while decomp.unconsumed_tail:
                    feed(decomp.decompress(decomp.unconsumed_tail, SPAN_OUT))
        while not decomp.eof:  # output held back by the SPAN_OUT cap
            out = decomp.decompress(b"", SPAN_OUT)
            if not out:
                break
            feed(out)
    except _INFLATE_ERRORS:
        return None
    if not decomp.eof or decomp.unused_data:
        return None
    return parser.finish()


class _WholeInflater:
    """One thread's libdeflate decompressor and output buffer (both reused)."""

    def __init__(self) -> None:
        import ctypes

        self.d = _LIBDEFLATE.libdeflate_alloc_decompressor()
        if not self.d:
            raise MemoryError("libdeflate_alloc_decompressor")
        self.out = bytearray(1 << 20)
        self.out_addr = ctypes.addressof((ctypes.c_char * len(self.out)).from_buffer(self.out))
        self.in_used = ctypes.c_size_t()
        self.out_used = ctypes.c_size_t()
        self.in_ref = ctypes.byref(self.in_used)
        self.out_ref = ctypes.byref(self.out_used)
        self.call = _LIBDEFLATE.libdeflate_gzip_decompress_ex

    def __del__(self) -> None:  # the pool's threads end with each run: free their decompressors
        if getattr(self, "d", None) and _LIBDEFLATE is not None:
            _LIBDEFLATE.libdeflate_free_decompressor(self.d)
            self.d = None

    def grow(self, size: int) -> None:
        import ctypes

        self.out = bytearray(max(size, 2 * len(self.out)))
        self.out_addr = ctypes.addressof((ctypes.c_char * len(self.out)).from_buffer(self.out))

    def member(self, buf: bytearray, base: int, pos: int, offset: int, length: int) -> Member | None:
        """The member at buf[pos:pos + length] (address base), if it is exactly one clean gzip member."""
        if length < 18:
            return None
        isize = int.from_bytes(buf[pos + length - 4:pos + length], "little")
        if isize > WHOLE_MAX:
            return None
        if isize > len(self.out):
            self.grow(isize)
        # The whole output buffer is offered: a member that inflates to more than its ISIZE says
        # fails libdeflate's own ISIZE check, as does any other inconsistency.
        if self.call(self.d, base + pos, length, self.out_addr, len(self.out), self.in_ref, self.out_ref) != 0:
            return None
        if self.in_used.value != length:
            return None  # the member ends before the span does
        parser = RecordParser(Member(offset, length))
        parser.feed(self.out, self.out_used.value)
        return parser.finish()


def _whole_inflater() -> _WholeInflater | None:
    if _LIBDEFLATE is None:
        return None
    w = getattr(_local, "whole", None)
    if w is None:
        w = _local.whole = _WholeInflater()
    return w


def scan_members(path: Path, spans: list[tuple[int, int]]) -> list[Member] | None:
    """Consecutive catalogued members, each inflated and parsed; None if any is not clean."""
    members: list[Member] = []
    try:
        with open(path, "rb", buffering=0) as fh:
            fd = fh.fileno()
            start, end = spans[0][0], spans[-1][0] + spans[-1][1]
            if end - start <= SPAN_BATCH:  # many small members: one read for all of them
                view = _thread_buffer(end - start)
                _read_exact(fd, view, start)
                whole = _whole_inflater()
                if whole is not None:
                    import ctypes

                    buf = _local.buf
                    base = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
                for offset, length in spans:
                    pos = offset - start
                    member = whole.member(buf, base, pos, offset, length) if whole is not None else None
                    if member is None:  # not taken (or not clean): the streaming inflater decides
                        member = inflate_member((view[pos:pos + length],), offset, length)
                    if member is None:
                        return None
                    members.append(member)
            else:  # plan_members gives a large member a batch of its own: stream it
                for offset, length in spans:
                    member = inflate_member(_chunks(fd, offset, length), offset, length)
                    if member is None:
                        return None
                    members.append(member)
    except (OSError, _ShortRead):
        return None
    return members


def scan_tail(path: Path, name: str, start: int, known_offsets: list[int]) -> FileScan:
    """Walk the uncatalogued end of a file (an interrupted run's tail) as scan_file would."""
    scan = FileScan(name)
    walker = _MemberWalker(scan, known_offsets)
    pos = start
    try:
        with open(path, "rb", buffering=0) as fh:
            fh.seek(start)
            buf = bytearray(READ_SIZE)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                walker.feed(view[:n], pos)
                pos += n
    except OSError as exc:
        scan.error = f"cannot read: {exc.strerror}"
    scan.size = pos
    walker.close(pos)
    return scan


def plan_members(warcinfo_length: Any, spans: list[tuple[Any, Any]],
                 size: int) -> tuple[list[list[tuple[int, int]]], int | None] | None:
    """Work units of consecutive members (about SPAN_BATCH bytes each) and where an uncatalogued
    tail starts; None when the catalogued spans do not tile the file from offset 0."""
    if not isinstance(warcinfo_length, int) or warcinfo_length <= 0:
        return None
    members = [(0, warcinfo_length)]
    pos = warcinfo_length
    for offset, length in spans:
        if offset != pos or not isinstance(length, int) or length <= 0:
            return None
        members.append((offset, length))
        pos += length
    if pos > size:
        return None
    batches: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    current_bytes = 0
    for offset, length in members:
        if current and current_bytes + length > SPAN_BATCH:
            batches.append(current)
            current, current_bytes = [], 0
        current.append((offset, length))
        current_bytes += length
    batches.append(current)
    return batches, (pos if pos < size else None)


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


# ---------------------------------------------------------------- findings


@dataclass
class Problem:
    """One finding, localised as precisely as the evidence allows."""

    kind: str
    message: str
    severity: str = "problem"  # "problem" fails the run; "note" is information
    file: str | None = None
    offset: int | None = None
    record_id: str | None = None
    capture_id: int | None = None
    check_id: int | None = None  # a live check whose evidence or row this is about
    url: str | None = None
    log_seq: int | None = None
    table: str | None = None
    column: str | None = None
    claims: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, [])}


@dataclass
class VerifyResult:
    mode: str
    scope: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    records: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    log_head: str | None = None
    inflater: str = INFLATER

    @property
    def failures(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "problem"]

    @property
    def notes(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "note"]

    @property
    def intact(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "result": "intact" if self.intact else "problems",
            "mode": self.mode,
            "scope": self.scope,
            "files": self.files,
            "bytes": self.bytes,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "run_id": self.run_id,
            "log_head": self.log_head,
            "inflater": self.inflater,
            "problems": [p.as_dict() for p in self.failures],
            "notes": [p.as_dict() for p in self.notes],
        }


# ------------------------------------------------------------------ engine

_SQL_CHUNK = 500  # keys per IN (...) query: well under SQLite's variable limit


def _dict_rows(db: Any, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
    """Rows as dicts straight from the cursor (sqlite-utils' query() adds per-row overhead)."""
    cursor = db.execute(sql, list(params))
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def _in_chunks(values: Iterable[Any]) -> Iterator[tuple[list[Any], str]]:
    """(chunk, '?,?,...') pairs for IN (...) queries over any number of values."""
    items = list(values)
    for i in range(0, len(items), _SQL_CHUNK):
        part = items[i:i + _SQL_CHUNK]
        yield part, ",".join("?" for _ in part)


def _bindable(key: Any) -> bool:
    """Can this JSON value be a row key in SQL? (Lists, objects, null and huge ints never are.)"""
    if isinstance(key, int):
        return -(1 << 63) <= key < (1 << 63)
    return isinstance(key, (str, float))


class _Seen:
    """The row ids some log entry vouches for: one byte per id, not the rows themselves."""

    __slots__ = ("_bytes", "_other", "count")
    _DENSE = 1 << 26  # ids beyond this (an attacker's INSERT with id = 10**12) go to a set

    def __init__(self) -> None:
        self._bytes = bytearray()
        self._other: set[int] = set()
        self.count = 0  # distinct ids added

    def add(self, rowid: int) -> None:
        if 0 <= rowid < self._DENSE:
            if rowid >= len(self._bytes):
                self._bytes.extend(bytes(rowid + 1 - len(self._bytes) + 4096))
            if not self._bytes[rowid]:
                self._bytes[rowid] = 1
                self.count += 1
        elif rowid not in self._other:
            self._other.add(rowid)
            self.count += 1

    def __contains__(self, rowid: int) -> bool:
        if 0 <= rowid < len(self._bytes):
            return bool(self._bytes[rowid])
        return rowid in self._other


# (getter of the entry's columns from a row tuple, those column names, whether that is all of them)
_Shape = tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], list[str], bool]


class _RowCheck:
    """Compares the rows log entries vouch for with the catalogue as it is now.

    Entries are taken a batch at a time: the rows the batch names are fetched with one
    IN (...) query per table, and each is compared with its entry as a tuple (one C-level
    comparison per row); only a row that differs is compared column by column to word the
    problem. Neither the log nor the catalogue is ever held in memory as a whole.
    """

    def __init__(self, verifier: Verifier, out: list[Problem]) -> None:
        self.v = verifier
        self.db = verifier.db
        self.out = out
        self.items: list[tuple[int, str, str, Any, dict[str, Any]]] = []
        self.seen: dict[str, _Seen] = {}
        self.columns: dict[str, list[str]] = {}  # per table, as `SELECT rowid AS __rowid, *` returns them
        self.shapes: dict[tuple[str, tuple[str, ...]], _Shape] = {}
        self.check_records_due: list[tuple[int, Any, list[Any]]] = []  # (seq, check id, member hashes)

    def add(self, entry: dict[str, Any], details: Any) -> None:
        from . import custody

        for table, keycol, key, expected in custody.vouched(entry, details):
            self.items.append((entry["seq"], table, keycol, key, expected))

    def flush(self) -> None:
        if not self.items:
            return
        wanted: dict[tuple[str, str], set[Any]] = {}
        for _seq, table, keycol, key, _exp in self.items:
            if _bindable(key):
                wanted.setdefault((table, keycol), set()).add(key)
        current = {tk: self.fetch(tk[0], tk[1], keys) for tk, keys in wanted.items()}
        for seq, table, keycol, key, expected in self.items:
            rows = current.get((table, keycol), {})
            self.compare(seq, table, key, expected, rows.get(key) if _bindable(key) else None)
        self.items.clear()
        self.compare_check_records()

    def fetch(self, table: str, keycol: str, keys: set[Any]) -> dict[Any, tuple[Any, ...]]:
        out: dict[Any, tuple[Any, ...]] = {}
        for part, marks in _in_chunks(keys):
            cursor = self.db.execute(f"SELECT rowid AS __rowid, * FROM {_sql_name(table)} "
                                     f"WHERE {_sql_name(keycol)} IN ({marks})", part)
            cols = self.columns.setdefault(table, [d[0] for d in cursor.description])
            k = cols.index(keycol)
            for row in cursor:
                out[row[k]] = row
        return out

    def record_at(self, file: Any, offset: Any) -> tuple[Any, ...] | None:
        """A record row found by where it says the record is (its record_id was edited)."""
        if not (isinstance(file, str) and _bindable(offset)):
            return None
        cursor = self.db.execute("SELECT rowid AS __rowid, * FROM capture_records WHERE warc_file = ? AND offset = ? "
                                 "ORDER BY rowid DESC LIMIT 1", [file, offset])
        self.columns.setdefault("capture_records", [d[0] for d in cursor.description])
        return cursor.fetchone()

    def as_dict(self, table: str, row: tuple[Any, ...]) -> dict[str, Any]:
        return dict(zip(self.columns[table][1:], row[1:], strict=True))

    def shape(self, table: str, keys: tuple[str, ...]) -> _Shape:
        """A getter that pulls the entry's columns out of a row tuple, cached per key set."""
        found = self.shapes.get((table, keys))
        if found is None:
            cols = self.columns[table]
            names = [k for k in keys if k in cols[1:]]
            index = [cols.index(k) for k in names]
            if len(index) == 1:
                i = index[0]
                getter: Callable[[tuple[Any, ...]], tuple[Any, ...]] = lambda row: (row[i],)  # noqa: E731
            elif index:
                getter = itemgetter(*index)
            else:
                getter = lambda row: ()  # noqa: E731
            found = self.shapes[(table, keys)] = (getter, names, len(names) == len(keys))
        return found

    def compare(self, seq: int, table: str, key: Any, expected: dict[str, Any], by_key: tuple[Any, ...] | None) -> None:
        seen = self.seen.setdefault(table, _Seen())
        if by_key is not None:
            seen.add(by_key[0])
        if self.v.source_ids is not None and not self.v.in_scope(
                table, key, self.as_dict(table, by_key) if by_key is not None else None):
            return
        current = by_key
        if current is None and table == "capture_records":
            current = self.record_at(expected.get("warc_file"), expected.get("offset"))
            if current is not None:
                seen.add(current[0])
        if current is None:
            where = self.v.row_where(table, key, None, expected)
            self.out.append(Problem("catalogue-deleted", f"{table} row {key} vouched for by log entry {seq} "
                                    "is missing from the catalogue", table=table, log_seq=seq, **where))
            return
        getter, names, complete = self.shape(table, tuple(expected))
        values = tuple(expected.values()) if complete else tuple(expected[k] for k in names)
        if getter(current) == values:
            if table == "checks":
                self.compare_check(seq, key, expected, current, edited=False)
            return
        row = self.as_dict(table, current)
        where = self.v.row_where(table, key, row, expected)
        for column, value in expected.items():
            if column in row and row[column] != value:
                self.out.append(Problem("catalogue-edited", f"{table} {key}: {column} is {row[column]!r}, but log "
                                        f"entry {seq} recorded {value!r}", table=table, column=column,
                                        log_seq=seq, **where))
        if table == "checks":
            self.compare_check(seq, key, expected, current, edited=True)

    def compare_check(self, seq: int, key: Any, expected: dict[str, Any], current: tuple[Any, ...],
                      edited: bool) -> None:
        """A check's entry holds the SHA-256 of its whole row (to_json of it, as it was inserted)
        and the member SHA-256 of each record it wrote; the records are compared per batch."""
        from .catalogue import to_json

        row_sha256 = expected.get("row_sha256")
        if not edited and row_sha256 is not None and \
                hashlib.sha256(to_json(self.as_dict("checks", current)).encode()).hexdigest() != row_sha256:
            self.out.append(Problem("catalogue-edited", f"checks {key} was edited: the row no longer has the SHA-256 "
                                    f"log entry {seq} recorded for it", table="checks", log_seq=seq,
                                    **self.v._check_where(key)))
        if isinstance(expected.get("records"), list):
            self.check_records_due.append((seq, key, expected["records"]))

    def compare_check_records(self) -> None:
        """Each check's record rows against the member hashes its entry lists: a row whose hash
        the entry lacks is an edit (paired with a hash no row has), or unvouched if none is left."""
        if not self.check_records_due:
            return
        by_check: dict[Any, list[tuple[Any, ...]]] = {}
        for part, marks in _in_chunks(sorted({k for _s, k, _h in self.check_records_due if _bindable(k)})):
            cursor = self.db.execute(f"SELECT rowid AS __rowid, * FROM check_records WHERE check_id IN ({marks}) "
                                     "ORDER BY offset", part)
            cols = self.columns.setdefault("check_records", [d[0] for d in cursor.description])
            k = cols.index("check_id")
            for row in cursor:
                by_check.setdefault(row[k], []).append(row)
        seen = self.seen.setdefault("check_records", _Seen())
        for seq, check_id, hashes in self.check_records_due:
            left = list(hashes)
            strays = []
            for row in by_check.get(check_id, []) if _bindable(check_id) else []:
                rec = self.as_dict("check_records", row)
                if rec["member_sha256"] in left:
                    left.remove(rec["member_sha256"])
                    seen.add(row[0])
                else:
                    strays.append((row[0], rec))
            for (rowid, rec), vouched in zip(strays, left, strict=False):
                seen.add(rowid)
                self.out.append(Problem("catalogue-edited", f"check_records {rec['record_id']}: member_sha256 is "
                                        f"{rec['member_sha256']!r}, but log entry {seq} recorded {vouched!r}",
                                        table="check_records", column="member_sha256", log_seq=seq,
                                        **self.v._capture_where(rec)))
            for vouched in left[len(strays):]:
                self.out.append(Problem("catalogue-deleted", f"a record of check {check_id} (member SHA-256 "
                                        f"{vouched}) vouched for by log entry {seq} is missing from the catalogue",
                                        table="check_records", log_seq=seq, **self.v._check_where(check_id)))
        self.check_records_due.clear()


def _sql_name(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _columns_of(db: Any, table: str) -> list[str]:
    return [r[1] for r in db.execute(f"PRAGMA table_info({_sql_name(table)})")]


def _text_affinity(db: Any, table: str) -> set[str]:
    """Columns with TEXT affinity: SQLite stores any number put there as text, so they never hold a REAL."""
    out = set()
    for row in db.execute(f"PRAGMA table_info({_sql_name(table)})"):
        decl = (row[2] or "").upper()
        if "INT" not in decl and any(t in decl for t in ("CHAR", "CLOB", "TEXT")):
            out.add(row[1])
    return out


def capture_match_sql(db: Any, capture_keys: list[str], record_keys: list[str]) -> tuple[str, str] | None:
    """(join, expression): joined to `custody_log l`, the expression is 1 exactly when a capture
    entry's details are, byte for byte, what its rows say now.

    The capture engine's entry is to_json({"capture": row, "capture_id": id, "records": [...]})
    (sorted keys, no spaces, raw UTF-8): SQLite's json_object writes integers, text and NULL
    exactly as json.dumps does, so the entry can be rebuilt from the current rows and compared
    as one string, in C, with the GIL released, without parsing it. Equal strings mean equal
    values. Anything json_object might render ambiguously (a REAL) yields 0, and so does a
    different key set, record order or formatting: those entries take the exact Python path.
    None when the key sets are not all columns (no rebuild possible).
    """
    cap_cols, rec_cols = set(_columns_of(db, "captures")), set(_columns_of(db, "capture_records"))
    if not capture_keys or not record_keys or not (set(capture_keys) <= cap_cols and set(record_keys) <= rec_cols):
        return None

    def rebuilt(alias: str, keys: list[str]) -> str:
        return "json_object(" + ", ".join(f"{_sql_text(k)}, {alias}.{_sql_name(k)}" for k in sorted(keys)) + ")"

    def odd(alias: str, table: str, keys: list[str]) -> str:
        # A REAL is printed with 15 digits by json_object (two values could print alike), so a
        # REAL anywhere sends the entry to the exact path. Only columns without TEXT affinity can
        # hold one. (A BLOB makes json_object raise: the caller then takes the exact path for all.)
        text = _text_affinity(db, table)
        checks = [f"typeof({alias}.{_sql_name(k)}) = 'real'" for k in keys if k not in text]
        return "(" + (" OR ".join(checks) or "0") + ")"

    rec_odd = odd("r", "capture_records", record_keys)
    records = (f"(SELECT CASE WHEN count(*) = 0 THEN '' WHEN sum({rec_odd}) > 0 THEN NULL "
               f"ELSE group_concat(CASE WHEN {rec_odd} THEN NULL ELSE {rebuilt('r', record_keys)} END, ',') "
               f"END FROM capture_records r WHERE r.capture_id = c.id)")
    # capture_id sits after the capture object (sorted keys); a wrong guess only means "not equal".
    join = ("LEFT JOIN captures c ON l.event = 'capture' AND c.id = "
            "CAST(substr(l.details, instr(l.details, ',\"capture_id\":') + 14) AS INTEGER)")
    same = ("CASE WHEN c.id IS NULL OR " + odd("c", "captures", capture_keys) + " THEN 0 ELSE "
            "l.details = '{\"capture\":' || " + rebuilt("c", capture_keys) + " || ',\"capture_id\":' || c.id "
            "|| ',\"records\":[' || " + records + " || ']}' END")
    return join, same


# Every catalogued record of one file (the warc_records view), its owner as capture_id or check_id.
_RECORDS_OF_FILE = ("SELECT CASE WHEN owner = 'capture' THEN owner_id END AS capture_id, "
                    "CASE WHEN owner = 'check' THEN owner_id END AS check_id, id, warc_file, offset, length, "
                    "record_id, record_type, target_uri, block_sha256, payload_sha256, member_sha256 "
                    "FROM warc_records WHERE warc_file = ? ORDER BY offset")


class Verifier:
    """One verification run over the whole archive or a scope of sources."""

    def __init__(
        self,
        archive: Any,
        *,
        deep: bool = False,
        source_ids: set[int] | None = None,
        scope: dict[str, Any] | None = None,
        tsa_roots: list[Any] | None = None,
        public_keys: list[Any] | None = None,
        workers: int = WORKERS,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.archive = archive
        self.db = archive.db
        self.deep = deep
        self.source_ids = source_ids
        self.scope = scope or {"all": True}
        self.tsa_roots = tsa_roots
        self.public_keys = public_keys
        self.workers = workers
        self.progress = progress
        self.result = VerifyResult("deep" if deep else "fast", self.scope)
        self.catalogue_file = catalogue_path(self.db)
        self.files: dict[str, dict[str, Any]] = {}  # warc_files rows in scope, set by load()
        self.scope_captures: set[int] | None = None  # None: the whole archive
        self.scope_checks: set[int] = set()
        self.files_with_checks: set[str] = set()  # fast mode: files holding a check's evidence
        # Looked up only when a problem names them, then kept (shared with the log thread).
        self._capture_cache: dict[int, dict[str, Any] | None] = {}
        self._check_url_cache: dict[int, str | None] = {}
        self._intact_cache: dict[int, list[int]] = {}

    # -- helpers
    def add(self, kind: str, message: str, **where: Any) -> Problem:
        problem = Problem(kind, message, **where)
        self.result.problems.append(problem)
        return problem

    def note(self, kind: str, message: str, **where: Any) -> Problem:
        return self.add(kind, message, severity="note", **where)

    def capture(self, capture_id: Any) -> dict[str, Any] | None:
        """A capture row with its source URL (cached: problems about one capture come in groups)."""
        if not _bindable(capture_id):
            return None
        if capture_id not in self._capture_cache:
            rows = _dict_rows(self.db, "SELECT c.id, c.source_id, c.status, c.url_requested, s.url AS source_url "
                                       "FROM captures c LEFT JOIN sources s ON s.id = c.source_id WHERE c.id = ?",
                              [capture_id])
            self._capture_cache[capture_id] = rows[0] if rows else None
        return self._capture_cache[capture_id]

    def _capture_where(self, record: dict[str, Any] | None, capture_id: int | None = None) -> dict[str, Any]:
        """file/offset/record/capture (or check)/url for a problem about a catalogued record."""
        where: dict[str, Any] = {}
        if record is not None:
            where.update(file=record["warc_file"], offset=record["offset"], record_id=record["record_id"])
            capture_id = record.get("capture_id")
            if record.get("check_id") is not None:
                where.update(self._check_where(record["check_id"]))
        if capture_id is not None:
            where["capture_id"] = capture_id
            cap = self.capture(capture_id) if self.capture_in_scope(capture_id) else None
            if cap is not None:
                where["url"] = cap["source_url"] if cap["source_url"] is not None else cap["url_requested"]
        return where

    def _check_where(self, check_id: Any) -> dict[str, Any]:
        """check/url for a problem about a live check's row or evidence."""
        where: dict[str, Any] = {"check_id": check_id}
        if _bindable(check_id):
            if check_id not in self._check_url_cache:
                found = self.db.execute("SELECT s.url FROM checks k JOIN sources s ON s.id = k.source_id "
                                        "WHERE k.id = ?", [check_id]).fetchone()
                self._check_url_cache[check_id] = found[0] if found else None
            if self._check_url_cache[check_id] is not None:
                where["url"] = self._check_url_cache[check_id]
        return where

    def capture_in_scope(self, capture_id: Any) -> bool:
        if self.scope_captures is None:
            return self.capture(capture_id) is not None
        return capture_id in self.scope_captures

    def records_of(self, name: str) -> list[dict[str, Any]]:
        """The catalogued records of one file, by offset, whoever wrote them: captures and the
        evidence of live checks (fetched per file, when needed)."""
        return _dict_rows(self.db, _RECORDS_OF_FILE, [name])

    # -- catalogue: only what every run needs; rows are fetched when a check needs them
    def load(self) -> None:
        db = self.db
        self.scope_captures = None
        self.scope_checks = set()
        wanted_files: set[str] | None = None
        if self.source_ids is not None:
            self.scope_captures = set()
            for part, marks in _in_chunks(sorted(self.source_ids)):
                self.scope_captures.update(r[0] for r in db.execute(
                    f"SELECT id FROM captures WHERE source_id IN ({marks})", part))
                self.scope_checks.update(r[0] for r in db.execute(
                    f"SELECT id FROM checks WHERE source_id IN ({marks})", part))
            wanted_files = set()
            for part, marks in _in_chunks(sorted(self.scope_captures)):
                wanted_files.update(r[0] for r in db.execute(
                    f"SELECT warc_file FROM capture_records WHERE capture_id IN ({marks}) UNION "
                    f"SELECT warc_file FROM captures WHERE id IN ({marks}) AND warc_file IS NOT NULL", part + part))
            for part, marks in _in_chunks(sorted(self.scope_checks)):
                wanted_files.update(r[0] for r in db.execute(
                    f"SELECT warc_file FROM check_records WHERE check_id IN ({marks})", part))
        self.files = {r["name"]: r for r in _dict_rows(db, "SELECT * FROM warc_files ORDER BY name")
                      if wanted_files is None or r["name"] in wanted_files}
        if not self.deep:
            self.files_with_checks = {r[0] for r in db.execute("SELECT DISTINCT warc_file FROM check_records")}

    # -- run
    def run(self) -> VerifyResult:
        import time

        started = time.perf_counter()
        # Listed before the snapshot is taken: a WARC file's row is committed before the file is
        # created, so every file listed here is known to the snapshot, and a file created later
        # (by a capture running meanwhile) is not judged.
        on_disk = self.disk_files()
        # The log and token checks are Python work; file hashing and inflating run outside the
        # GIL on the pool. Overlap them so the catalogue checks cost (almost) no wall time. The
        # log thread uses its own read-only connection, reading the same snapshot.
        side = self._side_connection()
        try:
            with self._snapshot(side):
                self.load()
                with ThreadPoolExecutor(max_workers=1) as pool:
                    log_job = pool.submit(self._log_checks, side)
                    self.check_files(on_disk)
                    self.check_records_point_at_files()
                    log_problems = log_job.result()
                self.result.problems.extend(log_problems)
                self.attach_claims()
        finally:
            if side is not None:
                side.close()
        self.result.seconds = time.perf_counter() - started
        return self.result

    def _side_connection(self) -> sqlite3.Connection | None:
        if self.catalogue_file is None:
            return None
        return read_only_connection(self.catalogue_file, check_same_thread=False)

    @contextlib.contextmanager
    def _snapshot(self, side: sqlite3.Connection | None) -> Iterator[None]:
        """Every catalogue query of the run reads one state of the catalogue.

        Each connection reads inside one read transaction, which WAL pins to the state at its
        first read. Both are pinned while this run holds the write lock, so no commit falls
        between them: rows and log entries committed later (a capture running meanwhile) are
        never judged, and neither are the bytes they reference."""
        conns = [self.db.conn] + ([side] if side is not None else [])
        barrier = self._write_barrier()
        try:
            for conn in conns:
                if not conn.in_transaction:
                    conn.execute("BEGIN")
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # pins the snapshot
        finally:
            if barrier is not None:
                barrier.execute("ROLLBACK")
                barrier.close()
        try:
            yield
        finally:
            for conn in conns:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    def _write_barrier(self) -> sqlite3.Connection | None:
        """The catalogue's write lock, held while the snapshots are pinned (None when the
        catalogue cannot be written at all: then nothing can commit between them either)."""
        if self.catalogue_file is None or getattr(self.archive, "read_only", False):
            return None
        conn = writer_connection(self.catalogue_file)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            conn.close()
            if "readonly" in str(exc) or "read-only" in str(exc):
                return None
            raise CouldNotRunError(f"the catalogue stayed locked by another run ({exc}); try again") from None
        return conn

    # -- files
    def disk_files(self) -> dict[str, Path]:
        root = self.archive.warcs_dir
        found = {}
        for path in root.rglob("*"):
            if path.is_file() or path.is_symlink():
                found[path.relative_to(root).as_posix()] = path
        return found

    def check_files(self, on_disk: dict[str, Path] | None = None) -> None:
        from .errors import shown

        if on_disk is None:
            on_disk = self.disk_files()
        if self.source_ids is None:
            for name in sorted(set(on_disk) - set(self.files)):
                self.add("unknown-file", f"{shown(name)} is in warcs/ but the catalogue does not know it",
                         file=name)
        tasks = []
        still_open = []
        for name, row in self.files.items():
            path = on_disk.get(name)
            if path is None and (self.archive.warcs_dir / name).exists():
                path = self.archive.warcs_dir / name  # created after the listing, by the writer of its row
            if path is None and row["status"] == "open" and not row["referenced_size"]:
                self.note("file-open", f"{name} is registered but not written yet", file=name)
            elif path is None:
                self.file_missing(name, row)
            elif row["status"] == "open" or row["sha256"] is None:
                self.note("file-open", f"{name} is still open (being written, or left by a crashed run "
                          "not yet recovered); its records are checked, its hash once it is sealed", file=name)
                still_open.append((name, path))
            else:
                tasks.append((name, path, row))
        tasks.sort(key=lambda t: -(t[2]["size"] or 0))  # largest first, so the pool ends together
        # Files are handed to the pool ahead of the (Python) comparison, but in deep mode only
        # IN_FLIGHT bytes ahead: parsed members wait in memory until their file is compared.
        limit = IN_FLIGHT if self.deep else float("inf")
        with ThreadPoolExecutor(max_workers=max(1, self.workers)) as pool:
            pending: deque[tuple[Path, dict[str, Any], Callable[[], FileScan]]] = deque()
            ahead = 0
            for name, path, row in tasks:
                pending.append((path, row, self._submit(pool, name, path)))
                ahead += row["size"] or 0
                while len(pending) > 1 and ahead > limit:
                    ahead -= self._collect(*pending.popleft())
            while pending:
                self._collect(*pending.popleft())
        for name, path in still_open:
            self.check_referenced(name, path)

    def check_referenced(self, name: str, path: Path) -> None:
        """Each catalogued record of the file by its member SHA-256 alone. For a file still open,
        only the records the snapshot references are judged: whatever a live writer appended
        after them belongs to later commits."""
        recs = self.records_of(name)
        try:
            hashes = member_hashes(path, [(r["offset"], r["length"]) for r in recs]) if recs else {}
        except OSError as exc:
            self.add("file-unreadable", f"{name}: {exc.strerror}", file=name)
            return
        for rec in recs:
            got = hashes.get((rec["offset"], rec["length"]))
            if got is None:
                self.add("record-missing", f"the catalogue places record {rec['record_id']} at offset "
                         f"{rec['offset']} of {name}, but the file ends before it", **self._capture_where(rec))
            elif got != rec["member_sha256"]:
                self.add("record-changed", f"the {rec['length']} bytes at offset {rec['offset']} of {name} are not "
                         f"those catalogued for record {rec['record_id']} ({rec['record_type']}): its member "
                         "SHA-256 differs", **self._capture_where(rec))

    def _collect(self, path: Path, row: dict[str, Any], result: Callable[[], FileScan]) -> int:
        scan = result()
        self.result.files += 1
        self.result.bytes += scan.size
        self.compare_file(row, path, scan)
        if self.progress:
            self.progress(scan.size)
        return row["size"] or 0

    def _submit(self, pool: ThreadPoolExecutor, name: str, path: Path) -> Callable[[], FileScan]:
        """Queue the work for one file; returns what yields its FileScan once done."""
        if not self.deep:
            return pool.submit(hash_file, path, name).result
        spans = self.db.execute("SELECT offset, length FROM warc_records WHERE warc_file = ? ORDER BY offset",
                                [name]).fetchall()
        known = [offset for offset, _length in spans] + [0]
        try:
            size = path.stat().st_size
        except OSError:
            return pool.submit(scan_file, path, name, known).result
        plan = plan_members(self.files[name].get("warcinfo_length"), spans, size)
        if plan is None:  # the catalogue does not describe the whole file: walk it
            return pool.submit(scan_file, path, name, known).result
        batches, tail = plan
        del spans
        hashed = pool.submit(hash_file, path, name)
        parsed = [pool.submit(scan_members, path, batch) for batch in batches]
        tail_job = pool.submit(scan_tail, path, name, tail, known) if tail is not None else None

        def result() -> FileScan:
            scan = hashed.result()
            groups = [job.result() for job in parsed]
            end = tail_job.result() if tail_job is not None else None
            if (scan.error or scan.size != size or any(g is None for g in groups)
                    or (end is not None and (end.error or end.size != size))):
                return scan_file(path, name, known)  # file and catalogue disagree: the sequential walk decides
            for group in groups:
                scan.members.extend(group or ())
            if end is not None:
                scan.members.extend(end.members)
                scan.damaged = end.damaged
            return scan

        return result

    def file_missing(self, name: str, row: dict[str, Any]) -> None:
        recs = self.records_of(name)
        self.add("file-missing", f"{name} is missing from warcs/ ({len(recs)} catalogued records lost)", file=name)
        self.records_lost(recs, f"its file {name} is missing")

    def records_lost(self, recs: list[dict[str, Any]], why: str) -> None:
        """One problem per capture (or check) whose records are gone."""
        seen: set[tuple[str, int]] = set()
        for rec in recs:
            owner = ("capture", rec["capture_id"]) if rec.get("capture_id") is not None else ("check", rec["check_id"])
            if owner in seen:
                continue
            seen.add(owner)
            if owner[0] == "capture":
                self.add("capture-lost", f"capture {owner[1]} is lost: {why}", **self._capture_where(rec))
            else:
                self.add("check-evidence-lost", f"the evidence of check {owner[1]} is lost: {why}",
                         **self._capture_where(rec))

    def compare_file(self, row: dict[str, Any], path: Path, scan: FileScan) -> None:
        name = row["name"]
        if scan.error:
            self.add("file-unreadable", f"{name}: {scan.error}", file=name)
            return
        if row["status"] == "interrupted" and (row["size"] or 0) > row["referenced_size"]:
            self.note("interrupted-tail", f"{name}: {row['size'] - row['referenced_size']} bytes after offset "
                      f"{row['referenced_size']} are the known tail of an interrupted run",
                      file=name, offset=row["referenced_size"])
        intact = scan.size == row["size"] and scan.sha256 == row["sha256"]
        if intact and not self.deep:
            if name in self.files_with_checks:
                # A check's entry vouches only for its records' member hashes: their offsets and
                # lengths are vouched for by finding those hashes there.
                self.check_referenced(name, path)
            return  # the common case needs no catalogue rows at all
        recs = self.records_of(name)
        if scan.size != row["size"]:
            self.size_changed(row, scan, recs)
        if scan.sha256 != row["sha256"]:
            self.add("file-hash", f"{name}: SHA-256 differs from the one recorded when it was closed",
                     file=name)
            self.localise(row, path, scan, recs)
        if self.deep:
            self.rescan_lost(path, scan, recs)
            self.result.records += len(scan.members)
            self.check_members(row, scan, recs)

    def rescan_lost(self, path: Path, scan: FileScan, recs: list[dict[str, Any]]) -> None:
        """Re-parse catalogued records the stream pass did not land on (after damage)."""
        if not scan.damaged:
            return
        found = {m.offset for m in scan.members} | {s for s, _e, _w in scan.damaged}
        for rec in recs:
            if rec["offset"] in found or rec["offset"] + rec["length"] > scan.size:
                continue
            extra = scan_span(path, scan.name, rec["offset"], rec["length"])
            scan.members.extend(m for m in extra.members if m.offset == rec["offset"])
            scan.damaged.extend(d for d in extra.damaged if d[0] == rec["offset"])
        scan.members.sort(key=lambda m: m.offset)

    def size_changed(self, row: dict[str, Any], scan: FileScan, recs: list[dict[str, Any]]) -> None:
        name, size, expected = row["name"], scan.size, row["size"]
        if size < expected:
            self.add("file-truncated", f"{name} is {size} bytes, {expected - size} fewer than recorded: "
                     f"truncated at offset {size}", file=name, offset=size)
            self.records_lost([r for r in recs if r["offset"] + r["length"] > size],
                              f"{name} was truncated at offset {size}")
        else:
            self.add("file-grown", f"{name} is {size} bytes, {size - expected} more than recorded: "
                     f"bytes were appended after offset {expected}", file=name, offset=expected)

    def localise(self, row: dict[str, Any], path: Path, scan: FileScan, recs: list[dict[str, Any]]) -> None:
        """Name the records whose bytes changed (each member has its own recorded SHA-256)."""
        spans = [(r["offset"], r["length"]) for r in recs]
        try:
            hashes = member_hashes(path, spans)
        except OSError as exc:
            self.add("file-unreadable", f"{row['name']}: {exc.strerror}", file=row["name"])
            return
        changed = 0
        for rec in recs:
            got = hashes.get((rec["offset"], rec["length"]))
            if got is None:
                continue  # past the end: reported as truncation
            if got != rec["member_sha256"]:
                changed += 1
                self.add("record-changed", f"the bytes of record {rec['record_id']} ({rec['record_type']}) "
                         f"at offset {rec['offset']} of {row['name']} changed", **self._capture_where(rec))
        if changed == 0:
            gaps = uncovered(recs, min(scan.size, row["size"] or scan.size))
            where = ", ".join(f"{a}..{b}" + (" (warcinfo)" if a == 0 else "") for a, b in gaps) or "none"
            self.add("bytes-changed", f"{row['name']}: every catalogued record is intact; the change lies "
                     f"outside them, in bytes {where}", file=row["name"], offset=gaps[0][0] if gaps else None)

    # -- deep
    def check_members(self, row: dict[str, Any], scan: FileScan, recs: list[dict[str, Any]]) -> None:
        name = row["name"]
        rec_at = {r["offset"]: r for r in recs}
        for start, end, why in scan.damaged:
            if row["status"] == "interrupted" and start >= row["referenced_size"]:
                self.note("interrupted-tail", f"{name} at offset {start}: the interrupted run's last, "
                          f"uncommitted record is incomplete ({why})", file=name, offset=start)
                continue
            rec = rec_at.get(start)
            where = self._capture_where(rec) if rec else {"file": name, "offset": start}
            self.add("record-corrupt", f"{name} at offset {start}: {why} (bytes {start}..{end} unreadable)", **where)
        for m in scan.members:
            rec = rec_at.get(m.offset)
            if rec is not None and self.member_agrees(rec, m):
                continue  # nearly every record: no problem, so no need to work out where it is
            if rec is not None:
                where = self._capture_where(rec)
            else:  # a record the catalogue places elsewhere (its offset was edited) is still named as its own
                moved = next((r for r in recs if r["record_id"] == m.record_id), None) if m.record_id else None
                where = {**(self._capture_where(moved) if moved else {}), "file": name, "offset": m.offset,
                         "record_id": m.record_id}
            self.check_record_digests(name, m, where)
            if rec is not None:
                self.compare_record(rec, m, where)
            elif not self.expected_uncatalogued(row, m):
                self.add("record-orphan", f"{name} at offset {m.offset}: record {m.record_id} ({m.record_type} "
                         f"{m.target_uri or ''}) belongs to no capture", **where)
        by_offset = {m.offset for m in scan.members}
        damaged_starts = {s for s, _e, _w in scan.damaged}
        for rec in recs:
            if rec["offset"] not in by_offset and rec["offset"] not in damaged_starts and rec["offset"] < scan.size:
                self.add("record-missing", f"the catalogue places record {rec['record_id']} at offset "
                         f"{rec['offset']} of {name}, but no record starts there", **self._capture_where(rec))

    @staticmethod
    def member_agrees(rec: dict[str, Any], m: Member) -> bool:
        """True when check_record_digests and compare_record would both find nothing."""
        return (not m.errors and m.declared_block is not None
                and digest_matches(m.declared_block, m.block_sha256) is not False
                and not (m.declared_payload and m.payload_sha256
                         and digest_matches(m.declared_payload, m.payload_sha256) is False)
                and rec["length"] == m.length and rec["record_id"] == m.record_id
                and rec["record_type"] == m.record_type and (rec["target_uri"] or "") == (m.target_uri or "")
                and rec["block_sha256"] == m.block_sha256
                and not (rec["payload_sha256"] and m.payload_sha256 and rec["payload_sha256"] != m.payload_sha256))

    def check_record_digests(self, name: str, m: Member, where: dict[str, Any]) -> None:
        for err in m.errors:
            self.add("record-malformed", f"{name} at offset {m.offset}: {err}", **where)
        if m.declared_block is None:
            self.add("record-malformed", f"{name} at offset {m.offset}: no WARC-Block-Digest", **where)
        elif digest_matches(m.declared_block, m.block_sha256) is False:
            self.add("block-digest", f"{name} at offset {m.offset}: record {m.record_id} block digest does "
                     "not match its content", **where)
        if m.declared_payload and m.payload_sha256 and digest_matches(m.declared_payload, m.payload_sha256) is False:
            self.add("payload-digest", f"{name} at offset {m.offset}: record {m.record_id} payload digest "
                     "does not match its payload", **where)

    def compare_record(self, rec: dict[str, Any], m: Member, where: dict[str, Any]) -> None:
        checks = [
            ("length", rec["length"], m.length),
            ("record_id", rec["record_id"], m.record_id),
            ("record_type", rec["record_type"], m.record_type),
            ("target_uri", rec["target_uri"] or "", m.target_uri or ""),
            ("block_sha256", rec["block_sha256"], m.block_sha256),
        ]
        if rec["payload_sha256"] and m.payload_sha256:
            checks.append(("payload_sha256", rec["payload_sha256"], m.payload_sha256))
        for column, catalogued, found in checks:
            if catalogued != found:
                self.add("record-mismatch", f"capture_records.{column} of record {rec['record_id']} says "
                         f"{catalogued!r}, the WARC at offset {rec['offset']} has {found!r}",
                         table="capture_records", column=column, **where)

    def expected_uncatalogued(self, row: dict[str, Any], m: Member) -> bool:
        if m.offset == 0 and m.record_type == "warcinfo":
            if row.get("warcinfo_record_id") and m.record_id != row["warcinfo_record_id"]:
                return False
            return True
        return row["status"] == "interrupted" and m.offset >= row["referenced_size"]

    def check_records_point_at_files(self) -> None:
        """Records whose file warc_files does not list (one grouped query, not a row scan in Python)."""
        rows = self.db.execute(
            "SELECT warc_file, owner, owner_id FROM warc_records "
            "WHERE warc_file NOT IN (SELECT name FROM warc_files) ORDER BY warc_file, offset").fetchall()
        by_file: dict[str, list[tuple[str, int]]] = {}
        for name, owner, owner_id in rows:
            by_file.setdefault(name, []).append((owner, owner_id))
        for name, owners in by_file.items():
            if self.scope_captures is None or any(
                    i in (self.scope_captures if o == "capture" else self.scope_checks) for o, i in owners):
                self.add("file-uncatalogued", f"{len(owners)} records point at {name}, which warc_files does "
                         "not list", file=name)

    def _log_checks(self, conn: sqlite3.Connection | None) -> list[Problem]:
        """check_log + check_timestamps on the private connection `conn`; returns their problems."""
        import sqlite_utils

        sub = Verifier.__new__(Verifier)
        sub.__dict__.update(self.__dict__)
        sub.result = VerifyResult(self.result.mode, self.scope)
        sub.db = sqlite_utils.Database(conn, execute_plugins=False) if conn is not None else self.db
        sub.check_log()
        sub.check_timestamps()
        self.result.log_head = sub.result.log_head
        return sub.result.problems

    # -- custody log
    def check_log(self) -> None:
        """Chain, signatures and vouched rows in one streaming pass over the log.

        The same query that streams the entries for the chain check tells, for each capture
        entry, whether its rows still match it byte for byte (capture_match_sql); only the
        others are parsed and compared in Python. Problems keep the order of the checks
        (chain breaks, then signatures, then rows).
        """
        import sqlite3

        sql, rebuilding = self.log_query(rebuild=True)
        try:
            self._check_log(sql)
        except sqlite3.Error:
            if not rebuilding:
                raise
            # A value json_object refuses (a BLOB) stops the query part-way: start again without
            # the rebuild, so that every entry takes the exact path.
            self._check_log(self.log_query(rebuild=False)[0])

    def log_query(self, rebuild: bool) -> tuple[str, bool]:
        """SELECT the entry columns, a capture id and a 1 for each capture entry matched in SQL."""
        from . import custody

        cols = ", ".join(f"l.{c}" for c in custody.ENTRY_COLUMNS)
        plain = f"SELECT {cols}, NULL, 0 FROM custody_log l ORDER BY l.seq"
        if not rebuild:
            return plain, False
        # The key sets come from the first entry that has records (a failed capture has none).
        first = self.db.execute("SELECT details FROM custody_log WHERE event = 'capture' AND "
                                "instr(details, '\"records\":[{') > 0 ORDER BY seq LIMIT 1").fetchone()
        try:
            details = json.loads(first[0]) if first else None
        except (TypeError, ValueError):
            details = None
        if not (isinstance(details, dict) and set(details) == {"capture", "capture_id", "records"}
                and isinstance(details["capture"], dict) and isinstance(details["records"], list)
                and all(isinstance(r, dict) for r in details["records"])):
            return plain, False
        match = capture_match_sql(self.db, list(details["capture"]), sorted({k for r in details["records"] for k in r}))
        if match is None:
            return plain, False
        join, same = match
        return f"SELECT {cols}, c.id, {same} FROM custody_log l {join} ORDER BY l.seq", True

    def _check_log(self, sql: str) -> None:
        from . import custody

        total = self.db.execute("SELECT COUNT(*) FROM custody_log").fetchone()[0]
        chain = custody.ChainChecker(total)
        signature_problems: list[Problem] = []
        row_problems: list[Problem] = []
        check_signature = self.signature_checker(signature_problems)
        rows = _RowCheck(self, row_problems)
        same_captures = _Seen()
        head = custody.GENESIS_HASH
        names = custody.ENTRY_COLUMNS
        width = len(names)
        cursor = self.db.execute(sql)
        while batch := cursor.fetchmany(512):
            for values in batch:
                entry = dict(zip(names, values[:width], strict=True))
                chain.feed(entry)
                if check_signature is not None:
                    check_signature(entry)
                if values[width + 1] == 1:
                    same_captures.add(values[width])
                    continue  # its rows were proven identical in SQL: nothing to parse or compare
                try:
                    details = json.loads(entry["details"])
                except (TypeError, ValueError):
                    continue  # a mangled entry: the chain check reports it
                rows.add(entry, details)
            rows.flush()
            head = batch[-1][names.index("entry_hash")]
        self.result.log_head = head
        for seq, kind, message in chain.finish(lambda hashes: custody.seqs_of(self.db, hashes)):
            self.add(f"log-{kind}", message, log_seq=seq)
        self.result.problems.extend(signature_problems)
        self.result.problems.extend(row_problems)
        self.check_unvouched(rows.seen, same_captures)

    def unchanged_captures(self) -> _Seen:
        """The capture ids whose entries match their rows byte for byte (what check_log skips)."""
        sql, _rebuilding = self.log_query(rebuild=True)
        from . import custody

        width = len(custody.ENTRY_COLUMNS)
        captures = _Seen()
        for values in self.db.execute(sql):
            if values[width + 1] == 1:
                captures.add(values[width])
        return captures

    def signature_checker(self, out: list[Problem]) -> Callable[[dict[str, Any]], None] | None:
        """A per-entry signature check, or None when no key was ever introduced."""
        from . import signing

        intros = _dict_rows(self.db, "SELECT seq, subject, details FROM custody_log WHERE event = 'keys-generate' "
                                     "ORDER BY seq")
        trusted = {signing.key_id(k): k for k in (self.public_keys or [])}
        if not intros:
            if trusted:
                out.append(Problem("log-unsigned", "a public key was given, but no signing key was ever "
                                   "introduced in the log"))
            return None
        logged: dict[str, Any] = {}
        for intro in intros:
            try:
                pem = json.loads(intro["details"]).get("public_key_pem")
                logged[intro["subject"]] = signing.load_public(pem)
            except Exception:  # noqa: BLE001 - a mangled entry is reported by the chain check
                continue
        keys = trusted or logged
        if not trusted:
            out.append(Problem("log-key-source", "signatures checked against the public keys recorded in the log "
                               "itself; pass --public-key with a copy kept elsewhere to rule out a replaced key",
                               severity="note"))
        first = intros[0]["seq"]

        def check(r: dict[str, Any]) -> None:
            if r["seq"] < first:
                return
            if not r["signature"]:
                out.append(Problem("log-unsigned", f"log entry {r['seq']} ({r['event']}) is not signed, although a "
                                   "signing key was in force", log_seq=r["seq"]))
                return
            try:
                kid, _raw = signing.parse_signature(r["signature"])
            except ValueError as exc:
                out.append(Problem("log-signature", f"log entry {r['seq']}: malformed signature ({exc})",
                                   log_seq=r["seq"]))
                return
            key = keys.get(kid)
            if key is None:
                out.append(Problem("log-signature", f"log entry {r['seq']} is signed by key {kid}, which is not a "
                                   "trusted key", log_seq=r["seq"]))
                return
            why = signing.check_signature(key, r["entry_hash"], r["signature"])
            if why:
                out.append(Problem("log-signature", f"log entry {r['seq']} ({r['event']}): {why}", log_seq=r["seq"]))

        return check

    def check_unvouched(self, seen: dict[str, _Seen], same_captures: _Seen) -> None:
        """Rows no entry vouches for were added behind evarchive's back, or the log lost its tail."""
        # The usual case: every capture (so every record that belongs to one) matched in SQL.
        if same_captures.count != self.db.execute("SELECT COUNT(*) FROM captures").fetchone()[0]:
            self.check_unvouched_captures(seen, same_captures)
        self.check_unvouched_checks(seen)
        if self.source_ids is None:
            self.check_unvouched_runs(seen)
        self.check_unvouched_files(seen)

    def check_unvouched_captures(self, seen: dict[str, _Seen], same_captures: _Seen) -> None:
        """A capture whose entry matched in SQL is vouched for, and so is each of its records
        (the entry lists exactly the capture's records as they are now)."""
        none = _Seen()
        caps = seen.get("captures", none)
        for (cid,) in self.db.execute("SELECT id FROM captures ORDER BY id"):
            if cid not in caps and cid not in same_captures and (
                    self.scope_captures is None or cid in self.scope_captures):
                self.add("catalogue-unvouched", f"capture {cid} is in no custody-log entry (added outside "
                         "evarchive, or the end of the log was removed)", table="captures",
                         **self._capture_where(None, cid))
        recs = seen.get("capture_records", none)
        unseen = [rowid for rowid, capture_id in self.db.execute(
            "SELECT r.id, r.capture_id FROM capture_records r JOIN captures c ON c.id = r.capture_id "
            "ORDER BY r.warc_file, r.offset")
            if rowid not in recs and capture_id not in same_captures
            and (self.scope_captures is None or capture_id in self.scope_captures)]
        for part, marks in _in_chunks(unseen):
            for rec in _dict_rows(self.db, f"SELECT * FROM capture_records WHERE id IN ({marks}) "
                                           "ORDER BY warc_file, offset", part):
                self.add("catalogue-unvouched", f"record {rec['record_id']} is in no custody-log entry",
                         table="capture_records", **self._capture_where(rec))

    def check_unvouched_checks(self, seen: dict[str, _Seen]) -> None:
        checks, recs = seen.get("checks", _Seen()), seen.get("check_records", _Seen())
        for (cid,) in self.db.execute("SELECT id FROM checks ORDER BY id").fetchall():
            if cid not in checks and (self.source_ids is None or cid in self.scope_checks):
                self.add("catalogue-unvouched", f"check {cid} is in no custody-log entry (added outside evarchive, "
                         "or the end of the log was removed)", table="checks", **self._check_where(cid))
        unseen = [rowid for rowid, check_id in self.db.execute("SELECT id, check_id FROM check_records ORDER BY id")
                  if rowid not in recs and (self.source_ids is None or check_id in self.scope_checks)]
        for part, marks in _in_chunks(unseen):
            for rec in _dict_rows(self.db, f"SELECT * FROM check_records WHERE id IN ({marks}) "
                                           "ORDER BY warc_file, offset", part):
                self.add("catalogue-unvouched", f"record {rec['record_id']} of check {rec['check_id']} is in no "
                         "custody-log entry", table="check_records", **self._capture_where(rec))

    def check_unvouched_runs(self, seen: dict[str, _Seen]) -> None:
        runs = seen.get("verification_runs", _Seen())
        for run_id, result in self.db.execute("SELECT id, result FROM verification_runs ORDER BY id").fetchall():
            if run_id in runs:
                continue
            if result is None:  # left by a verification that was interrupted before it could record its end
                self.note("verification-unfinished", f"verification run {run_id} never finished; no custody-log "
                          "entry vouches for it", table="verification_runs")
            else:
                self.add("catalogue-unvouched", f"verification run {run_id} is in no custody-log entry (added "
                         "outside evarchive, or the end of the log was removed)", table="verification_runs")

    def check_unvouched_files(self, seen: dict[str, _Seen]) -> None:
        files = seen.get("warc_files", _Seen())
        for name, row in self.files.items():
            if row["status"] != "open" and row["id"] not in files:
                self.add("catalogue-unvouched", f"the sealed state of {name} is in no custody-log entry",
                         table="warc_files", file=name)

    def in_scope(self, table: str, key: Any, current: dict[str, Any] | None) -> bool:
        """Is the row an entry vouches for part of this run? `current` is the row found by its key."""
        if self.source_ids is None:
            return True
        assert self.scope_captures is not None
        if table == "captures":
            return key in self.scope_captures
        if table == "capture_records":
            return current is not None and current["capture_id"] in self.scope_captures
        if table == "warc_files":
            return key in self.files
        if table == "checks":
            return key in self.scope_checks
        if table == "check_records":
            return current is not None and current["check_id"] in self.scope_checks
        return False

    def row_where(self, table: str, key: Any, current: dict[str, Any] | None,
                  expected: dict[str, Any]) -> dict[str, Any]:
        if table == "captures":
            return self._capture_where(None, key)
        if table == "capture_records":
            rec = current or {"warc_file": expected.get("warc_file"), "offset": expected.get("offset"),
                              "record_id": key, "capture_id": expected.get("capture_id")}
            return self._capture_where(rec) if rec.get("capture_id") else {"file": rec["warc_file"],
                                                                            "offset": rec["offset"],
                                                                            "record_id": key}
        if table == "warc_files":
            return {"file": key}
        if table == "checks":
            return self._check_where(key)
        if table == "check_records" and current is not None:
            return self._capture_where(current)
        return {}

    # -- timestamps
    def check_timestamps(self) -> None:
        if not self.db["timestamps"].exists():
            return
        stamps = _dict_rows(self.db, "SELECT * FROM timestamps ORDER BY id")
        if not stamps:
            return
        from . import timestamping  # pyasn1 and friends: imported only when there is a token to check

        if self.tsa_roots is None:
            self.note("timestamp-unanchored", "no TSA roots configured: tokens are checked (imprint, nonce, "
                      "signature) but their chains are not anchored; use --tsa-roots")
        for st in stamps:
            self.check_token(st, timestamping)

    def check_token(self, st: dict[str, Any], ts: Any) -> None:
        from . import custody

        label = f"timestamp {st['id']} (log entry {st['covers_seq']}, {st['gen_time']})"
        where = {"log_seq": st["covers_seq"], "table": "timestamps"}
        token = bytes(st["token"])
        if hashlib.sha256(token).hexdigest() != st["token_sha256"]:
            self.add("timestamp", f"{label}: the stored token is not the one recorded", **where)
        found = _dict_rows(self.db, f"SELECT {', '.join(custody.ENTRY_COLUMNS)} FROM custody_log WHERE seq = ?",
                           [st["covers_seq"]])
        if not found:
            self.add("timestamp", f"{label}: the log entry it stamps is missing", **where)
            return
        entry = found[0]
        recomputed = custody._recompute(entry, entry["seq"]) or ""
        if recomputed != st["digest"]:
            self.add("timestamp", f"{label}: the log entry it stamps has changed since", **where)
        try:
            chain = ts.load_pem_certificates("".join(json.loads(st["tsa_chain_pem"])).encode())
            ts.verify_token(token, bytes.fromhex(recomputed), nonce=int(st["nonce"]),
                            roots=self.tsa_roots, extra_certs=chain)
        except ts.TokenInvalid as exc:
            self.add("timestamp", f"{label}: {exc.reason}", **where)
        except ValueError as exc:
            self.add("timestamp", f"{label}: unreadable ({exc})", **where)

    # -- claims
    def attach_claims(self) -> None:
        """Name the claims that cite each damaged capture's source, and whether any intact capture remains."""
        damaged: dict[int, set[int]] = {}
        source_of: dict[int, int] = {}
        for p in self.result.failures:
            cap = self.capture(p.capture_id) if p.capture_id is not None else None
            if cap is not None:
                source_of[p.capture_id] = cap["source_id"]  # type: ignore[index]
                damaged.setdefault(cap["source_id"], set()).add(cap["id"])
        if not damaged:
            return
        claims = claims_citing(self.db, set(damaged))
        for p in self.result.failures:
            src = source_of.get(p.capture_id) if p.capture_id is not None else None
            if src is None:
                continue
            if src not in self._intact_cache:
                self._intact_cache[src] = [r[0] for r in self.db.execute(
                    "SELECT id FROM captures WHERE source_id = ? AND status = 'ok' ORDER BY id", [src])]
            intact = [c for c in self._intact_cache[src] if c not in damaged[src]]
            for label in claims.get(src, []):
                if intact:
                    p.claims.append(f"{label} still has {len(intact)} intact capture(s) of this source")
                else:
                    p.claims.append(f"{label} has lost its only intact capture")


def uncovered(recs: list[dict[str, Any]], size: int) -> list[tuple[int, int]]:
    """Byte ranges of a file that no catalogued record covers."""
    gaps, pos = [], 0
    for r in sorted(recs, key=lambda r: r["offset"]):
        if r["offset"] > pos:
            gaps.append((pos, r["offset"]))
        pos = max(pos, r["offset"] + r["length"])
    if pos < size:
        gaps.append((pos, size))
    return gaps


# ------------------------------------------------------------------ claims


def _columns(db: Any, table: str) -> set[str]:
    return {c.name for c in db[table].columns} if db[table].exists() else set()


def claims_citing(db: Any, source_ids: set[int]) -> dict[int, list[str]]:
    """'claim N of report X' labels for the claims citing each source (issue 3's tables)."""
    cit, cl, rep = _columns(db, "citations"), _columns(db, "claims"), _columns(db, "reports")
    if not ({"claim_id", "source_id"} <= cit and "id" in cl):
        return {}
    number = next((c for c in ("number", "ordinal", "seq", "position", "label") if c in cl), "id")
    title = next((c for c in ("title", "name", "path", "filename") if c in rep), "id") if rep else None
    join = f", r.[{title}] AS report" if title and "report_id" in cl else ", NULL AS report"
    frm = "FROM citations ci JOIN claims c ON c.id = ci.claim_id"
    if title and "report_id" in cl:
        frm += " LEFT JOIN reports r ON r.id = c.report_id"
    out: dict[int, list[str]] = {}
    for part, marks in _in_chunks(sorted(source_ids)):  # a lost file can take thousands of sources with it
        sql = f"SELECT DISTINCT ci.source_id AS source_id, c.[{number}] AS number{join} {frm} " \
              f"WHERE ci.source_id IN ({marks})"
        for row in db.query(sql, part):
            label = f"claim {row['number']}" + (f" of report {row['report']}" if row["report"] is not None else "")
            out.setdefault(row["source_id"], []).append(label)
    return out


def report_sources(db: Any, report: str) -> set[int]:
    """Source ids cited by any version of a report, found as every command finds one (id, title or path)."""
    from .queries import find_report, source_ids_of_any_version

    return source_ids_of_any_version(db, find_report(db, report)["id"])  # UsageError for an unknown report


# ------------------------------------------------------------------ entry point


def verify_archive(
    archive: Any,
    *,
    deep: bool = False,
    report: str | None = None,
    urls: Iterable[str] = (),
    tsa_roots: list[Any] | None = None,
    public_keys: list[Any] | None = None,
    workers: int = WORKERS,
    record: bool = True,
    progress: Callable[[int], None] | None = None,
) -> VerifyResult:
    """Verify the archive (or the evidence of a report / some URLs) and record the run."""
    from .catalogue import find_source, utc_now
    from .errors import UsageError

    urls = list(urls)
    source_ids: set[int] | None = None
    scope: dict[str, Any] = {"all": True}
    if report is not None or urls:
        source_ids = set()
        scope = {}
        if report is not None:
            source_ids |= report_sources(archive.db, report)
            scope["report"] = report
        if urls:
            for url in urls:
                src = find_source(archive.db, url)
                if src is None:
                    raise UsageError(f"{url} is not a known source")
                source_ids.add(src["id"])
            scope["urls"] = urls
    # A read-only archive (a mount) is verified all the same; only the run cannot be recorded.
    unrecordable = record and getattr(archive, "read_only", False)
    record = record and not unrecordable
    started_at = utc_now()
    verifier = Verifier(archive, deep=deep, source_ids=source_ids, scope=scope, tsa_roots=tsa_roots,
                        public_keys=public_keys, workers=workers, progress=progress)
    result = verifier.run()
    if unrecordable:
        result.problems.append(Problem(
            "run-not-recorded", "the archive is read-only: this verification run was not recorded "
            "(neither in verification_runs nor in the custody log)", severity="note"))
    if record:
        result.run_id = _record_run(archive.db, started_at, result)
    return result


def _record_run(db: Any, started_at: str, result: VerifyResult) -> int:
    """The run's row and its custody entry, in one transaction; the entry carries the whole row,
    so that a later edit of it (its time, its result) is found like any other."""
    from . import custody
    from .catalogue import insert, to_json, transaction, utc_now

    kinds: dict[str, int] = {}
    for p in result.failures:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    row = {
        "started_at": started_at, "ended_at": utc_now(), "mode": result.mode, "scope": to_json(result.scope),
        "result": "intact" if result.intact else "problems", "problems": len(result.failures),
        "notes": len(result.notes), "files": result.files, "bytes": result.bytes, "records": result.records,
        "log_seq": 0, "log_head": result.log_head, "summary": to_json(kinds),
    }
    with transaction(db):
        head = custody.head(db)
        row["log_seq"] = head["seq"] if head else 0
        run_id = insert(db, "verification_runs", row)
        custody.append(db, "verify", f"run {run_id}", {
            "run_id": run_id, "run": row, "mode": result.mode, "scope": result.scope, "result": row["result"],
            "problems": row["problems"], "by_kind": kinds, "files": result.files,
            "bytes": result.bytes, "log_head_checked": result.log_head})
    return run_id
