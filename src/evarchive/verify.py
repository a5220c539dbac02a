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
import json
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

    # -- helpers
    def add(self, kind: str, message: str, **where: Any) -> Problem:
        problem = Problem(kind, message, **where)
        self.result.problems.append(problem)
        return problem

    def note(self, kind: str, message: str, **where: Any) -> Problem:
        return self.add(kind, message, severity="note", **where)

    def _capture_where(self, record: dict[str, Any] | None, capture_id: int | None = None) -> dict[str, Any]:
        """file/offset/record/capture/url for a problem about a catalogued record."""
        where: dict[str, Any] = {}
        if record is not None:
            where.update(file=record["warc_file"], offset=record["offset"], record_id=record["record_id"])
            capture_id = record["capture_id"]
        if capture_id is not None:
            where["capture_id"] = capture_id
            cap = self.captures.get(capture_id)
            if cap is not None:
                where["url"] = self.source_urls.get(cap["source_id"], cap["url_requested"])
        return where

    # -- catalogue snapshot
    def load(self) -> None:
        db = self.db
        self.source_urls = {r["id"]: r["url"] for r in db.query("SELECT id, url FROM sources")}
        all_caps = {r["id"]: r for r in db.query("SELECT * FROM captures")}
        if self.source_ids is None:
            self.captures = all_caps
        else:
            self.captures = {k: v for k, v in all_caps.items() if v["source_id"] in self.source_ids}
        self.all_captures = all_caps
        records = list(db.query("SELECT * FROM capture_records ORDER BY warc_file, offset"))
        wanted_files = None
        if self.source_ids is not None:
            wanted_files = {r["warc_file"] for r in records if r["capture_id"] in self.captures}
            wanted_files |= {c["warc_file"] for c in self.captures.values() if c["warc_file"]}
        self.files = {
            r["name"]: r
            for r in db.query("SELECT * FROM warc_files ORDER BY name")
            if wanted_files is None or r["name"] in wanted_files
        }
        self.records_by_file: dict[str, list[dict[str, Any]]] = {}
        for r in records:
            if r["warc_file"] in self.files or self.source_ids is None:
                self.records_by_file.setdefault(r["warc_file"], []).append(r)
        self.records_by_id = {r["record_id"]: r for r in records}
        self.records_at = {(r["warc_file"], r["offset"]): r for r in records}

    # -- run
    def run(self) -> VerifyResult:
        import time

        started = time.perf_counter()
        self.load()
        # The log and token checks are Python work; file hashing mostly runs outside the GIL.
        # Overlap them so the catalogue checks cost (almost) no wall time. The log thread uses
        # its own read-only connection: sqlite3 connections are not shared across threads.
        from .custody import catalogue_path

        self.catalogue_file = catalogue_path(self.db)
        with ThreadPoolExecutor(max_workers=1) as side:
            log_job = side.submit(self._log_checks)
            self.check_files()
            self.check_records_point_at_files()
            log_problems = log_job.result()
        self.result.problems.extend(log_problems)
        self.attach_claims()
        self.result.seconds = time.perf_counter() - started
        return self.result

    # -- files
    def disk_files(self) -> dict[str, Path]:
        root = self.archive.warcs_dir
        found = {}
        for path in root.rglob("*"):
            if path.is_file() or path.is_symlink():
                found[path.relative_to(root).as_posix()] = path
        return found

    def check_files(self) -> None:
        on_disk = self.disk_files()
        if self.source_ids is None:
            for name in sorted(set(on_disk) - set(self.files)):
                self.add("unknown-file", f"{name} is in warcs/ but the catalogue does not know it", file=name)
        tasks = []
        for name, row in self.files.items():
            path = on_disk.get(name)
            if path is None:
                self.file_missing(name, row)
            elif row["status"] == "open" or row["sha256"] is None:
                self.note("file-open", f"{name} is still open (being written, or left by a crashed run "
                          "not yet recovered); its hash is checked once it is sealed", file=name)
            else:
                tasks.append((name, path, row))
        tasks.sort(key=lambda t: -(t[2]["size"] or 0))
        for name, scan in zip([t[0] for t in tasks], parallel_map(self._scan_task, tasks, self.workers)):
            self.result.files += 1
            self.result.bytes += scan.size
            self.compare_file(self.files[name], on_disk[name], scan)
            if self.progress:
                self.progress(scan.size)

    def _scan_task(self, task: tuple[str, Path, dict[str, Any]]) -> FileScan:
        name, path, row = task
        if not self.deep:
            return hash_file(path, name)
        known = [r["offset"] for r in self.records_by_file.get(name, [])] + [0]
        return scan_file(path, name, known)

    def file_missing(self, name: str, row: dict[str, Any]) -> None:
        recs = self.records_by_file.get(name, [])
        self.add("file-missing", f"{name} is missing from warcs/ ({len(recs)} catalogued records lost)", file=name)
        self.records_lost(recs, f"its file {name} is missing")

    def records_lost(self, recs: list[dict[str, Any]], why: str) -> None:
        """One problem per capture whose records are gone."""
        seen: set[int] = set()
        for rec in recs:
            if rec["capture_id"] in seen:
                continue
            seen.add(rec["capture_id"])
            self.add("capture-lost", f"capture {rec['capture_id']} is lost: {why}", **self._capture_where(rec))

    def compare_file(self, row: dict[str, Any], path: Path, scan: FileScan) -> None:
        name = row["name"]
        recs = self.records_by_file.get(name, [])
        if scan.error:
            self.add("file-unreadable", f"{name}: {scan.error}", file=name)
            return
        if row["status"] == "interrupted" and (row["size"] or 0) > row["referenced_size"]:
            self.note("interrupted-tail", f"{name}: {row['size'] - row['referenced_size']} bytes after offset "
                      f"{row['referenced_size']} are the known tail of an interrupted run",
                      file=name, offset=row["referenced_size"])
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
        by_offset = {m.offset: m for m in scan.members}
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
            where = self._capture_where(rec) if rec else {"file": name, "offset": m.offset, "record_id": m.record_id}
            self.check_record_digests(name, m, where)
            if rec is not None:
                self.compare_record(rec, m, where)
            elif not self.expected_uncatalogued(row, m):
                self.add("record-orphan", f"{name} at offset {m.offset}: record {m.record_id} ({m.record_type} "
                         f"{m.target_uri or ''}) belongs to no capture", **where)
        damaged_starts = {s for s, _e, _w in scan.damaged}
        for rec in recs:
            if rec["offset"] not in by_offset and rec["offset"] not in damaged_starts and rec["offset"] < scan.size:
                self.add("record-missing", f"the catalogue places record {rec['record_id']} at offset "
                         f"{rec['offset']} of {name}, but no record starts there", **self._capture_where(rec))

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
        for name, recs in self.records_by_file.items():
            if name not in self.files and (self.source_ids is None or any(r["capture_id"] in self.captures for r in recs)):
                self.add("file-uncatalogued", f"{len(recs)} records point at {name}, which warc_files does not list",
                         file=name)

    def _log_checks(self) -> list[Problem]:
        """check_log + check_timestamps on a private connection; returns their problems."""
        import sqlite3

        import sqlite_utils

        path = self.catalogue_file
        sub = Verifier.__new__(Verifier)
        sub.__dict__.update(self.__dict__)
        sub.result = VerifyResult(self.result.mode, self.scope)
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True) if path else None
        sub.db = sqlite_utils.Database(conn) if conn else self.db
        try:
            sub.check_log()
            sub.check_timestamps()
        finally:
            if conn is not None:
                conn.close()
        self.result.log_head = sub.result.log_head
        return sub.result.problems

    # -- custody log
    def check_log(self) -> None:
        from . import custody

        rows = custody.entries(self.db)
        self.result.log_head = rows[-1]["entry_hash"] if rows else custody.GENESIS_HASH
        for seq, kind, message in custody.check_chain(rows):
            self.add(f"log-{kind}", message, log_seq=seq)
        self.check_signatures(rows)
        self.check_vouched(rows)

    def check_signatures(self, rows: list[dict[str, Any]]) -> None:
        from . import signing

        intros = [r for r in rows if r["event"] == "keys-generate"]
        trusted = {signing.key_id(k): k for k in (self.public_keys or [])}
        if not intros:
            if trusted:
                self.add("log-unsigned", "a public key was given, but no signing key was ever introduced in the log")
            return
        logged: dict[str, Any] = {}
        for intro in intros:
            try:
                pem = json.loads(intro["details"]).get("public_key_pem")
                logged[intro["subject"]] = signing.load_public(pem)
            except Exception:  # noqa: BLE001 - a mangled entry is reported by the chain check
                continue
        keys = trusted or logged
        if not trusted:
            self.note("log-key-source", "signatures checked against the public keys recorded in the log itself; "
                      "pass --public-key with a copy kept elsewhere to rule out a replaced key")
        first = intros[0]["seq"]
        for r in rows:
            if r["seq"] < first:
                continue
            if not r["signature"]:
                self.add("log-unsigned", f"log entry {r['seq']} ({r['event']}) is not signed, although a signing "
                         "key was in force", log_seq=r["seq"])
                continue
            try:
                kid, _raw = signing.parse_signature(r["signature"])
            except ValueError as exc:
                self.add("log-signature", f"log entry {r['seq']}: malformed signature ({exc})", log_seq=r["seq"])
                continue
            key = keys.get(kid)
            if key is None:
                self.add("log-signature", f"log entry {r['seq']} is signed by key {kid}, which is not a trusted key",
                         log_seq=r["seq"])
                continue
            why = signing.check_signature(key, r["entry_hash"], r["signature"])
            if why:
                self.add("log-signature", f"log entry {r['seq']} ({r['event']}): {why}", log_seq=r["seq"])

    def check_vouched(self, rows: list[dict[str, Any]]) -> None:
        from . import custody

        tables: dict[str, dict[Any, dict[str, Any]]] = {
            "captures": self.all_captures,
            "capture_records": self.records_by_id,
            "warc_files": {r["name"]: r for r in self.db.query("SELECT * FROM warc_files")},
        }
        seen: dict[str, set[Any]] = {t: set() for t in tables}
        for entry in rows:
            for table, keycol, key, expected in custody.vouched(entry):
                if table not in tables:
                    tables[table] = {r[keycol]: r for r in self.db.query(f"SELECT * FROM [{table}]")}
                    seen[table] = set()
                seen[table].add(key)
                if not self.in_scope(table, key):
                    continue
                current = tables[table].get(key)
                if current is None and table == "capture_records":
                    # record_id itself edited: find the row by where it says the record is
                    current = self.records_at.get((expected.get("warc_file"), expected.get("offset")))
                    if current is not None:
                        seen[table].add(current["record_id"])
                where = self.row_where(table, key, current, expected)
                if current is None:
                    self.add("catalogue-deleted", f"{table} row {key} vouched for by log entry {entry['seq']} "
                             "is missing from the catalogue", table=table, log_seq=entry["seq"], **where)
                    continue
                for column, value in expected.items():
                    if column in current and current[column] != value:
                        self.add("catalogue-edited", f"{table} {key}: {column} is {current[column]!r}, but log "
                                 f"entry {entry['seq']} recorded {value!r}", table=table, column=column,
                                 log_seq=entry["seq"], **where)
        self.check_unvouched(tables, seen)

    def check_unvouched(self, tables: dict[str, dict[Any, dict[str, Any]]], seen: dict[str, set[Any]]) -> None:
        """Rows no entry vouches for were added behind evarchive's back, or the log lost its tail."""
        for cid, cap in self.captures.items():
            if cid not in seen["captures"]:
                self.add("catalogue-unvouched", f"capture {cid} is in no custody-log entry (added outside "
                         "evarchive, or the end of the log was removed)", table="captures",
                         **self._capture_where(None, cid))
        for rid, rec in self.records_by_id.items():
            if rec["capture_id"] in self.captures and rid not in seen["capture_records"]:
                self.add("catalogue-unvouched", f"record {rid} is in no custody-log entry",
                         table="capture_records", **self._capture_where(rec))
        for name, row in self.files.items():
            if row["status"] != "open" and name not in seen["warc_files"]:
                self.add("catalogue-unvouched", f"the sealed state of {name} is in no custody-log entry",
                         table="warc_files", file=name)

    def in_scope(self, table: str, key: Any) -> bool:
        if self.source_ids is None:
            return True
        if table == "captures":
            return key in self.captures
        if table == "capture_records":
            rec = self.records_by_id.get(key)
            return rec is not None and rec["capture_id"] in self.captures
        if table == "warc_files":
            return key in self.files
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
        return {}

    # -- timestamps
    def check_timestamps(self) -> None:
        from . import custody, timestamping

        if not self.db["timestamps"].exists():
            return
        stamps = list(self.db.query("SELECT * FROM timestamps ORDER BY id"))
        if not stamps:
            return
        entries = {r["seq"]: r for r in custody.entries(self.db)}
        if self.tsa_roots is None:
            self.note("timestamp-unanchored", "no TSA roots configured: tokens are checked (imprint, nonce, "
                      "signature) but their chains are not anchored; use --tsa-roots")
        for st in stamps:
            self.check_token(st, entries, timestamping)

    def check_token(self, st: dict[str, Any], entries: dict[int, dict[str, Any]], ts: Any) -> None:
        from . import custody  # noqa: F811 (recompute lives there)

        label = f"timestamp {st['id']} (log entry {st['covers_seq']}, {st['gen_time']})"
        where = {"log_seq": st["covers_seq"], "table": "timestamps"}
        token = bytes(st["token"])
        if hashlib.sha256(token).hexdigest() != st["token_sha256"]:
            self.add("timestamp", f"{label}: the stored token is not the one recorded", **where)
        entry = entries.get(st["covers_seq"])
        if entry is None:
            self.add("timestamp", f"{label}: the log entry it stamps is missing", **where)
            return
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
        for p in self.result.failures:
            if p.capture_id is not None and p.capture_id in self.all_captures:
                src = self.all_captures[p.capture_id]["source_id"]
                damaged.setdefault(src, set()).add(p.capture_id)
        if not damaged:
            return
        claims = claims_citing(self.db, set(damaged))
        for p in self.result.failures:
            if p.capture_id is None or p.capture_id not in self.all_captures:
                continue
            src = self.all_captures[p.capture_id]["source_id"]
            intact = [c for c in self.all_captures.values()
                      if c["source_id"] == src and c["status"] == "ok" and c["id"] not in damaged[src]]
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
    marks = ",".join("?" for _ in source_ids)
    sql = f"SELECT DISTINCT ci.source_id AS source_id, c.[{number}] AS number{join} {frm} WHERE ci.source_id IN ({marks})"
    out: dict[int, list[str]] = {}
    for row in db.query(sql, list(source_ids)):
        label = f"claim {row['number']}" + (f" of report {row['report']}" if row["report"] is not None else "")
        out.setdefault(row["source_id"], []).append(label)
    return out


def report_sources(db: Any, report: str) -> set[int]:
    """Source ids cited by a report named by id, title, name or path."""
    from .errors import UsageError

    rep, cl, cit = _columns(db, "reports"), _columns(db, "claims"), _columns(db, "citations")
    if not rep or "report_id" not in cl or not {"claim_id", "source_id"} <= cit:
        raise UsageError("this catalogue has no reports yet (import one first)")
    keys = [c for c in ("id", "title", "name", "path", "filename", "slug") if c in rep]
    cond = " OR ".join(f"CAST([{k}] AS TEXT) = ?" for k in keys)
    found = [r["id"] for r in db.query(f"SELECT id FROM reports WHERE {cond}", [report] * len(keys))]
    if not found:
        raise UsageError(f"no report {report!r} in the catalogue")
    marks = ",".join("?" for _ in found)
    return {r["source_id"] for r in db.query(
        f"SELECT DISTINCT ci.source_id FROM citations ci JOIN claims c ON c.id = ci.claim_id "
        f"WHERE c.report_id IN ({marks})", found)}


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
    from .catalogue import find_source
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
    run_id = _start_run(archive.db, "deep" if deep else "fast", scope) if record else None
    verifier = Verifier(archive, deep=deep, source_ids=source_ids, scope=scope, tsa_roots=tsa_roots,
                        public_keys=public_keys, workers=workers, progress=progress)
    result = verifier.run()
    result.run_id = run_id
    if record and run_id is not None:
        _end_run(archive.db, run_id, result)
    return result


def _start_run(db: Any, mode: str, scope: dict[str, Any]) -> int:
    from .catalogue import insert, to_json, transaction, utc_now

    with transaction(db):
        return insert(db, "verification_runs", {"started_at": utc_now(), "mode": mode, "scope": to_json(scope)})


def _end_run(db: Any, run_id: int, result: VerifyResult) -> None:
    from . import custody
    from .catalogue import to_json, transaction, update, utc_now

    kinds: dict[str, int] = {}
    for p in result.failures:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    values = {
        "ended_at": utc_now(), "result": "intact" if result.intact else "problems",
        "problems": len(result.failures), "notes": len(result.notes), "files": result.files,
        "bytes": result.bytes, "records": result.records, "log_head": result.log_head,
        "summary": to_json(kinds),
    }
    with transaction(db):
        head = custody.head(db)
        values["log_seq"] = head["seq"] if head else 0
        update(db, "verification_runs", run_id, values)
        custody.append(db, "verify", f"run {run_id}", {
            "run_id": run_id, "mode": result.mode, "scope": result.scope, "result": values["result"],
            "problems": values["problems"], "by_kind": kinds, "files": result.files,
            "bytes": result.bytes, "log_head_checked": result.log_head})
