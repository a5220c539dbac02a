"""Report files: open, size-check, hash and sniff the format; hand the bytes to the right reader."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..extract import Document
from .readers import READERS
from .readers.text import SNIFF_BYTES

# A report larger than this is almost certainly not a report (a log, a dump, a data file); reading
# it whole would only burn memory. PDFs and docx files carry images, so they get a larger cap.
MAX_TEXT_BYTES = 32 * 1024 * 1024
MAX_PACKAGE_BYTES = 256 * 1024 * 1024


FORMATS = ("txt", "md", "html", "docx", "pdf")
_EXTENSIONS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".mdown": "md",
               ".html": "html", ".htm": "html", ".xhtml": "html", ".docx": "docx", ".pdf": "pdf"}


@dataclass
class ReportFile:
    """A report file read from disk: its bytes' SHA-256 and the parsed document."""

    path: Path
    sha256: str
    size: int
    format: str
    data: bytes


def file_sha256(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def sniff_format(path: Path, head: bytes) -> str:
    """The report's format: magic bytes win over the file name, which wins over content guesses."""
    if head.startswith(b"%PDF-"):
        return "pdf"
    by_name = _EXTENSIONS.get(path.suffix.lower())
    if head.startswith(b"PK\x03\x04"):
        if by_name in (None, "docx"):
            return "docx"
        raise InputError(f"{path}: this is a zip archive, not a {by_name} report")
    if by_name:
        return by_name
    start = head.lstrip()[:200].lower()
    if start.startswith((b"<!doctype html", b"<html")) or b"<html" in start:
        return "html"
    return "txt"


def read_report_file(path: Path | str, max_bytes: int | None = None) -> ReportFile:
    """Open, size-check and hash a report; refuses unreadable and oversized files."""
    path = Path(path)
    try:
        if not path.is_file():
            raise InputError(f"{path}: no such report file" if not path.exists()
                             else f"{path}: not a regular file")
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
        size = path.stat().st_size
    except PermissionError:
        raise InputError(f"{path}: cannot read the report (permission denied)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the report ({exc.strerror})") from None
    fmt = sniff_format(path, head)
    limit = max_bytes or (MAX_PACKAGE_BYTES if fmt in ("docx", "pdf") else MAX_TEXT_BYTES)
    if size > limit:
        raise InputError(f"{path}: {size / 2**20:.1f} MiB is too large for a {fmt} report "
                         f"(limit {limit / 2**20:.0f} MiB); is this really a report?")
    if size == 0:
        raise InputError(f"{path}: the report is empty")
    data = path.read_bytes()
    return ReportFile(path, hashlib.sha256(data).hexdigest(), len(data), fmt, data)


def parse_report(report: ReportFile) -> Document:
    """The document inside a report file, whatever its format."""
    reader = READERS[report.format]
    document = reader(report.data, report.path)
    if not any(b.text.strip() for b in document.blocks):
        raise InputError(f"{report.path}: the report has no text")
    return document
