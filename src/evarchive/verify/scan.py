"""Reading WARC bytes back: whole-file hashes, gzip members, and the WARC record in each.

Nothing here knows the catalogue: these functions take a path (and, for the parallel deep
scan, the spans the catalogue places members at) and say what the bytes are.

* fast: `hash_file`, one sequential read per file, hashed in large buffers (hashlib releases
  the GIL, so a thread pool runs at hash/disk speed).
* deep: every gzip member is inflated and parsed (`RecordParser`); block and payload digests
  are recomputed. A file is split at its catalogued member offsets (`plan_members`) so one
  large file keeps every core busy while one thread hashes it whole; each catalogued member is
  inflated whole by libdeflate and accepted only if it is exactly one clean gzip member
  (`scan_members`); where the catalogue and the bytes disagree, the file is walked front to
  back instead (`scan_file`, streaming zlib-ng, ISA-L or zlib).
* localising: `member_hashes`, the SHA-256 of the exact bytes at each catalogued span.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import hashlib
import os
import re
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..records import member_sha256

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
    block_length: int | None = None  # the record's Content-Length, when it is a valid one
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
        else:
            if self._remaining < 0:
                m.errors.append("no valid Content-Length")
                self._remaining = 0
            else:
                m.block_length = self._remaining
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
    with open(path, "rb", buffering=0) as fh:
        return {(offset, length): member_sha256(fh, offset, length) for offset, length in sorted(spans)}
