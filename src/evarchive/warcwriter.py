"""WARC/1.1 writing: gzip per record, rotation, fsync, and exact bookkeeping of every record.

One ``WarcWriter`` per process owns one open file at a time, so two evarchive processes never
share a file. A file is registered in the catalogue (status ``open``) before its first byte is
written, and the writer holds an exclusive ``flock`` on a lock file beside it for as long as it
writes. A later process that can take that lock knows the writer died, seals the file as
``interrupted`` and reports any bytes past the last committed record (the unreferenced tail).
A closed file is never opened for writing again.

A write that fails (a full disk, an I/O error) may leave part of a record in the file, so the
writer stops for good: every later write raises, and the file is abandoned with what is on disk.
Writes go straight to the OS (no user-space buffer), so the bytes of every record that returned
are in the file at the offset it names, and an fsync after a failure never appends anything.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import fcntl
import hashlib
import os
import platform
import secrets
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlite_utils

from . import __version__, custody
from .catalogue import format_time, insert, one, path_value, to_json, transaction, update, utc_now

DEFAULT_MAX_WARC_SIZE = 1 << 30
try:  # ISA-L deflates 5-7x faster than zlib at a ratio close to zlib's level 6.
    from isal import isal_zlib as _deflate

    GZIP_LEVEL = 2
except ImportError:  # pragma: no cover - plain zlib where ISA-L has no wheel
    _deflate = zlib  # type: ignore[assignment]
    GZIP_LEVEL = 6
COPY_CHUNK = 1 << 20
SOFTWARE = f"evarchive/{__version__}"


def warc_digest(hex_digest: str) -> str:
    """The ``sha256:<base32>`` form WARC headers use, from a hex digest."""
    return "sha256:" + base64.b32encode(bytes.fromhex(hex_digest)).decode("ascii")


def new_record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def warc_date(moment_iso: str) -> str:
    """WARC-Date from the catalogue's time format (WARC 1.1 allows fractions of a second)."""
    return moment_iso


@dataclass
class RecordBlock:
    """A record block: leading bytes (e.g. an HTTP head) then an optional body file.

    ``precomputed_sha256`` lets a caller that hashed the block while receiving it spare a
    second pass over a large body.
    """

    head: bytes
    body: IO[bytes] | None = None
    body_length: int = 0
    precomputed_sha256: str | None = None

    @property
    def length(self) -> int:
        return len(self.head) + self.body_length

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        if self.body is not None:
            self.body.seek(0)
            remaining = self.body_length
            while remaining > 0:
                chunk = self.body.read(min(COPY_CHUNK, remaining))
                if not chunk:
                    raise OSError("body spool ended early")
                remaining -= len(chunk)
                yield chunk


@dataclass
class RecordSpec:
    warc_type: str
    target_uri: str
    date: str
    block: RecordBlock
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload_sha256: str | None = None  # hex; written as WARC-Payload-Digest when set
    record_id: str = field(default_factory=new_record_id)


@dataclass
class WrittenRecord:
    warc_file: str
    offset: int
    length: int
    record_id: str
    record_type: str
    target_uri: str
    block_sha256: str
    payload_sha256: str | None
    member_sha256: str

    def as_row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "warc_file", "offset", "length", "record_id", "record_type", "target_uri",
            "block_sha256", "payload_sha256", "member_sha256")}


def block_sha256(block: RecordBlock) -> str:
    digest = hashlib.sha256()
    for chunk in block.chunks():
        digest.update(chunk)
    return digest.hexdigest()


def _header_bytes(spec: RecordSpec, block_digest_hex: str) -> bytes:
    lines = [
        "WARC/1.1",
        f"WARC-Type: {spec.warc_type}",
        f"WARC-Record-ID: {spec.record_id}",
        f"WARC-Date: {warc_date(spec.date)}",
    ]
    if spec.target_uri:
        lines.append(f"WARC-Target-URI: {spec.target_uri}")
    lines.extend(f"{name}: {value}" for name, value in spec.headers)
    if spec.content_type:
        lines.append(f"Content-Type: {spec.content_type}")
    lines.append(f"WARC-Block-Digest: {warc_digest(block_digest_hex)}")
    if spec.payload_sha256:
        lines.append(f"WARC-Payload-Digest: {warc_digest(spec.payload_sha256)}")
    lines.append(f"Content-Length: {spec.block.length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def warc_fields(fields: Iterable[tuple[str, Any]]) -> bytes:
    """An ``application/warc-fields`` body: one ``name: value`` line per field."""
    out = []
    for name, value in fields:
        text = value if isinstance(value, str) else to_json(value)
        out.append(f"{name}: {text.replace(chr(13), ' ').replace(chr(10), ' ')}\r\n")
    return "".join(out).encode("utf-8")


class WarcWriter:
    """Writes records to the archive's WARC files for one process."""

    def __init__(self, warcs_dir: Path, locks_dir: Path, db: sqlite_utils.Database,
                 max_size: int = DEFAULT_MAX_WARC_SIZE,
                 warcinfo: dict[str, Any] | None = None, prefix: str = "EVA") -> None:
        self.warcs_dir = warcs_dir
        self.locks_dir = locks_dir
        self.db = db
        self.max_size = max_size
        self.warcinfo = warcinfo or {}
        self.prefix = prefix
        self._file: IO[bytes] | None = None
        self._lock_fd: int | None = None
        self._name: str | None = None
        self._size = 0
        self._file_hash = hashlib.sha256()
        self._serial = 0
        self._failure: OSError | None = None

    # ----------------------------------------------------------------- file lifecycle
    @property
    def current_name(self) -> str | None:
        return self._name

    @property
    def failure(self) -> OSError | None:
        """The write that failed, once one has: the writer then refuses every further write."""
        return self._failure

    def _refuse_if_failed(self) -> None:
        if self._failure is not None:
            raise OSError(self._failure.errno, "no more writes after a failed one: "
                          f"{self._failure.strerror or self._failure}")

    def _new_name(self) -> str:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f")
        self._serial += 1
        return f"{self.prefix}-{stamp}-{os.getpid()}-{secrets.token_hex(4)}-{self._serial:05d}.warc.gz"

    def _open_new(self) -> None:
        name = self._new_name()
        lock_path = self.locks_dir / f"{name}.lock"
        self._lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        path = self.warcs_dir / name
        # Register first: a crash after this point leaves a row that recovery can seal.
        with transaction(self.db):
            insert(self.db, "warc_files", {
                "name": name, "created_at": utc_now(), "status": "open",
                "referenced_size": 0, "pid": os.getpid(), "writer_lock": path_value(lock_path)})
        self._file = open(path, "xb", buffering=0)  # never overwrite an existing file
        self._name = name
        self._size = 0
        self._file_hash = hashlib.sha256()
        info = self._write(self._warcinfo_spec())
        self.sync()
        with transaction(self.db):
            update(self.db, "warc_files", name, {
                "warcinfo_record_id": info.record_id, "warcinfo_length": info.length,
                "referenced_size": info.offset + info.length}, key_column="name")

    def _warcinfo_spec(self) -> RecordSpec:
        fields = [("software", SOFTWARE), ("format", "WARC File Format 1.1"),
                  ("conformsTo", "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"),
                  ("python", platform.python_version()), ("host-os", platform.platform())]
        fields.extend(self.warcinfo.items())
        body = warc_fields(fields)
        return RecordSpec("warcinfo", "", utc_now(), RecordBlock(body),
                          content_type="application/warc-fields",
                          headers=[("WARC-Filename", self._name or "")])

    def begin_capture(self) -> str:
        """Make sure a file is open with room; a capture's records never span two files."""
        self._refuse_if_failed()
        if self._file is not None and self._size >= self.max_size:
            self.close()
        if self._file is None:
            self._open_new()
        assert self._name is not None
        return self._name

    def close(self) -> None:
        """Seal the current file: fsync, record size and SHA-256, never write it again."""
        if self._file is None:
            return
        if self._failure is not None:  # what is on disk is not what this writer tracked
            self.abandon()
            return
        self.sync()
        self._file.close()
        name, size, digest = self._name, self._size, self._file_hash.hexdigest()
        with transaction(self.db):
            update(self.db, "warc_files", name, {
                "status": "closed", "closed_at": utc_now(), "size": size, "sha256": digest},
                key_column="name")
            custody.append(self.db, "warc-closed", name, {"size": size, "sha256": digest})
        self._release()

    def abandon(self) -> None:
        """Stop using the current file after a failed write: close it and release its lock.

        The catalogue row stays ``open`` until ``recover_interrupted`` seals it from what is
        really on disk; this process never writes to the file again.
        """
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the unflushed remainder is lost; it was never committed
        self._release()

    def _release(self) -> None:
        """Forget the current file (already closed) and release its writer lock."""
        self._file = None
        self._name = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def sync(self) -> None:
        """fsync what the OS holds; after a failed write that is every record that returned."""
        if self._file is not None:
            try:
                os.fsync(self._file.fileno())
            except OSError as exc:
                self._failure = self._failure or exc
                raise

    # ----------------------------------------------------------------- records
    def write(self, spec: RecordSpec) -> WrittenRecord:
        self._refuse_if_failed()
        if self._file is None:
            self.begin_capture()
        return self._write(spec)

    def _write(self, spec: RecordSpec) -> WrittenRecord:
        try:
            return self._write_member(spec)
        except BaseException as exc:  # part of the record may be in the file: stop for good
            if self._failure is None:
                self._failure = exc if isinstance(exc, OSError) else OSError(
                    errno.EIO, f"a record write was interrupted ({type(exc).__name__})")
            raise

    def _write_member(self, spec: RecordSpec) -> WrittenRecord:
        assert self._file is not None and self._name is not None
        block_hex = spec.block.precomputed_sha256 or block_sha256(spec.block)
        header = _header_bytes(spec, block_hex)
        compressor = _deflate.compressobj(GZIP_LEVEL, _deflate.DEFLATED, 31)
        member_hash = hashlib.sha256()
        offset = self._size
        length = 0
        waiting = bytearray()  # small pieces are gathered so a short record costs one write

        def emit(data: bytes) -> None:
            nonlocal length
            if data:
                member_hash.update(data)
                self._file_hash.update(data)
                length += len(data)
                waiting.extend(data)
                if len(waiting) >= COPY_CHUNK:
                    self._write_all(waiting)
                    waiting.clear()

        emit(compressor.compress(header))
        for chunk in spec.block.chunks():
            emit(compressor.compress(chunk))
        emit(compressor.compress(b"\r\n\r\n"))
        emit(compressor.flush())
        self._write_all(waiting)
        self._size += length
        return WrittenRecord(self._name, offset, length, spec.record_id, spec.warc_type,
                             spec.target_uri, block_hex, spec.payload_sha256,
                             member_hash.hexdigest())

    def _write_all(self, data: bytearray) -> None:
        """Hand every byte to the OS; a raw write may take only part of them."""
        assert self._file is not None
        with memoryview(data) as view:
            done = 0
            while done < len(view):
                written = self._file.write(view[done:])
                if not written:
                    raise OSError(errno.EIO, "the WARC file took no bytes")
                done += written

    @property
    def size(self) -> int:
        return self._size


# --------------------------------------------------------------------------- recovery

@dataclass
class InterruptedFile:
    name: str
    size: int
    referenced_size: int

    @property
    def tail(self) -> int:
        return max(0, self.size - self.referenced_size)


def _writer_is_dead(lock_path: str | bytes | None) -> bool:
    if not lock_path or not os.path.exists(lock_path):
        return True
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the lock if we took it
    return True


def _file_sha256(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK * 4):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def recover_interrupted(warcs_dir: Path, db: sqlite_utils.Database) -> list[InterruptedFile]:
    """Seal files left open by a dead writer and report their unreferenced tails.

    Nothing is truncated or deleted: the tail stays on disk (evidence is append-only) and is
    recorded as the known tail of an interrupted run, so verification can tell it apart from
    tampering.
    """
    found = []
    for row in list(db.query("SELECT * FROM warc_files WHERE status = 'open'")):
        if not _writer_is_dead(row["writer_lock"]):
            continue
        path = warcs_dir / row["name"]
        size, digest = _file_sha256(path) if path.exists() else (0, None)
        with transaction(db):
            current = one(db, "SELECT status FROM warc_files WHERE id = ?", [row["id"]])
            if not current or current["status"] != "open":
                continue
            update(db, "warc_files", row["id"], {
                "status": "interrupted", "closed_at": utc_now(), "size": size, "sha256": digest})
            custody.append(db, "warc-interrupted", row["name"], {
                "size": size, "sha256": digest, "referenced_size": row["referenced_size"]})
        found.append(InterruptedFile(row["name"], size, row["referenced_size"]))
    return found


__all__ = [
    "RecordBlock",
    "InterruptedFile",
    "RecordSpec",
    "WarcWriter",
    "WrittenRecord",
    "format_time",
    "recover_interrupted",
    "warc_digest",
    "warc_fields",
]
